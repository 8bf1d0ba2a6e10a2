"""Create (or update) the automation that marks a flow run Crashed when its heartbeats stop.

A flow run whose process is killed (`kill -9`, an OOM kill, a lost machine) cannot report; it
stays Running in Prefect. The flow engine sends a heartbeat event every
PREFECT_FLOWS_HEARTBEAT_FREQUENCY seconds (prefect.yaml sets it for deployment runs); this
automation, Prefect's documented one for "zombie" flow runs, marks a run Crashed when no
heartbeat and no final state follows a heartbeat within 3 beats. Run it once per Prefect
server (it is idempotent: an automation of the same name is updated, not duplicated):

    PREFECT_API_URL=http://127.0.0.1:4200/api python deployments/zombie_automation.py [--heartbeat-s 60]

The next index run of the same project also marks a killed run Crashed (flows/dead_runs.py),
whether it was started by a deployment or the CLI.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import timedelta

NAME = "graphrag-flow: crash zombie flow runs"
#: prefect.yaml's PREFECT_FLOWS_HEARTBEAT_FREQUENCY for deployment runs.
HEARTBEAT_S = 60
#: Missed beats before a run is called dead: one late beat on a loaded machine is not a death.
MISSED_BEATS = 3


def zombie_automation(heartbeat_s: int = HEARTBEAT_S):
    """The automation, as Prefect documents it (docs: "How to detect and respond to zombie flows")."""
    from prefect.automations import AutomationCore
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    within = timedelta(seconds=MISSED_BEATS * heartbeat_s)
    return AutomationCore(
        name=NAME,
        description=f"Marks a flow run Crashed when {MISSED_BEATS} heartbeats ({within.total_seconds():g} s) pass "
                    "without a heartbeat or a final state (graphrag-flow deployments/zombie_automation.py).",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
            },
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=within,
        ),
        actions=[ChangeFlowRunState(
            state=StateType.CRASHED,
            message=f"no heartbeat for {within.total_seconds():g} s: the flow run's process is gone "
                    "(the next index run of the project resumes its work)",
        )],
    )


async def ensure_zombie_automation(heartbeat_s: int = HEARTBEAT_S) -> str:
    """Create the automation, or update the one of the same name; its id."""
    from prefect.client.orchestration import get_client

    automation = zombie_automation(heartbeat_s)
    async with get_client() as client:
        existing = await client.read_automations_by_name(NAME)
        if existing:
            await client.update_automation(existing[0].id, automation)
            return str(existing[0].id)
        return str(await client.create_automation(automation))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--heartbeat-s", type=int, default=HEARTBEAT_S,
                        help="the workers' PREFECT_FLOWS_HEARTBEAT_FREQUENCY (default: prefect.yaml's)")
    args = parser.parse_args()
    print(asyncio.run(ensure_zombie_automation(args.heartbeat_s)))


if __name__ == "__main__":
    main()

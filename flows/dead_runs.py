"""A killed index run leaves its Prefect flow run Running forever: the next run of the project
marks it Crashed.

A `kill -9` (or an OOM kill, or a machine that lost power) gives the flow's engine no chance to
report. Two things end such a run's Running state:

- deployment runs: the engine's heartbeats (PREFECT_FLOWS_HEARTBEAT_FREQUENCY, set in
  prefect.yaml) and the "zombie" automation `deployments/zombie_automation.py` creates, which
  marks a run Crashed when its heartbeats stop (see deployments/README.md);
- any run, CLI runs included: the next index run of the same project. It holds the project
  lock (graphrag_flow/storage/project_lock.py), an OS file lock a dead process no longer holds, so the
  run that held it before is over; if Prefect still shows it Running or Pending, it died. This
  module marks it, and its task runs still running, Crashed with a message saying so.
"""

from __future__ import annotations

import logging
from pathlib import Path
from uuid import UUID

#: States a run that held the lock cannot be in any more once another run holds it.
_UNFINISHED = ("RUNNING", "PENDING", "CANCELLING")


async def crash_dead_holder(previous: dict | None, current_run_id: str, root: Path,
                            logger: logging.Logger | logging.LoggerAdapter) -> str | None:
    """Mark the lock's last holder Crashed when Prefect still shows it unfinished; its id, or None."""
    run_id = (previous or {}).get("flow_run_id")
    if not run_id or run_id == current_run_id:
        return None
    try:
        flow_run_id = UUID(str(run_id))
    except ValueError:
        return None
    try:
        return await _crash(flow_run_id, previous or {}, current_run_id, root, logger)
    except Exception as exc:  # the run goes on: this only corrects what the UI shows
        logger.warning("could not check or mark the project's previous flow run %s: %s", flow_run_id,
                       type(exc).__name__)
        return None


async def _crash(flow_run_id: UUID, previous: dict, current_run_id: str, root: Path,
                 logger: logging.Logger | logging.LoggerAdapter) -> str | None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter, FlowRunFilterId, TaskRunFilter, TaskRunFilterState, TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Crashed

    async with get_client() as client:
        try:
            dead = await client.read_flow_run(flow_run_id)
        except ObjectNotFound:  # another Prefect server, or its database was reset
            return None
        if dead.state is None or dead.state.type.value not in _UNFINISHED:
            return None
        message = (f"the process of this run ended without reporting (killed, or its machine stopped): pid "
                   f"{previous.get('pid')} on {previous.get('host')} held the lock of {root} from "
                   f"{previous.get('started_at')}; flow run {current_run_id or '(no id)'} took the lock and resumes "
                   "its work")
        await client.set_flow_run_state(flow_run_id, Crashed(message=message), force=True)
        tasks = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            task_run_filter=TaskRunFilter(state=TaskRunFilterState(type=TaskRunFilterStateType(
                any_=[StateType.RUNNING, StateType.PENDING]))),
        )
        for task_run in tasks:
            await client.set_task_run_state(task_run.id, Crashed(message=message), force=True)
    logger.warning("flow run %s of %s was still %s after its process ended; marked it Crashed",
                   flow_run_id, root, dead.state.type.value)
    return str(flow_run_id)

"""A deployment run that reaches its budget pauses for a person instead of failing.

The run stops sending at its budget (graphrag_flow/llm/spend.py); a run started by hand fails
with a message saying how to go on. A scheduled (deployment) run has no one at a terminal, so
it pauses with `pause_flow_run(wait_for_input=BudgetApproval)`: the Prefect UI shows the run
Paused with a form holding the new budget (prefilled with twice the old one). Once a person
submits it, the run goes on in the same flow run, from the answers it has (nothing is paid
twice), under the new budget, counted from the run's start. Not resumed within
`PAUSE_TIMEOUT_S`, the run fails as a run over budget does.
"""

from __future__ import annotations

import logging

from prefect.artifacts import acreate_markdown_artifact
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import Field

from flows.artifacts import artifact_key
from graphrag_flow.errors import BudgetExceededError
from graphrag_flow.llm.spend import SpendGate

#: How long a paused run waits for approval: a night, so the morning's person can approve it.
PAUSE_TIMEOUT_S = 12 * 3600


class BudgetApproval(RunInput):
    """The form a person fills in to let a paused run go on (null = no limit of that kind)."""

    max_run_cost_usd: float | None = Field(None, gt=0, description="New budget for this run, US dollars")
    max_run_tokens: int | None = Field(None, gt=0, description="New budget for this run, tokens")


async def wait_for_new_budget(gate: SpendGate | None, exc: BudgetExceededError,
                              logger: logging.Logger | logging.LoggerAdapter, root: str) -> None:
    """Pause until a person submits a new budget; raises `exc` again when there is no gate to
    raise (a run refused before it started stays refused: its estimate is the figure to act on)."""
    if gate is None or not gate.exhausted:
        raise exc
    message = f"{exc} -- paused: approve a new budget in the Prefect UI (Resume) to go on"
    logger.warning("%s", message)
    try:
        await acreate_markdown_artifact(key=artifact_key(root, "summary"), markdown=f"# Paused at its budget\n\n{message}\n",
                                        description="graphrag-flow run summary (paused at its budget)")
    except Exception as publish_exc:  # the UI is a view: the pause itself must still happen
        logger.warning("could not publish the pause artifact: %s", publish_exc)
    suggested = BudgetApproval(
        max_run_cost_usd=None if gate.max_cost_usd is None else round(2 * gate.max_cost_usd, 4),
        max_run_tokens=None if gate.max_tokens is None else 2 * gate.max_tokens,
    )
    approval = await pause_flow_run(wait_for_input=BudgetApproval.with_initial_data(**suggested.model_dump()),
                                    timeout=PAUSE_TIMEOUT_S)
    gate.raise_budget(approval.max_run_tokens, approval.max_run_cost_usd)
    logger.info("budget approved: %s; going on from the answers received", gate.describe())

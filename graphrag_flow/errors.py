"""The errors graphrag-flow raises: each names the item (file, text unit, batch, community) or setting."""

from __future__ import annotations


class GraphragFlowError(Exception):
    """Base class: a message a user can act on, never carrying a secret."""


class SettingsError(GraphragFlowError):
    """settings.yaml or an env override is wrong; the message names the key."""


class InputError(GraphragFlowError):
    """The input folder cannot be indexed (missing, empty, nothing readable)."""


class FatalLLMError(GraphragFlowError):
    """The provider refused us in a way no retry fixes (401/403/404): stop the whole run."""


class ItemFailedError(GraphragFlowError):
    """One item (text unit, batch, community) failed for good after its retries."""

    def __init__(self, item: str, reason: str):
        super().__init__(f"{item}: {reason}")
        self.item = item
        self.reason = reason


class StageFailedError(GraphragFlowError):
    """A stage finished the items it could, saved them, and lists the ones that failed."""

    def __init__(self, stage: str, failures: list[ItemFailedError]):
        shown = "; ".join(str(f) for f in failures[:10])
        more = f" (and {len(failures) - 10} more)" if len(failures) > 10 else ""
        super().__init__(f"stage {stage}: {len(failures)} item(s) failed: {shown}{more}")
        self.stage = stage
        self.failures = failures


class VerifyError(GraphragFlowError):
    """Outputs do not match their sources (a missing vector, a duplicate id, a wrong dimension)."""


class OutputWriteError(GraphragFlowError):
    """The run's new outputs could not be written (a full disk, a permission): the message names
    the file; the served output/ is the last completed run's, unchanged."""


class Neo4jSinkError(GraphragFlowError):
    """The Neo4j sink failed: server unreachable, credentials refused, or a batch rejected.

    The message names the setting to fix (`neo4j.uri`, `neo4j.user`/`neo4j.password`,
    `neo4j.database`) or the batch that failed; it never carries the password.
    """

    def __init__(self, message: str, *, setting: str | None = None):
        super().__init__(message)
        self.setting = setting


class ProjectBusyError(GraphragFlowError):
    """Another index run of the same project holds its lock (see graphrag_flow/storage/project_lock.py)."""


class NotWritableError(GraphragFlowError):
    """A folder an index run writes to (the project, output/, cache/) is not writable; names it."""


class BudgetExceededError(GraphragFlowError):
    """A run would cross, or has reached, its budget (`llm.max_run_tokens`, `llm.max_run_cost_usd`,
    `index --max-cost`): the message names the budget, the figures and how to go on."""

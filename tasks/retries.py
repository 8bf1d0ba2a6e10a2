"""The Prefect options of stage tasks: task names, cache keys, persisted results and retries."""

from __future__ import annotations

from typing import Any

from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext

from graphrag_flow.errors import FatalLLMError, InputError, SettingsError, StageFailedError, VerifyError
from graphrag_flow.llm.spend import NotSentOverBudget

#: Errors no retry fixes: a stage retry would only repeat them.
NO_RETRY = (FatalLLMError, SettingsError, InputError, VerifyError)

STAGE_RETRIES = 1
STAGE_RETRY_DELAY_S = [3]
STAGE_RETRY_JITTER = 0.5


def failed_state_exception(state) -> BaseException | None:
    """The exception a failed task state holds, without awaiting anything.

    `state.result()` cannot be used in a retry_condition_fn of an async task: there it returns
    an un-awaited coroutine instead of raising (Prefect 3.8.8), so every error would look
    retryable. A failed state's data is the exception, or a result record holding it when the
    task persists results.
    """
    data = state.data
    if isinstance(data, BaseException):
        return data
    inner = getattr(data, "result", None)
    return inner if isinstance(inner, BaseException) else None


def retry_unless_fatal(task, task_run, state) -> bool:
    """Prefect retry_condition_fn: 401/403/404, bad settings and bad input stop at once, and so
    does a stage whose requests the run's budget refused (a retry would be refused too)."""
    exc = failed_state_exception(state)
    if isinstance(exc, StageFailedError) and any(isinstance(f, NotSentOverBudget) for f in exc.failures):
        return False
    return not isinstance(exc, NO_RETRY)


def _key_parameter(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """A cached stage's Prefect cache key: the `key` the flow computed for it (tasks/keys.py)."""
    return parameters["key"]


def cached_stage(stage: str) -> dict[str, Any]:
    """Options of a stage Prefect caches across runs: its result (a StageRef) is persisted under
    the key the task is given; the flow chooses where (cache/prefect-results) and when to refresh."""
    return dict(
        name=stage,
        task_run_name=stage,
        cache_key_fn=_key_parameter,
        persist_result=True,
        retries=STAGE_RETRIES,
        retry_delay_seconds=STAGE_RETRY_DELAY_S,
        retry_jitter_factor=STAGE_RETRY_JITTER,
        retry_condition_fn=retry_unless_fatal,
    )


def uncached_stage(stage: str, task_run_name: str | None = None, retries: int = 0) -> dict[str, Any]:
    """Options of a stage that runs every time (its inputs or its own checkpoint decide what it does)."""
    options: dict[str, Any] = dict(name=stage, task_run_name=task_run_name or stage, cache_policy=NO_CACHE)
    if retries:
        options.update(retries=retries, retry_delay_seconds=STAGE_RETRY_DELAY_S, retry_condition_fn=retry_unless_fatal)
    return options

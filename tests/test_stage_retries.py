"""Stage retries: errors no retry fixes (401/403/404, bad settings, bad input) stop at once.

The states are Prefect's own, built the way its task engine builds them for a failed async
task, with and without a persisting result store (stage tasks persist their results).
"""

from __future__ import annotations

import asyncio

import pytest
from prefect.results import ResultStore
from prefect.states import exception_to_failed_state

from graphrag_flow.errors import FatalLLMError, InputError, ItemFailedError, SettingsError, StageFailedError
from tasks.retries import retry_unless_fatal


def _failed(exc: BaseException, tmp_path, persist: bool):
    async def build():
        store = None
        if persist:
            from prefect.filesystems import LocalFileSystem

            store = ResultStore(result_storage=LocalFileSystem(basepath=str(tmp_path)))
        try:
            raise exc
        except BaseException as raised:
            return await exception_to_failed_state(raised, result_store=store)

    return asyncio.run(build())


def _retried(state) -> bool:
    """Prefect calls retry_condition_fn of an async task from inside the task's event loop."""

    async def decide():
        return retry_unless_fatal(None, None, state)

    return asyncio.run(decide())


@pytest.mark.parametrize("persist", [False, True])
@pytest.mark.parametrize(
    "exc", [FatalLLMError("API key rejected by http://x/v1"), SettingsError("llm.chat_model"), InputError("no input")]
)
def test_fatal_errors_are_not_retried(exc, persist, tmp_path):
    assert _retried(_failed(exc, tmp_path, persist)) is False


@pytest.mark.parametrize("persist", [False, True])
def test_a_stage_with_failed_items_or_a_crash_is_retried(persist, tmp_path):
    failed_items = StageFailedError("extract", [ItemFailedError("text unit abc", "500 after 6 retries")])
    assert _retried(_failed(failed_items, tmp_path, persist)) is True
    assert _retried(_failed(ConnectionResetError("peer"), tmp_path, persist)) is True

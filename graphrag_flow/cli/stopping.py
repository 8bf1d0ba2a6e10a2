"""Ctrl-C and SIGTERM (`kill`, systemd, `docker stop`) stop `index` the same quick, quiet way.

A run is safe to stop at any moment (everything it finished is saved: answers in the answer
cache, vectors in output.next, stages in their checkpoints; output/ is switched only whole), so
a stop only has to let Prefect record the flow run as stopped and leave:

- SIGINT and SIGTERM cancel the flow's task; the flow engine sees the cancellation, marks the
  run Crashed in Prefect and returns. Prefect's engine installs its own SIGTERM handler while a
  flow runs, which raises `TerminationSignal` wherever the main thread is: inside one of asyncio's
  callbacks asyncio logs it and goes on (the run would not stop at all). So the CLI's handler is
  put back every `REINSTALL_S` while the flow runs; a `TerminationSignal` that still comes (the
  moment before that) is handled wherever it surfaces: out of the loop, or in a callback.
- The worker threads still busy (the offline model embedding a batch, a LanceDB merge) are not
  waited for: `asyncio.run` would wait for every queued thread job, tens of seconds. The process
  ends with `os._exit` once the atexit hooks (Prefect's temporary server, the log files) ran: to
  the data on disk this is a kill -9 after the last saved step, which the run's design makes safe.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import signal
import sys
from typing import Any, Coroutine, NoReturn, TypeVar

T = TypeVar("T")
#: How often the CLI's SIGTERM handler is put back over Prefect's while the flow runs.
REINSTALL_S = 0.2


class RunStopped(Exception):
    """The run was stopped by `signum` (SIGINT or SIGTERM) and Prefect has recorded it."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def run_stoppable(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)`, except that SIGINT and SIGTERM cancel `main` and raise RunStopped
    without waiting for the worker threads still busy (call `exit_now` then)."""
    from prefect.exceptions import TerminationSignal

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    task = loop.create_task(main)
    received: list[int] = []

    def stop(signum: int, _frame: Any = None) -> None:
        received.append(signum)
        loop.call_soon_threadsafe(task.cancel)

    def keep_ours() -> None:
        if signal.getsignal(signal.SIGTERM) is not stop:
            signal.signal(signal.SIGTERM, stop)
        if not task.done():
            loop.call_later(REINSTALL_S, keep_ours)

    def on_callback_error(loop: asyncio.AbstractEventLoop, context: dict) -> None:
        error = context.get("exception")
        if isinstance(error, TerminationSignal):
            stop(error.signal)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(on_callback_error)
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    loop.call_soon(keep_ours)
    try:
        try:
            return loop.run_until_complete(task)
        except TerminationSignal as exc:  # Prefect's handler, while the flow ran
            received.append(exc.signal)
            task.cancel()
            _finish(loop, task)
        except asyncio.CancelledError:
            if not received:
                raise
        raise RunStopped(received[0])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if received:
            loop.close()  # shuts the thread pool down without waiting for it
        else:
            _close(loop)
        asyncio.set_event_loop(None)


def _finish(loop: asyncio.AbstractEventLoop, task: asyncio.Task) -> None:
    """Let the cancelled flow record its end in Prefect."""
    try:
        loop.run_until_complete(task)
    except BaseException:  # noqa: BLE001  (the cancellation itself, or what the engine raised on it)
        pass


def _close(loop: asyncio.AbstractEventLoop) -> None:
    """What asyncio.run does after a run that ended on its own."""
    try:
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()


def exit_now(code: int) -> NoReturn:
    """End the process without joining the worker threads a stopped run left busy: the atexit
    hooks run (Prefect stops its temporary server, logging flushes its files), then os._exit."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001  (a closed pipe)
            pass
    atexit._run_exitfuncs()
    os._exit(code)

"""A reader worker process (workers.py starts it): imports the readers, says it is ready, then
reads (entry, bytes, settings) messages from stdin and answers each with an Outcome on stdout.

    python -m graphrag_flow.stages.load.reader_process MEMORY_MB PARENT_PID

Its address space is capped at what it holds once the readers are imported plus MEMORY_MB
(input.reader_memory_mb): what one file may take, whatever the libraries' own size.
"""

from __future__ import annotations

import importlib
import os
import resource
import signal
import sys

_READER_MODULES = [f"graphrag_flow.stages.load.readers.{m}" for m in ("pdf", "word", "web")]


def _address_space() -> int:
    """This process's virtual size in bytes (0 where /proc is not there)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _cap_memory(memory_mb: int) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _address_space() + memory_mb * 1024 * 1024
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _die_with(parent_pid: int) -> None:
    """On Linux, the kernel kills this worker when the load stage's process dies (a kill -9 of
    the run must not leave a parse of a 500-page PDF running on); elsewhere the worker ends at
    its next message, when the closed pipe says the parent is gone."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(0)


def serve(memory_mb: int, parent_pid: int) -> None:
    _die_with(parent_pid)
    # The answers go to the original stdout; anything a library prints goes to stderr instead.
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    requests = sys.stdin.buffer
    from graphrag_flow.stages.load.readers import Extraction, Reader, Unreadable
    from graphrag_flow.stages.load.workers import Outcome, receive, send

    for module in _READER_MODULES:
        try:
            importlib.import_module(module)
        except ImportError:
            pass  # its extra is not installed: the load stage does not send such files
    _cap_memory(memory_mb)
    send(answers, "ready")
    while True:
        try:
            entry, data, settings = receive(requests)
        except EOFError:
            return
        try:
            outcome = Outcome(Reader("", "", entry, None, None).load()(data, settings))
        except Unreadable as exc:
            outcome = Outcome(Extraction(refused=str(exc)))
        except MemoryError:
            outcome = Outcome(Extraction(refused=f"reading it needs more than input.reader_memory_mb={memory_mb} MB "
                                                 "(a decompression bomb?); skipped"), cacheable=False)
        del data
        send(answers, outcome)


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]))

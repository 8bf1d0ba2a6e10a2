"""Readers run in worker processes, each with a memory cap and a time limit per file.

A parser is fed whatever lands in input/: a PDF whose streams inflate to gigabytes, a page
tree that loops, a file that takes an hour. In a worker process its address space is capped
(`input.reader_memory_mb`: past it an allocation fails with MemoryError there, not in the run)
and each file has `input.reader_timeout_s`, after which its worker is killed (whatever it is
doing, C code included); a worker that dies (a crash in a C library) costs that file, never the
run. Each such file is skipped with a warning. Workers read files side by side, one per core.

A worker is `python -m graphrag_flow.stages.load.reader_process`, started by the load stage and
talked to over pipes: not multiprocessing, whose spawn and forkserver children import the
parent's main module again (the CLI's `__main__` would run), and whose fork copies a process
that has threads (Prefect's, the event loop's) with whatever locks they held.
"""

from __future__ import annotations

import os
import pickle
import queue
import select
import struct
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from graphrag_flow.config import InputSettings
from graphrag_flow.stages.load.readers import Extraction, Reader

_HEADER = struct.Struct(">Q")  # the length of each pickled message on the pipes
#: A worker imports Python and the parsing libraries before its first file (seconds on a busy
#: machine): not counted in input.reader_timeout_s.
START_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Outcome:
    """A reader's result, and whether it holds whatever the machine's state (cacheable): a time
    limit or a memory cap met depends on the settings and the machine's load, not on the file."""

    extraction: Extraction
    cacheable: bool = True


def send(stream, value: object) -> None:
    payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(payload)) + payload)
    stream.flush()


def receive(stream) -> object:
    """The next message; EOFError when the other side is gone."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError
    (size,) = _HEADER.unpack(header)
    payload = stream.read(size)
    if len(payload) < size:
        raise EOFError
    return pickle.loads(payload)


def _refused(reason: str) -> Outcome:
    return Outcome(Extraction(refused=reason), cacheable=False)


class _Worker:
    """One reader process, reading one file at a time."""

    def __init__(self, settings: InputSettings):
        self.settings = settings
        self.process = subprocess.Popen(
            [sys.executable, "-m", "graphrag_flow.stages.load.reader_process", str(settings.reader_memory_mb),
             str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, close_fds=True,
        )
        self.started = False

    def _answer_within(self, seconds: float) -> bool:
        ready, _, _ = select.select([self.process.stdout], [], [], seconds)
        return bool(ready)

    def _start(self) -> None:
        if not self._answer_within(START_TIMEOUT_S) or receive(self.process.stdout) != "ready":
            raise EOFError
        self.started = True

    def read(self, entry: str, data: bytes) -> Outcome:
        try:
            if not self.started:
                self._start()
            deadline = time.monotonic() + self.settings.reader_timeout_s
            send(self.process.stdin, (entry, data, self.settings))
            if not self._answer_within(max(0.0, deadline - time.monotonic())):
                self.stop()
                return _refused(f"reading it took longer than input.reader_timeout_s="
                                f"{self.settings.reader_timeout_s:g} s; skipped")
            outcome = receive(self.process.stdout)
        except (EOFError, OSError, pickle.UnpicklingError):
            self.stop()
            return _refused("its reader's process died reading it (a crash in the parsing library); skipped")
        assert isinstance(outcome, Outcome)
        return outcome

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.alive:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass


class ReaderPool:
    """Worker processes for the readers, each started when a file first needs it."""

    def __init__(self, settings: InputSettings, workers: int | None = None):
        self.settings = settings
        self.workers = workers or max(1, min(os.cpu_count() or 1, 4))
        self._threads: ThreadPoolExecutor | None = None
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._all: list[_Worker] = []

    def _read(self, entry: str, data: bytes) -> Outcome:
        try:
            worker = self._idle.get_nowait()
        except queue.Empty:
            worker = _Worker(self.settings)
            self._all.append(worker)
        outcome = worker.read(entry, data)
        if worker.alive:
            self._idle.put(worker)
        return outcome

    def submit(self, reader: Reader, data: bytes) -> Future:
        """The reader on the file's bytes in a worker; the future's result is an Outcome."""
        if self._threads is None:
            self._threads = ThreadPoolExecutor(self.workers, thread_name_prefix="reader")
        return self._threads.submit(self._read, reader.entry, data)

    def close(self) -> None:
        if self._threads is not None:
            self._threads.shutdown(wait=True, cancel_futures=True)
            self._threads = None
        for worker in self._all:
            worker.stop()
        self._all.clear()

    def __enter__(self) -> "ReaderPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

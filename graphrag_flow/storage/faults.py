"""Named points where a test makes the run kill itself or fail as a full disk would.

Timers and request counters cannot reliably hit a moment such as "the parquet tables are
written, the manifest is not" or "between the two renames of the switch", and a full disk
cannot be made without a filesystem of its own. A test sets GRAPHRAG_FLOW_TEST_KILL_AT to a
point's name (the process SIGKILLs itself there, as `kill -9` would) or
GRAPHRAG_FLOW_TEST_ENOSPC_AT (an OSError ENOSPC is raised there, as a full disk gives it when
a file is flushed). Unset (always, outside tests), a point costs one environment lookup.
"""

from __future__ import annotations

import errno
import os
import signal

KILL_AT_ENV = "GRAPHRAG_FLOW_TEST_KILL_AT"
ENOSPC_AT_ENV = "GRAPHRAG_FLOW_TEST_ENOSPC_AT"


def kill_point(name: str) -> None:
    if os.environ.get(KILL_AT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def disk_full_point(name: str, path: os.PathLike | str) -> None:
    if os.environ.get(ENOSPC_AT_ENV) == name:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

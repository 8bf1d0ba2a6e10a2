"""Named points where a test makes the run kill itself (SIGKILL, as `kill -9` would).

Timers and request counters cannot reliably hit a moment such as "the parquet tables are
written, the manifest is not" or "between the two renames of the switch". The test sets
GRAPHRAG_FLOW_TEST_KILL_AT to one point's name; unset (always, outside tests), a point costs
one environment lookup.
"""

from __future__ import annotations

import os
import signal

KILL_AT_ENV = "GRAPHRAG_FLOW_TEST_KILL_AT"


def kill_point(name: str) -> None:
    if os.environ.get(KILL_AT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)

"""Output files follow the umask: another user (the one running `graphrag query`) can read them
under the usual umask 022, and nobody else can under 077."""

from __future__ import annotations

import stat
import subprocess
import sys

import pytest

from conftest import REPO

_WRITER = r"""
import os, sys
from pathlib import Path
import pandas as pd
os.umask(int(sys.argv[2], 8))
from graphrag_flow.storage.atomic import write_json, write_parquet
from graphrag_flow.storage.stages import StageStore
out = Path(sys.argv[1])
frame = pd.DataFrame({"id": ["a", "b"]})
write_parquet(frame, out / "entities.parquet")
write_parquet(frame, out / "entities.parquet")  # replacing a file keeps following the umask
write_json({"run_id": "x"}, out / "_manifest.json")
StageStore(out / "cache" / "stages").save("chunk", "k", {"text_units": frame})
"""


@pytest.mark.parametrize("umask,mode", [("022", 0o644), ("077", 0o600)])
def test_atomically_written_files_get_the_mode_the_umask_gives(tmp_path, umask, mode):
    subprocess.run([sys.executable, "-c", _WRITER, str(tmp_path), umask], cwd=REPO, check=True)
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert sorted(p.name for p in files) == ["_done.json", "_manifest.json", "entities.parquet", "text_units.parquet"]
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {p.name: oct(mode) for p in files}

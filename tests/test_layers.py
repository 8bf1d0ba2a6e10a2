"""The layers stay apart: the domain library (graphrag_flow/, stages and storage included) runs
without Prefect, so it is testable on its own and a stage is reusable under another runner; the
CLI reaches the flow only when a command runs it, so `--help`, `init` and `status` start fast."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO

_IMPORT_ALL = r"""
import importlib, json, pkgutil, sys
import graphrag_flow
names = sorted(m.name for m in pkgutil.walk_packages(graphrag_flow.__path__, "graphrag_flow."))
for name in names:
    if name != "graphrag_flow.cli.__main__":  # runs the CLI
        importlib.import_module(name)
layers = sorted({m.split(".")[0] for m in sys.modules} & {"prefect", "tasks", "flows"})
print(json.dumps({"modules": names, "layers": layers}))
"""


def test_no_module_of_graphrag_flow_imports_prefect_tasks_or_flows():
    proc = subprocess.run([sys.executable, "-c", _IMPORT_ALL], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout.splitlines()[-1])
    assert {"graphrag_flow.stages.extract.rules", "graphrag_flow.stages.neo4j.sink", "graphrag_flow.cli.commands",
            "graphrag_flow.storage.paths", "graphrag_flow.channels"} <= set(found["modules"])
    assert found["layers"] == [], f"imported by the domain library: {found['layers']}"


def test_no_module_of_an_entrypoint_folder_shadows_the_standard_library():
    """Prefect puts an entrypoint's folder (`flows/` for `flows/index.py:index`) first on sys.path
    when a worker loads the flow (as Python does for `python deployments/<script>.py`), and a Dask
    LocalCluster's worker processes inherit that path: a `flows/secrets.py` there made numpy's
    `from secrets import randbits` fail in every worker."""
    for folder in ("flows", "deployments"):
        names = {p.stem for p in (REPO / folder).glob("*.py")}
        assert not names & set(sys.stdlib_module_names), (folder, sorted(names & set(sys.stdlib_module_names)))

"""Screenshots of what a person sees in the Prefect UI after an index run (headless Chromium).

    python deployments/screenshots.py --api-url http://127.0.0.1:4200/api --out shots/
    python deployments/screenshots.py --flow-run <uuid>            # a given run, else the latest `index` run

Needs Debian's `chromium` (`apt-get install -y chromium`); the test suite does not. Writes one
PNG per page (the run's task graph and logs, the artifacts index, the history of
    usage_key = next((k for k in artifacts if k.endswith("-usage")), None)
    if usage_key is not None:
        pages["usage-artifact"] = (f"{ui}/artifacts/artifact/{artifacts[usage_key]['id']}",
                                   ["embed-entity_description", "completion_tokens", "cost_usd"])
the project's summary artifact across runs, this run's summary and its stage table) and checks from the rendered
DOM that each page shows what it should (exit code 1 otherwise). Start the server with
PREFECT_API_URL set to its own address, or the UI calls port 4200 ("Can't connect to Server API").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1400,1300",
                  "--virtual-time-budget=30000"]


def api(api_url: str, path: str, body: dict | None = None) -> object:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(api_url.rstrip("/") + path, data=data, method="GET" if body is None else "POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def latest_index_run(api_url: str) -> dict:
    runs = api(api_url, "/flow_runs/filter", {
        "flows": {"name": {"any_": ["index"]}}, "sort": "EXPECTED_START_TIME_DESC", "limit": 1,
        "flow_runs": {"state": {"type": {"any_": ["COMPLETED", "FAILED"]}}},
    })
    if not runs:
        sys.exit(f"no finished `index` flow run at {api_url}")
    return runs[0]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    sys.exit("chromium not found: apt-get install -y chromium")


def render(browser: str, url: str, png: Path) -> str:
    """Screenshot the page, and return its rendered DOM's text (a second, DOM-only load)."""
    subprocess.run([browser, *CHROMIUM_FLAGS, f"--screenshot={png}", url], check=True, capture_output=True,
                   timeout=120)
    dom = subprocess.run([browser, *CHROMIUM_FLAGS, "--dump-dom", url], check=True, capture_output=True, text=True,
                         timeout=120)
    return dom.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api-url", default=os.environ.get("PREFECT_API_URL", "http://127.0.0.1:4200/api"))
    parser.add_argument("--flow-run", help="flow run id (default: the latest finished `index` run)")
    parser.add_argument("--out", type=Path, default=Path("screenshots"))
    args = parser.parse_args()

    run = api(args.api_url, f"/flow_runs/{args.flow_run}") if args.flow_run else latest_index_run(args.api_url)
    ui = args.api_url.rstrip("/").removesuffix("/api")
    artifacts = {a["key"]: a for a in api(args.api_url, "/artifacts/filter",
                                          {"flow_runs": {"id": {"any_": [run["id"]]}}}) if a.get("key")}
    # the project's keys (flows/artifacts.py artifact_key): graphrag-flow-<name>-<hash>-summary / -stages
    summary_key = next((k for k in artifacts if k.endswith("-summary")), "graphrag-flow-summary")
    stages_key = next((k for k in artifacts if k.endswith("-stages")), "graphrag-flow-stages")
    pages = {
        "flow-run": (f"{ui}/runs/flow-run/{run['id']}", [run["name"], "Completed" if run["state_type"] == "COMPLETED"
                                                        else "Failed"]),
        "artifacts": (f"{ui}/artifacts", [summary_key, stages_key]),
        # one entry per run that published a summary: the project's nightly history
        "artifact-history": (f"{ui}/artifacts/key/{summary_key}", [run["name"]]),
    }
    if summary_key in artifacts:
        pages["summary-artifact"] = (f"{ui}/artifacts/artifact/{artifacts[summary_key]['id']}",
                                     ["graphrag-flow index of"])
    usage_key = next((k for k in artifacts if k.endswith("-usage")), None)
    if usage_key is not None:
        pages["usage-artifact"] = (f"{ui}/artifacts/artifact/{artifacts[usage_key]['id']}",
                                   ["embed-entity_description", "completion_tokens", "cost_usd"])
    if stages_key in artifacts:
        pages["stages-artifact"] = (f"{ui}/artifacts/artifact/{artifacts[stages_key]['id']}",
                                    ["embed-entity_description", "cache_hits"])
    args.out.mkdir(parents=True, exist_ok=True)
    browser = chromium()
    missing = []
    for name, (url, expected) in pages.items():
        png = args.out / f"{name}.png"
        for _attempt in range(3):  # a busy machine may render before the API answered: try again
            dom = render(browser, url, png)
            absent = [text for text in expected if text not in dom]
            if "Can't connect to Server API" in dom:
                absent.append("(the UI cannot reach the API: start the server with PREFECT_API_URL set)")
            if not absent:
                break
        print(f"{png}  {url}  {'ok' if not absent else 'MISSING: ' + ', '.join(absent)}")
        missing += absent
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())

"""What a person at the terminal sees from `graphrag-flow index` (issue #23): the bars and the
run's warnings, not Prefect's log; an error once; a stop by SIGTERM as quick and quiet as Ctrl-C;
the full log in a file under cache/logs/."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO, cli_env, make_project, run_cli

FILES = {"a.txt": b"Ada Lovelace wrote the first program for the Analytical Engine of Charles Babbage.",
         "b.txt": b"Grace Hopper wrote the first compiler. Grace Hopper worked on the Harvard Mark I."}


def _log_files(root: Path) -> list[Path]:
    return sorted((root / "cache" / "logs").glob("index-*.log"))


def test_the_terminal_shows_no_prefect_log_lines_and_the_log_file_has_them(tmp_path, prefect_home):
    root = make_project(tmp_path / "p", files=FILES)
    result = run_cli(["index", "--root", str(root)], prefect_home, PREFECT_LOGGING_LEVEL="INFO")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    shown = result.stdout + result.stderr
    assert "| INFO" not in shown and "Finished in state" not in shown, shown[-3000:]
    [log] = _log_files(root)
    assert f"log: {log}" in " ".join(result.stdout.split())
    text = log.read_text()
    assert "Task run 'extract' - Finished in state" in text and "Flow run 'index-" in text, text[-3000:]


def test_an_input_error_is_printed_once_with_where_the_log_is(tmp_path, prefect_home):
    root = make_project(tmp_path / "p", files={"a.txt": b"\x00\x01\x02" * 10})
    result = run_cli(["index", "--root", str(root)], prefect_home)
    shown = result.stdout + result.stderr
    assert result.returncode == 1, shown[-3000:]
    assert shown.count("could be read as text") == 1, shown
    assert "Traceback" not in shown and "Still processing items" not in shown, shown
    [log] = _log_files(root)
    assert f"(the full log: {log})" in " ".join(shown.split())
    assert log.read_text().count("Traceback") >= 1  # the file keeps what the terminal leaves out


def test_sigterm_stops_a_run_in_seconds_with_one_line_saying_the_next_run_resumes(tmp_path, prefect_home, peps_mini):
    root = make_project(tmp_path / "p", input_dir=peps_mini)
    proc = subprocess.Popen([sys.executable, "-m", "graphrag_flow.cli", "index", "--root", str(root)], cwd=REPO,
                            env=cli_env(prefect_home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        # the stages are under way once chunk's checkpoint is saved (extract and the rest start then)
        while not list((root / "cache" / "stages").glob("chunk/*/_done.json")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.2)
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        out, err = proc.communicate(timeout=120)
        exit_s = time.monotonic() - stopped
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, out[-3000:] + err[-3000:]
    assert "Traceback" not in out + err and "TerminationSignal" not in out + err, err[-5000:]
    said = " ".join(err.split())
    assert f"stopped by SIGTERM: what this run finished is saved; the next `graphrag-flow index --root {root}` " \
           f"resumes from it" in said, said[-2000:]
    # 47-59 s when Python joined the busy embedding threads; the recording in Prefect stays in.
    assert exit_s < 20, exit_s
    [log] = _log_files(root)
    assert "Flow run 'index-" in log.read_text() and "Crashed" in log.read_text()
    assert not (root / "output").exists()


def test_the_readme_openai_steps_work_against_a_server_at_another_api_base(tmp_path, prefect_home, fake):
    """README "Use a real model", OpenAI: init, the provider switched by the sed line, the key in
    OPENAI_API_KEY, check, index; the fake server stands in for api.openai.com."""
    import re

    from fake_openai import configure_remote

    root = tmp_path / "my-index"
    assert run_cli(["init", "--root", str(root)], prefect_home).returncode == 0
    for name, data in FILES.items():
        (root / "input" / name).write_bytes(data)
    settings = root / "settings.yaml"
    text = settings.read_text()
    edited = re.sub(r"^  provider: offline ", "  provider: openai  ", text, flags=re.M)  # the README's sed
    assert edited != text
    settings.write_text(edited)
    env = {"OPENAI_API_KEY": "sk-readme-0123456789", "GRAPHRAG_FLOW_LLM__API_BASE": fake}
    configure_remote(fake, api_key=env["OPENAI_API_KEY"])
    try:
        checked = run_cli(["check", "--root", str(root)], prefect_home, **env)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "the key was accepted" in checked.stdout
        indexed = run_cli(["index", "--root", str(root)], prefect_home, **env)
        assert indexed.returncode == 0, indexed.stdout[-3000:] + indexed.stderr[-3000:]
        assert "(verified)" in indexed.stdout
    finally:
        configure_remote(fake, api_key=None)


def test_the_stage_table_fits_80_columns_without_cutting_a_number():
    """At 80 columns all eleven columns cut every number ('144.…') and stage name ('embed…'); the
    counters that are 0 everywhere make room, and a stage name wraps rather than being cut."""
    from rich.console import Console

    from graphrag_flow.cli.render import stage_table

    stages = [{"stage": s, "items": 1433, "reused": 0, "recomputed": 1433, "requests": r, "retries": 0,
               "cache_hits": h, "failures": 0, "tokens": 0, "cost": "-", "seconds": 569.12}
              for s, r, h in (("embed-community_full_content", 0, 0), ("extract", 0, 0))]
    # offline (nothing sent, no prices), then a provider run with its tokens and cost
    for requests, tokens, cost, wanted in (
            (0, 0, "-", ["stage", "items", "reused", "recomputed", "seconds"]),
            (8339, 555707, "$0.2929", ["stage", "items", "reused", "requests", "tokens", "cost", "seconds"])):
        rows = [dict(row, requests=requests, tokens=tokens, cost=cost) for row in stages]
        console = Console(width=80, record=True, file=open("/dev/null", "w"))
        table, dropped = stage_table(rows, console.width)
        console.print(table)
        text = console.export_text()
        assert [c.header for c in table.columns] == wanted
        assert max(len(line) for line in text.splitlines()) <= 80
        assert "…" not in text and text.count("569.12") == 2 and "1433" in text, text
        assert requests == 0 or (text.count("555707") == 2 and text.count("$0.2929") == 2), text
        assert "extract" in text
    wide, dropped = stage_table(stages, 200)
    assert len(wide.columns) == 11 and dropped == []  # a wide terminal, a pipe: every column

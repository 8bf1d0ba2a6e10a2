"""Readers by file type (PDF, DOCX, HTML, CSV, JSON, JSON Lines) and the extracted-text cache:
real files made with the libraries' own writers (tests/reader_files.py), their extracted text
checked against what was put in."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pyarrow.parquet as pq

import reader_files as make
from conftest import make_project, run_cli
from graphrag_flow.config import InputSettings
from graphrag_flow.stages.load import load_documents
from graphrag_flow.stages.load import readers

REPO = Path(__file__).resolve().parents[1]


def _project(tmp_path: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        path = tmp_path / "input" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return tmp_path


def _load(root: Path, **settings):
    loaded = load_documents(root, InputSettings(**settings))
    texts = dict(zip(loaded.documents["title"], loaded.documents["text"]))
    warnings = {}
    for w in loaded.warnings:
        warnings.setdefault(w.file, []).append(w.reason)
    return texts, warnings, loaded


# --------------------------------------------------------------------------- PDF


def test_a_text_pdf_reads_its_body_without_running_headers_and_footers(tmp_path):
    pages = [
        ["Chapter one. The Treaty of Westphalia ended the Thirty Years War and", "set up the inter-",
         "national order of sovereign states in Europe."],
        ["Chapter two. Cardinal Mazarin negotiated for France at Munster."],
        ["Chapter three. Sweden gained Western Pomerania and Bremen-Verden."],
    ]
    data = make.pdf(pages, header="ACME Treaty Handbook - internal", footer="Page {page} of 3")
    texts, warnings, _ = _load(_project(tmp_path, {"handbook.pdf": data}))
    text = texts["handbook.pdf"]
    assert "ACME" not in text and "Page" not in text, text
    assert ("Chapter one. The Treaty of Westphalia ended the Thirty Years War and set up the international "
            "order of sovereign states in Europe.") in text
    # hyphenated names that are not broken across lines keep their hyphen
    assert "Bremen-Verden" in text
    assert text.index("Chapter one") < text.index("Chapter two") < text.index("Chapter three")
    assert warnings == {}


def test_a_two_column_page_is_read_one_column_after_the_other(tmp_path):
    left = [f"Left column sentence {i} about rivers." for i in range(25)]
    right = [f"Right column sentence {i} about mountains." for i in range(25)]
    texts, _, _ = _load(_project(tmp_path, {"columns.pdf": make.two_column_pdf(left, right)}))
    text = texts["columns.pdf"]
    positions = [text.index(line) for line in left + right]
    assert positions == sorted(positions), text[:500]


def test_a_scanned_pdf_is_skipped_with_a_warning_to_ocr_it(tmp_path):
    files = {"scan.pdf": make.scanned_pdf(), "note.txt": b"Something to index."}
    texts, warnings, _ = _load(_project(tmp_path, files))
    assert "scan.pdf" not in texts
    (reason,) = warnings["scan.pdf"]
    assert "no text layer" in reason and "OCR it first" in reason


def test_an_encrypted_pdf_is_skipped_and_one_with_only_an_owner_password_is_read(tmp_path):
    plain = make.pdf([["Confidential merger terms between Contoso and Fabrikam."]])
    files = {"locked.pdf": make.encrypted_pdf(plain, user_password="s3cret"),
             "restricted.pdf": make.encrypted_pdf(plain, user_password="")}
    texts, warnings, _ = _load(_project(tmp_path, files))
    assert "locked.pdf" not in texts
    assert "encrypted PDF" in warnings["locked.pdf"][0] and "password" in warnings["locked.pdf"][0]
    assert "Contoso and Fabrikam" in texts["restricted.pdf"]


def test_a_damaged_pdf_is_skipped_with_a_warning_and_the_run_goes_on(tmp_path):
    whole = make.pdf([["A sentence about Ada Lovelace."]])
    files = {"cut.pdf": whole[: len(whole) // 3], "junk.pdf": b"%PDF-1.7\n\x00\xff garbage", "ok.pdf": whole}
    texts, warnings, _ = _load(_project(tmp_path, files))
    assert list(texts) == ["ok.pdf"]
    assert set(warnings) == {"cut.pdf", "junk.pdf"}
    assert all("skipped" in reasons[0] for reasons in warnings.values())


def test_a_pdf_over_max_file_mb_is_not_parsed(tmp_path):
    data = make.pdf([[f"Line {i} of a long report." for i in range(40)]] * 30)
    texts, warnings, loaded = _load(_project(tmp_path, {"big.pdf": data, "a.txt": b"text"}),
                                    max_file_mb=len(data) / 2 / 1048576)
    assert "big.pdf" not in texts and "input.max_file_mb" in warnings["big.pdf"][0]
    assert loaded.extracted == 0


def test_a_pdf_decompression_bomb_is_stopped_by_the_worker_memory_cap_and_the_run_goes_on(tmp_path):
    """One content stream of a 3 MB PDF inflates to 1 GB: the worker's allocation fails at
    input.reader_memory_mb, this process never holds it, and the file is tried again next run."""
    import resource

    files = {"bomb.pdf": make.pdf_bomb(unpacked_gb=1), "ok.pdf": make.pdf([["A sentence about Ada Lovelace."]])}
    root = _project(tmp_path, files)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    texts, warnings, loaded = _load(root, reader_memory_mb=384)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 256 * 1024  # KB
    assert list(texts) == ["ok.pdf"]
    assert warnings["bomb.pdf"] == ["reading it needs more than input.reader_memory_mb=384 MB (a decompression "
                                    "bomb?); skipped"]
    _, _, loaded = _load(root, reader_memory_mb=384)
    assert (loaded.extracted, loaded.reused) == (1, 1)  # a cap met is not remembered: settings may change


def test_a_pdf_over_the_time_limit_is_skipped_and_its_worker_killed(tmp_path):
    long = make.pdf([[f"Line {i} of page {p} of a long manual." for i in range(45)] for p in range(150)])
    files = {"long.pdf": long, "short.pdf": make.pdf([["A sentence about Grace Hopper."]])}
    started = time.perf_counter()
    texts, warnings, _ = _load(_project(tmp_path, files), reader_timeout_s=1)
    assert time.perf_counter() - started < 30
    assert list(texts) == ["short.pdf"]
    assert warnings["long.pdf"] == ["reading it took longer than input.reader_timeout_s=1 s; skipped"]


def test_a_reader_process_that_dies_costs_its_file_only(tmp_path):
    """The worker parsing a long PDF is killed from outside (as a crash in C code would end it)."""
    import threading

    import psutil

    long = make.pdf([[f"Line {i} of page {p} of a long manual." for i in range(45)] for p in range(300)])
    root = _project(tmp_path, {"long.pdf": long, "short.txt": b"A sentence about Grace Hopper."})
    result = {}
    thread = threading.Thread(target=lambda: result.update(zip(("texts", "warnings", "loaded"), _load(root))))
    thread.start()
    deadline = time.monotonic() + 120
    workers = []
    while not workers and time.monotonic() < deadline:
        workers = [p for p in psutil.Process().children()
                   if "graphrag_flow.stages.load.reader_process" in " ".join(p.cmdline())]
        time.sleep(0.2)
    assert workers, "no reader process started"
    time.sleep(3)  # past its start, into the parse
    workers[0].kill()
    thread.join(timeout=120)
    assert list(result["texts"]) == ["short.txt"]
    assert result["warnings"]["long.pdf"] == ["its reader's process died reading it (a crash in the parsing "
                                              "library); skipped"]


# --------------------------------------------------------------------------- DOCX and HTML


def test_a_docx_reads_paragraphs_and_tables_in_document_order(tmp_path):
    data = make.docx_file([
        "Quarterly review of the Analytical Engine project.",
        [["Name", "Role", "Since"], ["Ada Lovelace", "Programmer", "1842"], ["Charles Babbage", None, "1834"]],
        "Babbage designed the engine; Lovelace wrote its first program.",
    ])
    texts, warnings, _ = _load(_project(tmp_path, {"review.docx": data}))
    assert texts["review.docx"] == (
        "Quarterly review of the Analytical Engine project.\n\n"
        "Name | Role | Since\nAda Lovelace | Programmer | 1842\nCharles Babbage | 1834\n\n"
        "Babbage designed the engine; Lovelace wrote its first program."
    )
    assert warnings == {}


def test_a_corrupt_docx_and_a_zip_bomb_are_refused_quickly_and_the_run_goes_on(tmp_path):
    good = make.docx_file(["A sentence about Grace Hopper."])
    bomb = make.zip_bomb_docx(unpacked_gb=2)
    assert len(bomb) < 4 * 1048576
    files = {"bomb.docx": bomb, "cut.docx": good[: len(good) // 2], "notzip.docx": b"PK\x03\x04 not a zip",
             "good.docx": good}
    tracemalloc.start()
    started = time.perf_counter()
    texts, warnings, _ = _load(_project(tmp_path, files))
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert list(texts) == ["good.docx"]
    assert "unpack to 2,048 MB" in warnings["bomb.docx"][0] and "without unpacking" in warnings["bomb.docx"][0]
    assert "not a valid DOCX" in warnings["notzip.docx"][0]
    assert "skipped" in warnings["cut.docx"][0]
    assert seconds < 10 and peak < 64 * 1048576, (seconds, peak)


def test_an_html_page_reads_its_main_text_without_navigation_or_scripts(tmp_path):
    page = b"""<!doctype html><html><head><meta charset="windows-1252"><title>The Thames</title>
    <script>var tracking = "SCRIPT-TEXT";</script><style>p { color: red }</style></head>
    <body><header><a href="/">Home</a> <a href="/about">About us</a></header>
    <nav><ul><li>Rivers</li><li>Mountains</li></ul></nav>
    <main><article><header><h1>The River Thames</h1></header>
    <p>The Thames flows through <a href="/london">London</a> to the North Sea.</p>
    <p>Its caf\xe9s line the <b>South Bank</b>.</p></article></main>
    <aside>Related: the Severn</aside><footer>Copyright 2024 Rivers Inc.</footer></body></html>"""
    texts, warnings, _ = _load(_project(tmp_path, {"thames.html": page}))
    assert texts["thames.html"] == (
        "The Thames\nThe River Thames\nThe Thames flows through London to the North Sea.\n"
        "Its caf\u00e9s line the South Bank."
    )
    assert warnings == {}


# --------------------------------------------------------------------------- records


def test_csv_records_are_documents_with_title_and_metadata_and_bad_rows_named_by_line(tmp_path):
    data = (b'name,body,team,year\n'
            b'Ada Lovelace,"Wrote the first program,\nfor the Analytical Engine.",math,1843\n'
            b'Grace Hopper,Built the first compiler.,navy,1952,extra\n'
            b'Alan Turing,,logic,1936\n'
            b'\n'
            b'Edsger Dijkstra,Found shortest paths.,cs,1959\n'
            b'Barbara Liskov,"Unfinished quote\n')
    texts, warnings, loaded = _load(_project(tmp_path, {"people.csv": data}), text_column="body",
                                    title_column="name", metadata_columns=["team", "year", "country"])
    assert texts == {"people.csv: Ada Lovelace": "Wrote the first program,\nfor the Analytical Engine.",
                     "people.csv: Edsger Dijkstra": "Found shortest paths."}
    metadata = dict(zip(loaded.documents["title"], loaded.documents["metadata"]))
    assert json.loads(metadata["people.csv: Ada Lovelace"]) == {"team": "math", "year": "1843"}
    reasons = warnings["people.csv"]
    assert "no column 'country' (setting input.metadata_columns)" in reasons
    assert "line 4: 5 fields where the header has 4; skipped" in reasons
    assert "line 5: 'body' is empty; skipped" in reasons
    assert any(r.startswith("line 8: malformed CSV") for r in reasons), reasons


def test_a_table_without_the_text_column_is_skipped_naming_the_setting(tmp_path):
    files = {"a.csv": b"title,content\nx,y\n", "b.txt": b"text"}
    texts, warnings, _ = _load(_project(tmp_path, files))
    assert "a.csv" not in texts
    assert "no column 'text' (setting input.text_column)" in warnings["a.csv"][0]


def test_json_and_json_lines_records_are_documents_named_by_title_or_row(tmp_path):
    files = {
        "notes.jsonl": b'{"text": "First note about Kepler.", "title": "kepler"}\nnot json\n\n'
                       b'{"text": "Second note about Brahe."}\n[1, 2]\n',
        "items.json": json.dumps([{"text": "An item about Galileo.", "tags": ["astronomy", "physics"]},
                                  {"text": "An item about Newton."}]).encode(),
    }
    texts, warnings, loaded = _load(_project(tmp_path, files), title_column="title", metadata_columns=["tags"])
    assert texts == {"notes.jsonl: kepler": "First note about Kepler.", "notes.jsonl: row 3": "Second note about Brahe.",
                     "items.json: row 1": "An item about Galileo.", "items.json: row 2": "An item about Newton."}
    assert warnings["notes.jsonl"][0].startswith("line 2: not valid JSON")
    assert warnings["notes.jsonl"][1] == "line 5: a JSON list, not an object; skipped"
    metadata = dict(zip(loaded.documents["title"], loaded.documents["metadata"]))
    assert json.loads(metadata["items.json: row 1"]) == {"tags": '["astronomy", "physics"]'}


# --------------------------------------------------------------------------- defaults, extras


def test_the_default_patterns_read_every_type_a_reader_exists_for():
    patterns = InputSettings().patterns
    assert {f"**/*{suffix}" for suffix in readers.READERS} <= set(patterns)


def test_a_type_whose_extra_is_not_installed_is_skipped_with_one_warning_naming_it(tmp_path):
    """python-docx made unimportable in a child process, as in an install without the extra."""
    doc = make.docx_file(["A sentence about Hedy Lamarr."])
    root = _project(tmp_path, {"a.docx": doc, "b.docx": doc, "c.txt": b"Plain text.",
                               "d.html": b"<p>A page about Hedy Lamarr.</p>"})
    code = ("import sys, json; sys.modules['docx'] = None; "
            "from graphrag_flow.config import InputSettings; "
            "from graphrag_flow.stages.load import load_documents; "
            "loaded = load_documents(sys.argv[1], InputSettings()); "
            "print(json.dumps([loaded.documents['title'].tolist(), [str(w) for w in loaded.warnings]]))")
    out = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True, cwd=REPO,
                         check=True)
    titles, warnings = json.loads(out.stdout)
    assert titles == ["c.txt", "d.html"]
    assert warnings == ["2 .docx files (a.docx, b.docx): not read: reading DOCX files needs the docx extra: "
                        "pip install 'graphrag-flow[docx]'"]


# --------------------------------------------------------------------------- the extracted-text cache


def test_an_unchanged_file_is_not_parsed_again_and_an_edited_one_is(tmp_path, monkeypatch):
    files = {
        "a.pdf": make.pdf([["Kepler described the orbits of the planets."]]),
        "b.pdf": make.pdf([["Brahe measured the positions of the stars."]]),
        "c.docx": make.docx_file(["Galileo observed the moons of Jupiter."]),
        "d.txt": b"Plain text is decoded, never cached.",
    }
    root = _project(tmp_path, files)
    first, _, loaded = _load(root)
    assert (loaded.extracted, loaded.reused) == (3, 0)
    ids = dict(zip(loaded.documents["title"], loaded.documents["id"]))
    again, _, loaded = _load(root)
    assert (loaded.extracted, loaded.reused) == (0, 3)
    assert again == first and dict(zip(loaded.documents["title"], loaded.documents["id"])) == ids

    (root / "input" / "a.pdf").write_bytes(make.pdf([["Kepler described three laws of planetary motion."]]))
    edited, _, loaded = _load(root)
    assert (loaded.extracted, loaded.reused) == (1, 2)
    assert "three laws" in edited["a.pdf"] and edited["b.pdf"] == first["b.pdf"]
    assert len(list((root / "cache" / "extracted").glob("*.json"))) == 3  # the old a.pdf's entry is gone

    # a new version of the PDF reader reads every PDF again, and the ids change with it
    monkeypatch.setitem(readers.READERS, ".pdf", readers.Reader("pdf", "999", "pdf.read", "pdfminer.six", None))
    _, _, loaded = _load(root)
    assert (loaded.extracted, loaded.reused) == (2, 1)
    new_ids = dict(zip(loaded.documents["title"], loaded.documents["id"]))
    assert new_ids["b.pdf"] != ids["b.pdf"] and new_ids["c.docx"] == ids["c.docx"]
    assert new_ids["d.txt"] == ids["d.txt"]


def test_a_refused_file_is_remembered_and_a_damaged_cache_entry_is_read_again(tmp_path):
    root = _project(tmp_path, {"scan.pdf": make.scanned_pdf(), "a.txt": b"text"})
    _, warnings, loaded = _load(root)
    assert loaded.extracted == 1
    _, again, loaded = _load(root)
    assert (loaded.extracted, loaded.reused) == (0, 1) and again == warnings
    for entry in (root / "cache" / "extracted").glob("*.json"):
        entry.write_bytes(b'{"documents": [')  # a torn write
    _, again, loaded = _load(root)
    assert (loaded.extracted, loaded.reused) == (1, 0) and again == warnings


# --------------------------------------------------------------------------- the CLI, end to end


def test_an_index_of_pdf_docx_html_and_csv_carries_titles_and_metadata(tmp_path, prefect_home):
    files = {
        "papers/orbits.pdf": make.pdf([["Johannes Kepler worked with Tycho Brahe in Prague."],
                                       ["Kepler published the Astronomia Nova in 1609."]],
                                      header="Journal of Astronomy", footer="{page}"),
        "memo.docx": make.docx_file(["Galileo Galilei observed Jupiter from Padua.",
                                     [["Moon", "Found"], ["Io", "1610"]]]),
        "page.html": b"<html><body><nav>Menu</nav><p>Isaac Newton wrote the Principia in Cambridge.</p></body></html>",
        "people.csv": b"name,text,field\nEmmy Noether,Emmy Noether proved her theorem in Gottingen.,algebra\n",
    }
    root = make_project(tmp_path / "project", files=files,
                        input={"title_column": "name", "metadata_columns": ["field"]})
    result = run_cli(["index", "--root", str(root)], prefect_home)
    assert result.returncode == 0, result.stdout + result.stderr
    documents = pq.read_table(root / "output" / "documents.parquet").to_pylist()
    by_title = {d["title"]: d for d in documents}
    assert sorted(by_title) == ["memo.docx", "page.html", "papers/orbits.pdf", "people.csv: Emmy Noether"]
    assert by_title["people.csv: Emmy Noether"]["raw_data"] == [("field", "algebra")]
    assert by_title["memo.docx"]["raw_data"] is None
    assert "Journal of Astronomy" not in by_title["papers/orbits.pdf"]["text"]
    assert "Menu" not in by_title["page.html"]["text"]
    result = run_cli(["index", "--root", str(root)], prefect_home)
    assert result.returncode == 0, result.stdout + result.stderr
    (done,) = (root / "cache" / "stages" / "load").glob("*/_done.json")  # the same documents: one key
    stats = json.loads(done.read_text())["stats"]
    assert (stats["files_parsed"], stats["files_from_extracted_cache"]) == (0, 4)

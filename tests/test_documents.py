"""Loading: bad files are skipped with one warning each; identical content is one document."""

import codecs
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from graphrag_flow.config import InputSettings
from graphrag_flow.stages.load import list_input, load_documents, read_listed
from graphrag_flow.config import load_settings
from graphrag_flow.errors import InputError, SettingsError


def _project(tmp_path, files: dict[str, bytes]):
    (tmp_path / "input").mkdir(parents=True)
    for name, data in files.items():
        path = tmp_path / "input" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return tmp_path


def _load(root, **settings):
    loaded = load_documents(root, InputSettings(**settings))
    return loaded.documents, loaded.warnings


def test_bad_files_are_skipped_with_one_warning_each(tmp_path):
    root = _project(
        tmp_path,
        {
            "good.txt": b"A valid document about Ada Lovelace.",
            "empty.txt": b"",
            "blank.md": b"   \n\n",
            "binary.txt": bytes(range(256)) * 4,
            "latin1.txt": "caf\u00e9 cr\u00e8me".encode("latin-1"),
            "sub/nested.rst": b"Nested text.",
            "broken.pdf": b"%PDF-1.4",
        },
    )
    docs, warnings = _load(root)
    assert sorted(docs["title"]) == ["good.txt", "sub/nested.rst"]
    warned = sorted(w.file for w in warnings)
    assert warned == ["binary.txt", "blank.md", "broken.pdf", "empty.txt", "latin1.txt"]
    assert all("skipped" in w.reason for w in warnings)


def test_bom_decides_the_encoding_and_nul_bytes_are_removed(tmp_path):
    root = _project(
        tmp_path,
        {
            "utf16.txt": codecs.BOM_UTF16_LE + "Grace Hopper wrote COBOL.".encode("utf-16-le"),
            "nul.txt": b"Alan Turing\x00 and Enigma.",
        },
    )
    docs, warnings = _load(root)
    texts = dict(zip(docs["title"], docs["text"]))
    assert texts["utf16.txt"] == "Grace Hopper wrote COBOL."
    assert texts["nul.txt"] == "Alan Turing and Enigma."
    assert [w.file for w in warnings] == ["nul.txt"]


def test_identical_content_is_one_document_titled_by_the_first_path(tmp_path):
    root = _project(tmp_path, {"b.txt": b"same text", "a.txt": b"same text"})
    docs, warnings = _load(root)
    assert docs["title"].tolist() == ["a.txt"]
    assert "a.txt" in warnings[0].reason and warnings[0].file == "b.txt"


def test_files_over_max_file_mb_are_skipped_naming_the_setting(tmp_path):
    root = _project(tmp_path, {"big.txt": b"x " * 600_000, "small.txt": b"tiny"})
    docs, warnings = _load(root, max_file_mb=1)
    assert docs["title"].tolist() == ["small.txt"]
    assert "input.max_file_mb" in warnings[0].reason


def test_document_id_is_the_sha256_of_the_content(tmp_path):
    import hashlib

    root = _project(tmp_path, {"a.txt": b"content"})
    docs, _ = _load(root)
    assert docs["id"][0] == hashlib.sha256(b"content").hexdigest()
    assert docs["creation_date"][0].endswith("+0000")


def test_an_empty_input_folder_is_a_clear_error(tmp_path):
    root = _project(tmp_path, {})
    with pytest.raises(InputError, match="no input files"):
        load_documents(root, InputSettings())


def test_a_folder_of_only_unreadable_files_is_a_clear_error(tmp_path):
    root = _project(tmp_path, {"empty.txt": b""})
    with pytest.raises(InputError, match="could be read"):
        load_documents(root, InputSettings())


# --------------------------------------------------------------------------- links

SECRET = "SECRET-7f3a outside text that must never be indexed"


def _outside(tmp_path):
    """A folder beside the project, with a secret file and a folder holding another."""
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "secret.txt").write_text(SECRET)
    (outside / "dir" / "secret2.txt").write_text(SECRET + " (in a folder)")
    return outside


def _linked_project(tmp_path):
    root = _project(tmp_path / "project", {"a.txt": b"Ada Lovelace wrote notes.", "sub/b.txt": b"Babbage built engines."})
    outside = _outside(tmp_path)
    inp = root / "input"
    (inp / "abs.txt").symlink_to(outside / "secret.txt")  # absolute
    (inp / "rel.txt").symlink_to(Path("..") / ".." / "outside" / "secret.txt")  # relative
    (inp / "outdir").symlink_to(outside / "dir", target_is_directory=True)
    (inp / "dotdot").symlink_to("..", target_is_directory=True)  # the project folder, outside too
    return root


def test_links_leading_out_of_the_input_folder_are_not_read_and_each_is_named(tmp_path):
    root = _linked_project(tmp_path)
    docs, warnings = _load(root)
    assert sorted(docs["title"]) == ["a.txt", "sub/b.txt"]
    assert not docs["text"].str.contains("SECRET").any()
    by_file = {w.file: w.reason for w in warnings}
    assert set(by_file) == {"abs.txt", "rel.txt", "outdir/", "dotdot/"}, warnings
    for reason in by_file.values():
        assert "outside input.dir" in reason and "input.follow_links_outside" in reason
    assert str(tmp_path / "outside" / "secret.txt") in by_file["abs.txt"]


def test_links_leading_out_are_read_with_the_explicit_setting(tmp_path):
    root = _linked_project(tmp_path)
    (root / "input" / "dotdot").unlink()  # the project folder would hold input/ again: tested below
    docs, warnings = _load(root, follow_links_outside=True)
    texts = dict(zip(docs["title"], docs["text"]))
    assert sorted(texts) == ["a.txt", "abs.txt", "outdir/secret2.txt", "sub/b.txt"]
    assert texts["abs.txt"] == SECRET
    # rel.txt is the same file as abs.txt: one document, titled by the first link
    assert [(w.file, "the same file as abs.txt" in w.reason) for w in warnings] == [("rel.txt", True)]


def test_links_inside_are_followed_and_a_file_reached_twice_is_one_document(tmp_path):
    root = _project(tmp_path, {"a.txt": b"Ada Lovelace wrote notes.", "sub/b.txt": b"Babbage built engines.",
                               "store/c.txt": b"Charles Babbage and the Difference Engine."})
    inp = root / "input"
    (inp / "z-link.txt").symlink_to("a.txt")  # a file link, sorted after its target
    (inp / "0-link.txt").symlink_to("sub/b.txt")  # sorted before its target: the real path still wins
    (inp / "sub" / "c-link.md").symlink_to(inp / "store" / "c.txt")  # absolute, inside
    (inp / "alias").symlink_to("sub", target_is_directory=True)  # a second path to a folder
    docs, warnings = _load(root)
    assert sorted(docs["title"]) == ["a.txt", "store/c.txt", "sub/b.txt"]
    reasons = {w.file: w.reason for w in warnings}
    assert "the same file as a.txt" in reasons["z-link.txt"]
    assert "the same file as sub/b.txt" in reasons["0-link.txt"]
    assert "the same file as store/c.txt" in reasons["sub/c-link.md"]
    assert reasons["alias/"].startswith("leads to sub/, which is read already")
    assert len(warnings) == 4


def test_a_linked_folder_inside_is_read_under_the_links_name(tmp_path):
    """A folder only a link leads to (a hidden store the patterns' `**` does reach, via the link)."""
    root = _project(tmp_path, {"a.txt": b"Ada Lovelace wrote notes."})
    store = root / "input" / "store"
    store.mkdir()
    (store / "notes.txt").write_text("Grace Hopper wrote the first compiler.")
    patterns = ["*.txt", "docs/*.txt"]
    (root / "input" / "docs").symlink_to("store", target_is_directory=True)
    docs, warnings = _load(root, patterns=patterns)
    assert sorted(docs["title"]) == ["a.txt"]  # store/ was read first, where no pattern matches
    assert [w.file for w in warnings] == ["docs/"] and "leads to store/, which is read already" in warnings[0].reason


def test_link_loops_end_and_are_named(tmp_path):
    root = _project(tmp_path, {"a.txt": b"Ada Lovelace wrote notes.", "sub/b.txt": b"Babbage built engines."})
    inp = root / "input"
    (inp / "loop").symlink_to(".", target_is_directory=True)
    (inp / "sub" / "up").symlink_to("..", target_is_directory=True)
    (inp / "x.txt").symlink_to("y.txt")  # a loop of file links
    (inp / "y.txt").symlink_to("x.txt")
    (inp / "gone.txt").symlink_to("nothing-here.txt")
    docs, warnings = _load(root)
    assert sorted(docs["title"]) == ["a.txt", "sub/b.txt"]
    reasons = {w.file: w.reason for w in warnings}
    assert set(reasons) == {"loop/", "sub/up/", "x.txt", "y.txt", "gone.txt"}, warnings
    assert reasons["loop/"].startswith("leads to input.dir itself, which is read already")
    assert reasons["sub/up/"].startswith("leads to input.dir itself, which is read already")
    assert "does not exist" in reasons["gone.txt"]


def test_a_fifo_is_skipped_without_blocking(tmp_path):
    root = _project(tmp_path, {"a.txt": b"Ada Lovelace wrote notes."})
    os.mkfifo(root / "input" / "pipe.txt")
    docs, warnings = _load(root)
    assert docs["title"].tolist() == ["a.txt"]
    assert [(w.file, "not a regular file" in w.reason) for w in warnings] == [("pipe.txt", True)]


def test_a_name_that_is_not_utf8_is_skipped_naming_it(tmp_path):
    root = _project(tmp_path, {"a.txt": b"Ada Lovelace wrote notes."})
    os.close(os.open(os.fsencode(root / "input") + b"/caf\xe9.txt", os.O_CREAT | os.O_WRONLY, 0o644))
    docs, warnings = _load(root)
    assert docs["title"].tolist() == ["a.txt"]
    assert [w.file for w in warnings] == ["caf\\xe9.txt"] and "UTF-8" in warnings[0].reason


def test_a_tree_as_deep_as_a_path_allows_is_read(tmp_path):
    base = tmp_path / "input"
    base.mkdir()
    levels = [base / "/".join(["d"] * n) for n in range(1, 1501)]  # below PATH_MAX, above the recursion limit
    deep = levels[-1] / "a.txt"
    try:
        for level in levels:  # pathlib's and os's makedirs recurse too deep for this
            level.mkdir()
        deep.write_bytes(b"Ada Lovelace at the bottom.")
        docs, warnings = _load(tmp_path)
        assert docs["title"].tolist() == [deep.relative_to(base).as_posix()] and warnings == []
    finally:  # so does shutil.rmtree: pytest could not remove the tree afterwards
        deep.unlink(missing_ok=True)
        for level in reversed(levels):
            if level.exists():
                level.rmdir()


def test_a_pattern_leading_out_of_the_input_folder_is_an_error_naming_it(tmp_path):
    """Settings refuse such a pattern when they load; the loader refuses it too, for settings
    made without validation."""
    root = _project(tmp_path, {"a.txt": b"text"})
    for pattern in ("../*.txt", "/etc/*", "**/../../*.txt"):
        (root / "settings.yaml").write_text(f"input:\n  patterns: ['{pattern}']\n")
        with pytest.raises(SettingsError, match=r"input\.patterns"):
            load_settings(root)
        with pytest.raises(InputError, match=r"input\.patterns"):
            load_documents(root, InputSettings.model_construct(patterns=[pattern]))


# --------------------------------------------------------------------------- files changing between listing and reading


def _listed(tmp_path, files):
    root = _project(tmp_path, files)
    return root, list_input(root / "input", InputSettings())


def _read(listing):
    loaded = read_listed(listing, InputSettings())
    return loaded.documents, {w.file: w.reason for w in loaded.warnings}


def test_a_file_deleted_after_listing_is_skipped_with_a_warning(tmp_path):
    root, listing = _listed(tmp_path, {"a.txt": b"Ada Lovelace.", "b.txt": b"Charles Babbage."})
    (root / "input" / "b.txt").unlink()
    docs, reasons = _read(listing)
    assert docs["title"].tolist() == ["a.txt"]
    assert reasons == {"b.txt": "deleted after the input folder was listed; skipped"}


def test_a_file_replaced_by_a_folder_or_a_link_after_listing_is_skipped(tmp_path):
    outside = _outside(tmp_path)
    root, listing = _listed(tmp_path, {"a.txt": b"Ada Lovelace.", "dir.txt": b"Babbage.", "link.txt": b"Hopper.",
                                       "moved/c.txt": b"Turing."})
    inp = root / "input"
    (inp / "dir.txt").unlink()
    (inp / "dir.txt").mkdir()
    (inp / "link.txt").unlink()
    (inp / "link.txt").symlink_to(outside / "secret.txt")
    (inp / "moved").rename(inp / "elsewhere")  # a folder on the path becomes a link to outside
    (outside / "c.txt").write_text(SECRET)
    (inp / "moved").symlink_to(outside, target_is_directory=True)
    docs, reasons = _read(listing)
    assert docs["title"].tolist() == ["a.txt"]
    assert not docs["text"].str.contains("SECRET").any()
    assert "a folder now" in reasons["dir.txt"]
    assert "replaced by a link" in reasons["link.txt"]
    assert "behind a link" in reasons["moved/c.txt"]


def test_a_file_made_unreadable_after_listing_is_skipped(tmp_path):
    """Run as another user when the tests run as root (root reads a mode-000 file)."""
    base = Path(tempfile.mkdtemp(prefix="unreadable-", dir="/tmp"))
    try:
        base.chmod(0o755)
        root, listing = _listed(base, {"a.txt": b"Ada Lovelace.", "b.txt": b"Charles Babbage."})
        for path in (root, root / "input", root / "input" / "a.txt"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        (root / "input" / "b.txt").chmod(0)
        # the listing is handed over as the titles it found; the child drops root before reading
        code = (
            "import json, os, sys; from pathlib import Path; from graphrag_flow.config import InputSettings; "
            "from graphrag_flow.stages.load import read_listed, InputListing, InputFile; "
            "inp = Path(sys.argv[1]); listing = InputListing(inp, [InputFile(t, inp / t, False) for t in sys.argv[2:]]); "
            "os.geteuid() == 0 and (os.setgid(65534), os.setuid(65534)); "
            "loaded = read_listed(listing, InputSettings()); "
            "print(json.dumps([loaded.documents['title'].tolist(), [[w.file, w.reason] for w in loaded.warnings]]))"
        )
        titles = [f.title for f in listing.files]
        out = subprocess.run([sys.executable, "-c", code, str(listing.input_dir), *titles], capture_output=True,
                             text=True, cwd=Path(__file__).resolve().parents[1], check=True)
        titles, warned = json.loads(out.stdout)
        assert titles == ["a.txt"]
        assert warned == [["b.txt", "cannot be read (Permission denied); skipped"]]
    finally:
        shutil.rmtree(base)


# --------------------------------------------------------------------------- files no pattern matches


def test_files_no_pattern_matches_are_counted_per_extension_with_a_few_names(tmp_path):
    files = {"a.txt": b"Ada Lovelace.", "Report.PPTX": b"PK", "notes.xlsx": b"PK", "Makefile": b"all:"}
    files.update({f"scans/{i:04d}.pptx": b"PK" for i in range(1200)})
    root = _project(tmp_path, files)
    loaded = load_documents(root, InputSettings())
    assert loaded.documents["title"].tolist() == ["a.txt"]
    assert loaded.warnings == []
    lines = loaded.not_matched
    assert len(lines) == 3
    assert lines[0].startswith("1201 .pptx files not read (Report.PPTX, scans/0000.pptx, scans/0001.pptx, …): "
                               "input.patterns matches **/*.txt, **/*.md, **/*.rst, **/*.pdf")
    assert lines[1].startswith("1 file without an extension not read (Makefile)")
    assert lines[2].startswith("1 .xlsx file not read (notes.xlsx)")
    assert all(len(line) < 300 for line in lines)


def test_a_folder_with_only_unmatched_files_is_an_error_saying_so(tmp_path):
    root = _project(tmp_path, {"a.pptx": b"PK", "b.pptx": b"PK"})
    with pytest.raises(InputError, match=r"no input files(.|\n)*2 \.pptx files not read"):
        load_documents(root, InputSettings())

"""Loading: bad files are skipped with one warning each; identical content is one document."""

import codecs

import pytest

from graphrag_flow.config import InputSettings
from graphrag_flow.documents import load_documents
from graphrag_flow.errors import InputError


def _project(tmp_path, files: dict[str, bytes]):
    (tmp_path / "input").mkdir()
    for name, data in files.items():
        path = tmp_path / "input" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return tmp_path


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
            "ignored.pdf": b"%PDF-1.4",
        },
    )
    docs, warnings = load_documents(root, InputSettings())
    assert sorted(docs["title"]) == ["good.txt", "sub/nested.rst"]
    warned = sorted(w.file for w in warnings)
    assert warned == ["binary.txt", "blank.md", "empty.txt", "latin1.txt"]
    assert all("skipped" in w.reason for w in warnings)


def test_bom_decides_the_encoding_and_nul_bytes_are_removed(tmp_path):
    root = _project(
        tmp_path,
        {
            "utf16.txt": codecs.BOM_UTF16_LE + "Grace Hopper wrote COBOL.".encode("utf-16-le"),
            "nul.txt": b"Alan Turing\x00 and Enigma.",
        },
    )
    docs, warnings = load_documents(root, InputSettings())
    texts = dict(zip(docs["title"], docs["text"]))
    assert texts["utf16.txt"] == "Grace Hopper wrote COBOL."
    assert texts["nul.txt"] == "Alan Turing and Enigma."
    assert [w.file for w in warnings] == ["nul.txt"]


def test_identical_content_is_one_document_titled_by_the_first_path(tmp_path):
    root = _project(tmp_path, {"b.txt": b"same text", "a.txt": b"same text"})
    docs, warnings = load_documents(root, InputSettings())
    assert docs["title"].tolist() == ["a.txt"]
    assert "a.txt" in warnings[0].reason and warnings[0].file == "b.txt"


def test_files_over_max_file_mb_are_skipped_naming_the_setting(tmp_path):
    root = _project(tmp_path, {"big.txt": b"x " * 600_000, "small.txt": b"tiny"})
    docs, warnings = load_documents(root, InputSettings(max_file_mb=1))
    assert docs["title"].tolist() == ["small.txt"]
    assert "input.max_file_mb" in warnings[0].reason


def test_document_id_is_the_sha256_of_the_content(tmp_path):
    import hashlib

    root = _project(tmp_path, {"a.txt": b"content"})
    docs, _ = load_documents(root, InputSettings())
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

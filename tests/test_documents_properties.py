"""Property tests of the input reader: whatever the folder holds, and however it changes while
it is read, loading gives documents and warnings naming files, or an InputError when nothing
could be read; never another exception, never text from outside the input folder."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graphrag_flow.config import InputSettings
from graphrag_flow.stages.load import list_input, load_documents, read_listed
from graphrag_flow.errors import InputError

SECRET = "SECRET-c41d outside text"
SUFFIXES = (".txt", ".md", ".rst", ".pdf", ".TXT", "")
#: Examples per property: each builds a folder on disk, and the machine is shared.
EXAMPLES = 60

_name_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"), min_size=1, max_size=40
)


def _file_name(stem: str, suffix: str) -> bytes:
    """A valid name (at most 255 bytes, not . or ..) from any text, suffix kept."""
    name = os.fsencode(stem)[: 255 - len(suffix)] + suffix.encode()
    return b"_" + name[1:] if name in (b".", b"..") else name


names = st.one_of(
    st.builds(_file_name, _name_text, st.sampled_from(SUFFIXES)),  # unicode, spaces, leading dots
    st.builds(lambda n, s: _file_name("x" * n, s), st.integers(200, 255), st.sampled_from(SUFFIXES)),  # very long
    st.builds(lambda b, s: _file_name(os.fsdecode(b), s),  # bytes that are not UTF-8
              st.binary(min_size=1, max_size=30).filter(lambda b: b"/" not in b and b"\x00" not in b),
              st.sampled_from(SUFFIXES)),
)
texts = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=300)
contents = st.one_of(
    st.binary(max_size=600),  # random bytes
    texts.map(lambda t: t.encode("utf-8")),
    texts.map(lambda t: "\ufeff".encode("utf-16-le") + t.encode("utf-16-le")),  # BOM: utf-16
    st.builds(lambda t, n: t.encode("utf-8") + b"\x00" * n, texts, st.integers(1, 5)),
)
folders = st.sampled_from([b"", b"sub/", b".hidden/", b"a b/c d/"])


@contextmanager
def _tree(files: list[tuple[bytes, bytes, bytes]]) -> Iterator[Path]:
    """A project folder holding input/ with these (folder, name, contents), and a secret beside it."""
    base = Path(tempfile.mkdtemp(prefix="props-"))
    try:
        (base / "input").mkdir()
        (base / "outside.txt").write_text(SECRET)
        for folder, name, data in files:
            target = os.fsencode(base / "input") + b"/" + folder
            os.makedirs(target, exist_ok=True)
            fd = os.open(target + name, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _plain_text(data: bytes) -> str | None:
    """The text a user expects indexed from these bytes: valid UTF-8 (no BOM), no control
    characters but whitespace, not blank; None when it need not be."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if text.startswith("\ufeff") or any(c < " " and c not in "\t\n\r\f\v" for c in text) or not text.strip():
        return None
    return text


def _matches(name: bytes) -> bool:
    return name.endswith((b".txt", b".md", b".rst", b".pdf"))


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(folders, names, contents), min_size=1, max_size=8, unique_by=lambda f: f[0] + f[1]))
def test_any_names_and_bytes_give_documents_or_warnings_naming_each_file(files):
    with _tree(files) as root:
        try:
            loaded = load_documents(root, InputSettings())
        except InputError:
            documents, named = None, None
        else:
            documents = dict(zip(loaded.documents["title"], loaded.documents["text"]))
            named = {w.file for w in loaded.warnings}
        readable = {}
        for folder, name, data in files:
            title = os.fsdecode(folder + name)
            if not (_is_utf8(folder + name) and _matches(name)):
                continue
            text = None if name.endswith(b".pdf") else _plain_text(data)  # bytes made here are no PDF
            if text is not None:
                readable[title] = text
            elif documents is not None:
                assert title in named or title in documents, f"{title!r} neither read nor named in a warning"
        if documents is None:
            assert not readable, f"InputError although {sorted(readable)} are plain text"
            return
        # every plain-text file is a document, or has the content of one (named as a duplicate)
        for title, text in readable.items():
            assert text.replace("\x00", "") in documents.values(), title
            assert title in documents or title in named
        assert SECRET not in "".join(documents.values())
        unmatched = sum(not _matches(n) for f, n, _ in files if _is_utf8(f + n))
        assert sum(int(line.split()[0]) for line in loaded.not_matched) == unmatched


def _mutate(path: bytes, how: str, outside: Path) -> None:
    os.unlink(path)
    if how == "folder":
        os.mkdir(path)
        with open(path + b"/inner.txt", "w") as f:
            f.write("a file inside the folder that replaced a listed file")
    elif how == "link-outside":
        os.symlink(outside, path)
    elif how == "fifo":
        os.mkfifo(path)
    elif how == "empty":
        open(path, "wb").close()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(folders, st.builds(_file_name, _name_text, st.just(".txt"))), min_size=1, max_size=8,
             unique_by=lambda f: f[0] + f[1]),
    st.data(),
)
def test_files_changing_between_listing_and_reading_are_skipped_with_a_warning(files, data):
    files = [(folder, name, f"Document {i}: Ada Lovelace and Charles Babbage.".encode()) for i, (folder, name) in
             enumerate(files)]
    with _tree(files) as root:
        listing = list_input(root / "input", InputSettings())
        by_title = {f.title: f for f in listing.files}
        changes = {}
        for title in sorted(by_title):
            how = data.draw(st.sampled_from(["keep", "keep", "deleted", "folder", "link-outside", "fifo", "empty"]),
                            label=title)
            if how != "keep":
                _mutate(os.fsencode(by_title[title].path), how, root / "outside.txt")
            changes[title] = how
        try:
            loaded = read_listed(listing, InputSettings())
        except InputError:
            assert all(how != "keep" for how in changes.values())
            return
        docs = set(loaded.documents["title"])
        named = {w.file for w in loaded.warnings}
        assert docs == {t for t, how in changes.items() if how == "keep"}
        assert {t for t, how in changes.items() if how != "keep"} <= named
        assert not loaded.documents["text"].str.contains("SECRET").any()

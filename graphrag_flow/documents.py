"""The load stage: turn the input folder into documents, skipping what cannot be text.

Bad files are skipped with one warning each (never a crash, never silently), because one
stray PDF in a nightly input folder must not cost the night's index. Reading is two steps,
listing then reading, and a file may change between them (deleted, replaced by a folder or a
link, made unreadable): the reader checks again and skips it with a warning.

Reads stay inside `input.dir`: a link leading out of it (to /etc/passwd, to ../secrets/) is
not followed unless `input.follow_links_outside` says so, because what is read is sent to
the chat API and written to the output tables. Links inside it, to files or folders, are
followed; every folder is read once (a link loop ends there) and a file reached by two
paths is one document, titled by its own path rather than a link's.
"""

from __future__ import annotations

import codecs
import datetime as dt
import errno
import os
import stat
from collections import defaultdict, deque
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

import pandas as pd

from graphrag_flow.config import InputSettings
from graphrag_flow.errors import InputError
from graphrag_flow.hashing import sha256_text
from graphrag_flow.storage.paths import ProjectPaths

#: A file whose text has more control characters than this share is treated as binary.
_BINARY_CONTROL_SHARE = 0.01
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_ALLOWED_CONTROLS = {"\t", "\n", "\r", "\f", "\v"}
#: Never blocks on a FIFO (its open returns at once; it is then skipped as not a regular file),
#: never follows a link the listing did not see, never leaks the descriptor to a child process.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
#: Names of files no pattern matches, shown per extension in the run summary.
UNMATCHED_EXAMPLES = 3
_FOLLOW_SETTING = "input.follow_links_outside"

DOCUMENT_COLUMNS = ["id", "title", "text", "creation_date", "content_sha256"]


@dataclass(frozen=True)
class InputWarning:
    """One file that was skipped or altered, and why (shown in the run summary)."""

    file: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.reason}"


@dataclass(frozen=True)
class InputFile:
    """A file to read: its title (its path under input.dir, as listed) and where it really is."""

    title: str
    path: Path  # links resolved: what the reader opens (without following any link)
    via_link: bool  # reached through a link (a file or a folder on its path)


@dataclass
class UnmatchedFiles:
    """Files of one extension that no pattern of input.patterns matches."""

    extension: str  # lower case, with its dot; "" for names without one
    count: int = 0
    examples: list[str] = field(default_factory=list)

    def line(self, patterns: list[str]) -> str:
        kind = f"{self.extension} file" if self.extension else "file without an extension"
        plural = "" if self.count == 1 else "s"
        shown = ", ".join(self.examples) + (", …" if self.count > len(self.examples) else "")
        return (f"{self.count} {kind}{plural} not read ({shown}): input.patterns matches {', '.join(patterns)}; "
                "convert them to text, or add a pattern to input.patterns")


@dataclass
class InputListing:
    """What listing the input folder found: files to read, what it passed over and why."""

    input_dir: Path
    files: list[InputFile] = field(default_factory=list)
    warnings: list[InputWarning] = field(default_factory=list)
    unmatched: dict[str, UnmatchedFiles] = field(default_factory=dict)

    def unmatched_lines(self, patterns: list[str]) -> list[str]:
        """One line per extension, most files first."""
        groups = sorted(self.unmatched.values(), key=lambda g: (-g.count, g.extension))
        return [g.line(patterns) for g in groups]

    def note_unmatched(self, title: str) -> None:
        suffix = PurePosixPath(title).suffix.lower()
        group = self.unmatched.setdefault(suffix, UnmatchedFiles(suffix))
        group.count += 1
        if len(group.examples) < UNMATCHED_EXAMPLES:
            group.examples.append(title)


@dataclass
class LoadedInput:
    """The documents of the input folder, the warnings of the files skipped or altered, and one
    line per extension of the files no pattern matches."""

    documents: pd.DataFrame
    warnings: list[InputWarning]
    not_matched: list[str]


# --------------------------------------------------------------------------- patterns


def _pattern_parts(pattern: str) -> tuple[str, ...]:
    """A pattern's segments; one that could reach outside input.dir is an error naming it."""
    path = PurePosixPath(pattern)
    if not pattern or path.is_absolute() or ".." in path.parts:
        raise InputError(f"input.patterns: {pattern!r} must be a relative glob inside input.dir (no '/' start, no '..')")
    return path.parts


def _matches(parts: tuple[str, ...], pattern: tuple[str, ...]) -> bool:
    """pathlib's glob rules on a relative path: `**` is any number of folders, `*` and `?` stay
    within one name (and match a leading dot), case-sensitive."""
    if not pattern:
        return not parts
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_matches(parts[i:], rest) for i in range(len(parts) + 1))
    return bool(parts) and fnmatchcase(parts[0], head) and _matches(parts[1:], rest)


def matches_any(title: str, patterns: list[tuple[str, ...]]) -> bool:
    parts = PurePosixPath(title).parts
    return any(_matches(parts, p) for p in patterns)


# --------------------------------------------------------------------------- listing


def _shown(name: str) -> str:
    """A file name as text: bytes that are not UTF-8 shown as \\xNN."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes, kept by the file system encoding as surrogates
        return False
    return True


def _inside(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


class _Lister:
    """Walks input.dir once: real folders first, then the folders links lead to, each folder
    (by device and inode) once, so a loop or a second path to a folder ends at its second visit.

    Folders wait on a stack and a queue rather than in recursion: a tree as deep as a path
    allows must not end in RecursionError. Folder titles end in "/".
    """

    def __init__(self, input_dir: Path, settings: InputSettings):
        self.root = input_dir
        self.follow_outside = settings.follow_links_outside
        self.patterns = [_pattern_parts(p) for p in settings.patterns]
        self.listing = InputListing(input_dir)
        self.visited: dict[tuple[int, int], str] = {}
        self.real_folders: list[tuple[Path, str, bool]] = []  # (real path, title, via a link)
        self.linked_folders: deque[tuple[Path, str]] = deque()  # walked once the real tree is

    def warn(self, title: str, reason: str) -> None:
        self.listing.warnings.append(InputWarning(title, reason))

    def run(self) -> InputListing:
        self.real_folders.append((self.root, "", False))
        while self.real_folders or self.linked_folders:
            if self.real_folders:
                self.walk(*self.real_folders.pop())
            else:
                folder, title = self.linked_folders.popleft()
                self.walk(folder, title, via_link=True)
        self.listing.files = _one_per_file(self.listing.files, self.listing.warnings)
        return self.listing

    def _first_visit(self, folder: Path, title: str) -> bool:
        try:
            st = os.stat(folder)
        except OSError as exc:
            self.warn(title, f"folder cannot be read ({exc.strerror}); skipped")
            return False
        seen = self.visited.get((st.st_dev, st.st_ino))
        if seen is not None:
            self.warn(title, f"leads to {seen or 'input.dir itself'}, which is read already "
                             "(a link loop, or a second path to it); not read again")
            return False
        self.visited[(st.st_dev, st.st_ino)] = title
        return True

    def walk(self, folder: Path, title: str, via_link: bool) -> None:
        if not self._first_visit(folder, title):
            return
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            if not title:
                raise InputError(f"input folder {folder} cannot be read ({exc.strerror}) (setting input.dir)") from None
            self.warn(title, f"folder cannot be read ({exc.strerror}); skipped")
            return
        for entry in entries:
            self.entry(entry, title, via_link)

    def entry(self, entry: os.DirEntry, prefix: str, via_link: bool) -> None:
        title = prefix + entry.name
        if not _is_utf8(entry.name):
            self.warn(_shown(title), "name is not valid UTF-8; skipped (rename it)")
            return
        try:
            is_link = entry.is_symlink()
            target = Path(os.path.realpath(entry.path)) if is_link else Path(entry.path)
            st = os.stat(target) if is_link else entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            if entry.is_symlink() and matches_any(title, self.patterns):
                self.warn(title, "a link to nothing (its target does not exist); skipped")
            return  # else deleted while being listed: there is nothing to read
        except OSError as exc:
            if matches_any(title, self.patterns):
                self.warn(title, f"cannot be followed ({exc.strerror}); skipped")
            return
        outside = is_link and not _inside(target, self.root)
        if stat.S_ISDIR(st.st_mode):
            if outside and not self.follow_outside:
                self.warn(title + "/", f"a link to the folder {target}, outside input.dir; not followed "
                                       f"(set {_FOLLOW_SETTING}: true to read it)")
            elif is_link:
                self.linked_folders.append((target, title + "/"))
            else:
                self.real_folders.append((target, title + "/", via_link))
            return
        if not matches_any(title, self.patterns):
            self.listing.note_unmatched(title)
            return
        if outside and not self.follow_outside:
            self.warn(title, f"a link to {target}, outside input.dir; not read (set {_FOLLOW_SETTING}: true to read it)")
            return
        if not stat.S_ISREG(st.st_mode):
            self.warn(title, "not a regular file (a device, FIFO or socket); skipped")
            return
        self.listing.files.append(InputFile(title, target, via_link or is_link))


def _one_per_file(files: list[InputFile], warnings: list[InputWarning]) -> list[InputFile]:
    """One entry per real file, titled by its own path when it was reached directly."""
    by_path: dict[Path, list[InputFile]] = defaultdict(list)
    for f in files:
        by_path[f.path].append(f)
    kept = []
    for paths in by_path.values():
        paths.sort(key=lambda f: (f.via_link, f.title))
        kept.append(paths[0])
        for other in paths[1:]:
            warnings.append(InputWarning(other.title, f"the same file as {paths[0].title}; indexed once under that title"))
    return sorted(kept, key=lambda f: f.title)


def list_input(input_dir: Path, settings: InputSettings) -> InputListing:
    """The files of `input_dir` that input.patterns match, with warnings for what is passed over."""
    input_dir = Path(os.path.realpath(input_dir))
    if not input_dir.is_dir():
        raise InputError(f"input folder {input_dir} does not exist (setting input.dir)")
    return _Lister(input_dir, settings).run()


# --------------------------------------------------------------------------- reading


def decode_text(data: bytes) -> tuple[str | None, str | None]:
    """(text, None) or (None, why not). A BOM decides the encoding, else strict UTF-8."""
    encoding = "utf-8"
    for bom, name in _BOMS:
        if data.startswith(bom):
            encoding = name
            break
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        return None, f"not valid {encoding.upper()} text (byte {exc.start}); skipped"
    if encoding == "utf-8" and "\x00" in text and data.count(b"\x00") * 4 >= len(data):
        return None, "binary file (mostly NUL bytes); skipped"
    return text, None


def _control_share(text: str) -> float:
    sample = text[:65536]
    controls = sum(1 for ch in sample if ch < " " and ch not in _ALLOWED_CONTROLS and ch != "\x00")
    return controls / max(1, len(sample))


def _open_error(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "deleted after the input folder was listed; skipped"
    if exc.errno == errno.ELOOP:
        return "replaced by a link after the input folder was listed; skipped"
    return f"cannot be read ({exc.strerror or exc}); skipped"


def _read_bytes(file: InputFile, max_file_mb: float | None) -> tuple[bytes | None, float, str | None]:
    """(contents, mtime, None) or (None, 0, why not): the file as it is now, checked again."""
    try:
        fd = os.open(file.path, _OPEN_FLAGS)
    except OSError as exc:
        return None, 0.0, _open_error(exc)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            return None, 0.0, "a folder now, not a file; skipped"
        if not stat.S_ISREG(st.st_mode):
            return None, 0.0, "not a regular file (a device, FIFO or socket); skipped"
        if os.path.realpath(file.path) != str(file.path):  # a folder on its path became a link
            return None, 0.0, "moved behind a link after the input folder was listed; skipped"
        if max_file_mb is not None and st.st_size > max_file_mb * 1024 * 1024:
            return None, 0.0, f"{st.st_size / 1048576:.1f} MB is over input.max_file_mb={max_file_mb}; skipped"
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read(), st.st_mtime, None
    except OSError as exc:
        return None, 0.0, f"cannot be read ({exc.strerror or exc}); skipped"
    finally:
        os.close(fd)


def read_document(file: InputFile, max_file_mb: float | None) -> tuple[dict | None, list[InputWarning]]:
    title = file.title
    data, mtime, why_not = _read_bytes(file, max_file_mb)
    if data is None:
        return None, [InputWarning(title, why_not or "unreadable; skipped")]
    text, why_not = decode_text(data)
    del data
    if text is None:
        return None, [InputWarning(title, why_not or "unreadable; skipped")]
    if _control_share(text) > _BINARY_CONTROL_SHARE:
        return None, [InputWarning(title, "binary file (control characters); skipped")]
    warnings: list[InputWarning] = []
    if "\x00" in text:
        count = text.count("\x00")
        text = text.replace("\x00", "")
        warnings.append(InputWarning(title, f"{count} NUL byte(s) removed"))
    if not text.strip():
        return None, warnings + [InputWarning(title, "empty file; skipped")]
    doc_id = sha256_text(text)
    row = {
        "id": doc_id,
        "title": title,
        "text": text,
        "creation_date": dt.datetime.fromtimestamp(mtime, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S %z"),
        "content_sha256": doc_id,
    }
    return row, warnings


def _nothing_read(listing: InputListing, patterns: list[str], what: str) -> InputError:
    """The error of a folder with nothing to index, with what was passed over and why."""
    notes = listing.unmatched_lines(patterns) + [str(w) for w in listing.warnings[:5]]
    if len(listing.warnings) > 5:
        notes.append(f"(and {len(listing.warnings) - 5} more warnings)")
    return InputError(f"{what}: nothing to index" + "".join(f"\n  {n}" for n in notes))


def read_listed(listing: InputListing, settings: InputSettings) -> LoadedInput:
    """The listed files' documents, one row per distinct content, in title order."""
    if not listing.files:
        raise _nothing_read(listing, settings.patterns,
                            f"no input files in {listing.input_dir} matching input.patterns {settings.patterns}")
    rows: list[dict] = []
    seen: dict[str, str] = {}
    for file in listing.files:
        row, file_warnings = read_document(file, settings.max_file_mb)
        listing.warnings.extend(file_warnings)
        if row is None:
            continue
        if row["id"] in seen:
            listing.warnings.append(
                InputWarning(file.title, f"same content as {seen[row['id']]}; indexed once under that title"))
            continue
        seen[row["id"]] = file.title
        rows.append(row)
    if not rows:
        raise _nothing_read(listing, settings.patterns, f"none of the {len(listing.files)} input file(s) in "
                                                        f"{listing.input_dir} could be read as text")
    return LoadedInput(pd.DataFrame(rows, columns=DOCUMENT_COLUMNS), listing.warnings,
                       listing.unmatched_lines(settings.patterns))


def load_documents(root: Path, settings: InputSettings) -> LoadedInput:
    """Documents of `<root>/<input.dir>`, one row per distinct content, in title order."""
    return read_listed(list_input(ProjectPaths(root).input(settings), settings), settings)

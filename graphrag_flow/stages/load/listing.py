"""Listing the input folder: the files input.patterns match, each real file once, and what is
passed over and why (unmatched extensions, links out of input.dir, loops, devices).

Reads stay inside `input.dir`: a link leading out of it (to /etc/passwd, to ../secrets/) is
not followed unless `input.follow_links_outside` says so, because what is read is sent to
the chat API and written to the output tables. Links inside it, to files or folders, are
followed; every folder is read once (a link loop ends there) and a file reached by two
paths is one document, titled by its own path rather than a link's.
"""

from __future__ import annotations

import os
import stat
from collections import defaultdict, deque
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from graphrag_flow.config import InputSettings
from graphrag_flow.errors import InputError

if TYPE_CHECKING:
    from graphrag_flow.storage.store import Store

#: Names of files no pattern matches, shown per extension in the run summary.
UNMATCHED_EXAMPLES = 3
_FOLLOW_SETTING = "input.follow_links_outside"


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
    path: Path  # links resolved: what the reader opens (without following any link); on a store, its key
    via_link: bool  # reached through a link (a file or a folder on its path)
    #: Set for a file on a store (store_input.py), with its listed size and modification time.
    store: "Store | None" = None
    size: int | None = None
    mtime: float | None = None


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

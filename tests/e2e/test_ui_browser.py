"""The operators' UI in a real headless Chromium, on the stack of `make up`, for a run started by Kafka.

1. A support ticket event is produced to ``support.tickets`` (the envelope of
   ``include/events/schemas.py``, a unique ``event_id``).
2. The asset-scheduled ``support_ticket_triage`` DAG runs for it; its ``draft_reply``
   agent task records the run in the AgentRunStore (``include/state/runs.py``).
3. Chromium (Debian's ``chromium`` + ``chromium-driver``, installed by
   ``docker/launcher.py browser`` when missing: a missing browser fails, never skips) logs in
   through Airflow's login page, opens the "Agent runs" view (the plugin's page in Airflow's
   iframe), opens that run, and finds its transcript and token counts; a screenshot is saved
   under ``$AGENTFLOW_ARTIFACTS`` (default ``.stack/artifacts/``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import API, ROOT, STACK, admin_password

pytestmark = pytest.mark.e2e

DAG_ID = "support_ticket_triage"
AGENT_TASK = "draft_reply"
TOPIC = "support.tickets"
RUN_TIMEOUT_S = 420
ARTIFACTS = Path(os.environ.get("AGENTFLOW_ARTIFACTS", STACK / "artifacts"))


@pytest.fixture(scope="module")
def chromium() -> tuple[str, str]:
    """``(chromium, chromedriver)``, installed by the launcher when missing; failing if it cannot."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "docker" / "launcher.py"), "browser"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, f"no browser for the UI test: {proc.stdout}{proc.stderr}"
    browser, driver = proc.stdout.split()[-2:]
    return browser, driver


@pytest.fixture(scope="module")
def browser(chromium: tuple[str, str]) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium[0]
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1100"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=chromium[1]), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _produce_ticket(event_id: str) -> None:
    from confluent_kafka import Producer

    envelope = {
        "event_type": "support.ticket.created",
        "event_id": event_id,
        "timestamp": datetime.now(UTC).isoformat(),
        "source": "e2e-ui",
        "session_id": f"customer-{event_id}",
        "payload": {
            "ticket_id": f"T-{event_id}",
            "customer_id": f"customer-{event_id}",
            "subject": "Refund for a double charge",
            "body": "I was charged twice for my subscription this month, please refund one charge.",
        },
    }
    producer = Producer({"bootstrap.servers": "127.0.0.1:9092", "enable.idempotence": True})
    producer.produce(TOPIC, key=event_id.encode(), value=json.dumps(envelope).encode())
    assert producer.flush(30) == 0, "the ticket event was not delivered to Kafka"


def _run_for(client: httpx.Client, event_id: str, since: datetime) -> str:
    """The ``support_ticket_triage`` run whose triggering asset event carries ``event_id``."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while client.get(f"/api/v2/dags/{DAG_ID}").status_code != 200:
        assert time.monotonic() < deadline, f"{DAG_ID} was never parsed"
        time.sleep(2)
    client.patch(f"/api/v2/dags/{DAG_ID}", json={"is_paused": False}).raise_for_status()
    while time.monotonic() < deadline:
        runs = client.get(
            f"/api/v2/dags/{DAG_ID}/dagRuns",
            params={"run_after_gte": since.isoformat(), "order_by": "-run_after", "limit": 50},
        ).json()["dag_runs"]
        for run in runs:
            events = client.get(
                f"/api/v2/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}/upstreamAssetEvents"
            ).json()
            if event_id in json.dumps(events):
                return str(run["dag_run_id"])
        time.sleep(3)
    raise AssertionError(f"no {DAG_ID} run was started for event {event_id}")


def _recorded(client: httpx.Client, run_id: str) -> dict[str, Any]:
    """The agent run of ``draft_reply`` (in whatever task group) the operator recorded for ``run_id``.

    Read from the plugin's API; the DAG run itself may still wait for a human approval.
    """
    deadline = time.monotonic() + RUN_TIMEOUT_S
    last = None
    while time.monotonic() < deadline:
        last = client.get(f"/agentflow/api/runs/{DAG_ID}/{run_id}")
        if last.status_code == 200:
            for task in last.json()["tasks"]:
                if task["task_id"] == AGENT_TASK or task["task_id"].endswith("." + AGENT_TASK):
                    found = client.get(
                        f"/agentflow/api/runs/{DAG_ID}/{run_id}/{task['task_id']}",
                        params={"map_index": task["map_index"]},
                    )
                    assert found.status_code == 200, found.text
                    return dict(found.json())
        state = client.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}").json()["state"]
        assert state != "failed", f"{DAG_ID} run {run_id} failed before its agent run was recorded"
        time.sleep(3)
    raise AssertionError(
        f"no agent run of {AGENT_TASK} recorded for {DAG_ID} run {run_id}: {last and last.text}"
    )


def test_operator_sees_the_kafka_started_agent_run_in_the_ui(client: httpx.Client, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    since = datetime.now(UTC)
    event_id = f"e2e-ui-{uuid.uuid4().hex[:12]}"
    _produce_ticket(event_id)
    run_id = _run_for(client, event_id, since)
    recorded = _recorded(client, run_id)
    summary = recorded["summary"]
    assert summary["session_id"] == f"customer-{event_id}"
    assert recorded["transcript"], "the recorded transcript is empty"

    wait = WebDriverWait(browser, 60)
    # Log in through Airflow's own login page.
    browser.get(f"{API}/")
    wait.until(ec.presence_of_element_located((By.NAME, "username"))).send_keys("admin")
    browser.find_element(By.NAME, "password").send_keys(admin_password())
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(lambda d: "/auth/login" not in d.current_url and d.get_cookie("_token") is not None)

    # Agent runs: the plugin's page inside Airflow's UI (the nav view's route).
    day = summary["finished_at"][:10]
    browser.get(f"{API}/plugin/agent-runs")
    frame = wait.until(ec.presence_of_element_located((By.TAG_NAME, "iframe")))
    browser.switch_to.frame(frame)
    if day != datetime.now(UTC).date().isoformat():  # the run finished yesterday (UTC midnight)
        browser.get(f"{API}/agentflow/ui/runs?day={day}")
    link = wait.until(ec.element_to_be_clickable((By.LINK_TEXT, run_id)))
    row = link.find_element(By.XPATH, "./ancestor::tr")
    assert str(summary["input_tokens"]) in row.text
    link.click()

    # The run page: its transcript and token counts.
    wait.until(ec.presence_of_element_located((By.ID, "transcript")))
    assert browser.find_element(By.ID, "run-id").text == run_id
    assert browser.find_element(By.ID, "input-tokens").text == str(summary["input_tokens"])
    assert browser.find_element(By.ID, "output-tokens").text == str(summary["output_tokens"])
    messages = browser.find_elements(By.CSS_SELECTOR, "#transcript .message")
    assert len(messages) >= len(recorded["transcript"])
    assert any("user" in m.find_element(By.TAG_NAME, "header").text for m in messages)
    assert browser.execute_script("return window.__pwned === undefined")
    pending = [a for a in recorded["approvals"] if a["pending"]]
    if pending:  # the reply waits for a human: the page links to Airflow's Required Actions
        links = browser.find_elements(By.CSS_SELECTOR, ".pending-approval a[target=_top]")
        assert [link.get_attribute("href") for link in links] == [f"{API}{a['url']}" for a in pending]

    browser.switch_to.default_content()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / f"ui-agent-run-{event_id}.png"
    assert browser.save_screenshot(str(shot)), f"no screenshot written to {shot}"
    assert shot.stat().st_size > 10_000

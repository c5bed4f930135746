"""The agent toolsets, called as the agent calls them: HTTP, memory, inference."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_ai import ModelRetry

from include.state.embedded import EmbeddedState, EmbeddedStateSettings
from operators.toolsets import HttpToolset, InferenceToolset, MemoryToolset

SECRET = "p4ssw0rd-never-shown"


class _Recorder(BaseHTTPRequestHandler):
    seen: list[dict[str, Any]] = []

    def do_GET(self) -> None:
        _Recorder.seen.append({"path": self.path, "authorization": self.headers.get("Authorization")})
        body = json.dumps({"article": "Refunds take 5 business days."}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[int]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _Recorder.seen = []
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()


@pytest.fixture
def policy(tmp_path: Path) -> str:
    shipped = yaml.safe_load((Path(__file__).resolve().parents[4] / "config" / "guardrails.yaml").read_text())
    shipped["tools"].update(domain_allowlist=["127.0.0.1", "localhost"], allowed_schemes=["http"])
    path = tmp_path / "guardrails.yaml"
    path.write_text(yaml.safe_dump(shipped))
    return str(path)


def test_http_sends_the_connections_credentials_to_its_host_only(
    server: int, policy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = {"conn_type": "http", "host": "127.0.0.1", "login": "agent", "password": SECRET}
    monkeypatch.setenv("AIRFLOW_CONN_DOCS_API", json.dumps(conn))
    tool = HttpToolset("docs_api", policy_path=policy)

    result = tool.http_get(f"http://127.0.0.1:{server}/kb/refunds")
    assert result["status"] == 200
    assert "5 business days" in result["text"]
    assert SECRET not in json.dumps(result)
    assert _Recorder.seen[-1]["authorization"].startswith("Basic ")

    # Another allowed host is not the connection's: no credentials go there.
    tool.http_get(f"http://localhost:{server}/kb/refunds")
    assert _Recorder.seen[-1]["authorization"] is None


@pytest.mark.parametrize(
    "url",
    ["http://evil.example.org/x", "ftp://127.0.0.1/x", "http://user:pw@127.0.0.1/x", "http://10.0.0.1/"],
)
def test_http_refuses_what_the_policy_does_not_allow_before_any_request(
    server: int, policy: str, url: str
) -> None:
    with pytest.raises(ModelRetry, match="refused: guardrail 'domain'"):
        HttpToolset(policy_path=policy).http_get(url)
    assert _Recorder.seen == []


def test_memory_tools_remember_and_recall(tmp_path: Path) -> None:
    state = EmbeddedState(EmbeddedStateSettings(path=tmp_path / "state.db"))
    tools = MemoryToolset("customer-7", state)
    assert tools.recall_memory() == []
    assert tools.remember("Prefers e-mail over phone.") == "remembered"
    [turn] = tools.recall_memory()
    assert turn["said"] == ["user: [note remembered by the agent] Prefers e-mail over phone."]
    with pytest.raises(ValueError, match="empty"):
        tools.remember("   ")
    with pytest.raises(ValueError, match="characters"):
        tools.remember("x" * 5000)
    # Another session sees nothing of it.
    assert MemoryToolset("customer-8", state).recall_memory() == []


def test_inference_tools_run_the_real_model() -> None:
    tools = InferenceToolset()
    label = tools.classify_text("My card was charged twice for the same order, please refund one.")
    assert label["label"] == "billing"
    assert 0.0 < label["score"] <= 1.0
    ranked = tools.rank_by_similarity(
        "how long does delivery take",
        ["Refunds are issued to the card.", "Standard shipping takes 3-5 days."],
    )
    assert [hit["index"] for hit in ranked] == [1, 0]
    with pytest.raises(ModelRetry, match="1 to 32"):
        tools.rank_by_similarity("q", [])

"""The ``http`` toolset: GET requests to allow-listed domains, credentials from an Airflow connection."""

from __future__ import annotations

from typing import Any

from pydantic_ai.toolsets import FunctionToolset

#: The most response characters returned to the model.
MAX_BODY_CHARS = 20_000


class HttpToolset(FunctionToolset[Any]):
    """``http_get(url)`` for an agent, limited to the guardrail policy's domain allowlist.

    Credentials never reach the model: they are read from the Airflow connection
    ``http_conn_id`` when the request is made (``login``/``password`` as basic auth, or
    ``extra.headers``, e.g. an ``Authorization`` header) and sent only to that connection's
    host. A URL outside the allowlist (``config/guardrails.yaml`` ``tools.domain_allowlist``)
    is refused before any request; the refusal is returned to the model as a tool error.

    :param http_conn_id: the connection holding the credentials and the host they belong
        to; ``None`` sends no credentials.
    :param policy_path: the guardrail policy file; default ``config/guardrails.yaml``.
    :param timeout_s: the request timeout.
    """

    def __init__(
        self, http_conn_id: str | None = None, *, policy_path: str | None = None, timeout_s: float = 20.0
    ) -> None:
        super().__init__([self.http_get], id="http")
        self.http_conn_id = http_conn_id
        self.policy_path = policy_path
        self.timeout_s = timeout_s
        self._guardrails: Any = None  # loaded on the first call, then kept for the run

    def http_get(self, url: str) -> dict[str, Any]:
        """Fetch a web page or API resource from an allowed domain; return its status and text.

        :param url: the full https URL.
        """
        from urllib.parse import urlsplit

        import httpx
        from pydantic_ai import ModelRetry

        from include.guardrails import GuardrailPolicy, Guardrails, GuardrailViolation

        if self._guardrails is None:
            self._guardrails = Guardrails(GuardrailPolicy.load(self.policy_path))
        try:
            self._guardrails.check_url(url)
        except GuardrailViolation as err:
            raise ModelRetry(f"refused: {err}") from err
        headers, auth = self._credentials(urlsplit(url).hostname or "")
        response = httpx.get(url, headers=headers, auth=auth, timeout=self.timeout_s, follow_redirects=False)
        text = response.text
        return {
            "status": response.status_code,
            "content_type": response.headers.get("content-type", ""),
            "text": text[:MAX_BODY_CHARS],
            "truncated": len(text) > MAX_BODY_CHARS,
        }

    def _credentials(self, host: str) -> tuple[dict[str, str], tuple[str, str] | None]:
        if self.http_conn_id is None:
            return {}, None
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(self.http_conn_id)
        if not conn.host or (conn.host.split("://")[-1].split("/")[0].split(":")[0]).lower() != host.lower():
            # Credentials belong to the connection's host only.
            return {}, None
        headers = {str(k): str(v) for k, v in (conn.extra_dejson.get("headers") or {}).items()}
        auth = (conn.login, conn.password or "") if conn.login else None
        return headers, auth

from __future__ import annotations

import pytest

from include.guardrails import GuardrailPolicy, Guardrails, GuardrailViolation, ToolsPolicy


def tools(**kwargs: object) -> Guardrails:
    fields = {"domain_allowlist": ("docs.example.com", "api.example.com"), **kwargs}
    return Guardrails(GuardrailPolicy(tools=ToolsPolicy.model_validate(fields)))


@pytest.mark.parametrize(
    "url",
    [
        "https://docs.example.com/guide?x=1",
        "https://API.example.com:8443/v1",
        "https://docs.example.com./trailing-dot",
    ],
)
def test_allowed_hosts_pass(url: str) -> None:
    tools().check_url(url)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://evil.com@docs.example.com/", "userinfo"),
        ("https://docs.example.com@evil.com/", "userinfo"),
        ("https://user:pw@docs.example.com/", "userinfo"),
        ("https://docs.example.com.evil.com/", "not_allowed"),
        ("https://evil-docs.example.com/", "not_allowed"),
        ("https://sub.docs.example.com/", "not_allowed"),
        ("https://example.com/", "not_allowed"),
        ("https://d\u043ecs.example.com/", "not_allowed"),  # Cyrillic o: a look-alike host
        ("ftp://docs.example.com/file", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("javascript:alert(1)", "scheme"),
        ("docs.example.com/path", "scheme"),
        ("http://docs.example.com/", "scheme"),
        ("https://127.0.0.1/", "ip_literal"),
        ("https://[::1]/", "ip_literal"),
        ("https://169.254.169.254/latest/meta-data", "ip_literal"),
        ("https://2130706433/", "not_allowed"),
        ("https://docs.example.com\\@evil.com/", "characters"),
        ("https://docs.example.com /", "characters"),
        ("https://docs.example.com:99999/", "malformed"),
        ("https:///path-only", "no_host"),
    ],
)
def test_refused_urls_say_why(url: str, reason: str) -> None:
    with pytest.raises(GuardrailViolation, match="guardrail 'domain' blocked") as info:
        tools().check_url(url)
    assert info.value.hit.rule == "domain"
    assert info.value.hit.detail["reason"] == reason


def test_subdomains_when_the_policy_allows_them() -> None:
    guard = tools(allow_subdomains=True)
    guard.check_url("https://sub.docs.example.com/x")
    guard.check_url("https://docs.example.com/x")
    with pytest.raises(GuardrailViolation):
        guard.check_url("https://docs.example.com.evil.com/")
    with pytest.raises(GuardrailViolation):
        guard.check_url("https://notdocs.example.com/")


def test_http_and_listed_ip_addresses_when_the_policy_allows_them() -> None:
    guard = tools(allowed_schemes=("https", "http"), domain_allowlist=("docs.example.com", "10.0.0.5"))
    guard.check_url("http://docs.example.com/")
    guard.check_url("http://10.0.0.5:8080/health")
    with pytest.raises(GuardrailViolation, match=r"IP address 10\.0\.0\.6 is not on the domain allowlist"):
        guard.check_url("http://10.0.0.6/")


def test_idn_hosts_match_their_punycode_entry() -> None:
    tools(domain_allowlist=("bücher.de",)).check_url("https://xn--bcher-kva.de/")
    tools(domain_allowlist=("xn--bcher-kva.de",)).check_url("https://BÜCHER.de/")


def test_an_empty_allowlist_refuses_everything() -> None:
    with pytest.raises(GuardrailViolation, match=r"not on the domain allowlist \(\(empty\)\)"):
        tools(domain_allowlist=()).check_url("https://docs.example.com/")


def test_non_string_url_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="url must be a str"):
        tools().check_url(b"https://docs.example.com")  # type: ignore[arg-type]

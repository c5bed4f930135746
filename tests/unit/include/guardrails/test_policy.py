from __future__ import annotations

from pathlib import Path

import pytest

from include.errors import ConfigurationError
from include.guardrails import DEFAULT_POLICY_PATH, POLICY_ENV, GuardrailPolicy


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "guardrails.yaml"
    path.write_text(text)
    return path


def test_the_shipped_policy_loads_with_its_values(policy: GuardrailPolicy) -> None:
    assert policy.source == str(DEFAULT_POLICY_PATH)
    assert policy.input.max_chars == 20000
    assert policy.pii.redact == ("email", "phone", "card", "iban")
    assert policy.tools.domain_allowlist == ("docs.example.com", "api.example.com")
    assert policy.tools.sql.allowed_statements == ("select",)


def test_rate_limit_per_connection_then_default(policy: GuardrailPolicy) -> None:
    assert policy.rate_limit_for("agentflow_llm") == (10.0, 50)
    assert policy.rate_limit_for("some_other_llm") == (1.0, 10)


def test_no_rate_limit_without_an_entry_or_default(tmp_path: Path) -> None:
    policy = GuardrailPolicy.load(write(tmp_path, "rate_limits:\n  a: {requests_per_minute: 30, burst: 2}\n"))
    assert policy.rate_limit_for("a") == (0.5, 2)
    assert policy.rate_limit_for("b") is None
    with pytest.raises(TypeError, match="conn_id must be a str"):
        policy.rate_limit_for(3)  # type: ignore[arg-type]


def test_env_var_points_at_another_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "input: {max_chars: 5}\n")
    monkeypatch.setenv(POLICY_ENV, str(path))
    policy = GuardrailPolicy.load()
    assert policy.input.max_chars == 5
    assert policy.source == str(path)


def test_an_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    policy = GuardrailPolicy.load(write(tmp_path, "# nothing\n"))
    assert policy.tools.domain_allowlist == ()
    assert policy.input.profanity.action == "flag"


def test_unknown_key_names_the_key_and_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "tools:\n  domain_alowlist: [a.com]\n")
    with pytest.raises(ConfigurationError, match=r"tools\.domain_alowlist: Extra inputs") as info:
        GuardrailPolicy.load(path)
    assert str(path) in str(info.value)


def test_wrong_type_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"input\.max_chars"):
        GuardrailPolicy.load(write(tmp_path, "input: {max_chars: lots}\n"))
    with pytest.raises(ConfigurationError, match=r"input\.profanity\.action"):
        GuardrailPolicy.load(write(tmp_path, "input: {profanity: {action: shout}}\n"))
    with pytest.raises(ConfigurationError, match=r"rate_limits\.x\.burst"):
        GuardrailPolicy.load(write(tmp_path, "rate_limits: {x: {requests_per_minute: 1, burst: 0}}\n"))


def test_name_redaction_is_refused_without_an_ner_model(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no offline named-entity model is installed"):
        GuardrailPolicy.load(write(tmp_path, "pii: {redact: [email, name]}\n"))


def test_unknown_phone_region_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"pii\.phone_regions.*'XX'"):
        GuardrailPolicy.load(write(tmp_path, "pii: {phone_regions: [US, XX]}\n"))


@pytest.mark.parametrize(
    "entry", ["https://docs.example.com", "docs.example.com/x", "*.example.com", "a b.com"]
)
def test_allowlist_entries_must_be_bare_hosts(tmp_path: Path, entry: str) -> None:
    with pytest.raises(ConfigurationError, match="not a bare host name"):
        GuardrailPolicy.load(write(tmp_path, f"tools: {{domain_allowlist: ['{entry}']}}\n"))


def test_allowlist_entries_are_normalised(tmp_path: Path) -> None:
    policy = GuardrailPolicy.load(
        write(tmp_path, "tools: {domain_allowlist: [Docs.Example.COM., bücher.de, '::1']}\n")
    )
    assert policy.tools.domain_allowlist == ("docs.example.com", "xn--bcher-kva.de", "::1")


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read the guardrail policy"):
        GuardrailPolicy.load(tmp_path / "absent.yaml")
    with pytest.raises(ConfigurationError, match="cannot read the guardrail policy"):
        GuardrailPolicy.load(write(tmp_path, "input: [unclosed\n"))
    with pytest.raises(ConfigurationError, match="must be a mapping"):
        GuardrailPolicy.load(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigurationError, match="unknown key 'source'"):
        GuardrailPolicy.load(write(tmp_path, "source: x\n"))
    with pytest.raises(TypeError, match="path must be a str or Path"):
        GuardrailPolicy.load(3)  # type: ignore[arg-type]

"""The guardrail policy: ``config/guardrails.yaml`` as a validated pydantic model.

``AGENTFLOW_GUARDRAILS`` points at another file. Every section and key is optional (the
defaults are below and in the shipped file); an unknown key or a wrong type is refused
with the key's dotted path and the file's name.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from include.errors import ConfigurationError

DEFAULT_POLICY_PATH = Path(__file__).resolve().parents[2] / "config" / "guardrails.yaml"
POLICY_ENV = "AGENTFLOW_GUARDRAILS"

PiiKind = Literal["email", "phone", "card", "iban"]
SqlStatement = Literal["select", "explain", "describe", "show"]

NO_NER_MESSAGE = (
    "'name' cannot be redacted: no offline named-entity model is installed (spaCy and Presidio "
    "models are not on PyPI, and nothing is downloaded at run time); remove 'name' from pii.redact"
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProfanityPolicy(_Strict):
    """What to do with profane text, judged by ``alt-profanity-check``'s trained classifier.

    :param action: ``flag`` (record a hit, let it through), ``block`` (raise
        :class:`GuardrailViolation`) or ``off`` (do not run the classifier).
    :param threshold: the classifier probability (per sentence) at or above which a text is profane.
    """

    action: Literal["flag", "block", "off"] = "flag"
    threshold: float = Field(default=0.8, gt=0.0, le=1.0)


class InputPolicy(_Strict):
    """Checks on text before it reaches a model.

    :param max_chars: the longest input, in characters; longer inputs are refused.
    :param profanity: the profanity rule for inputs.
    """

    max_chars: int = Field(default=20000, ge=1)
    profanity: ProfanityPolicy = ProfanityPolicy()


class PiiPolicy(_Strict):
    """Which personal data is replaced by ``[REDACTED:<KIND>]`` placeholders.

    :param redact: the kinds to redact: ``email``, ``phone``, ``card`` (13-19 digits passing
        Luhn), ``iban`` (valid checksum and country format). ``name`` is refused: no
        offline NER model is installed.
    :param phone_regions: ISO 3166 regions whose national phone formats are recognised;
        numbers written with a ``+`` country code are recognised whatever the region.
    """

    redact: tuple[PiiKind, ...] = ("email", "phone", "card", "iban")
    phone_regions: tuple[str, ...] = ("US",)

    @field_validator("redact", mode="before")
    @classmethod
    def _no_names(cls, value: Any) -> Any:
        if isinstance(value, list | tuple) and "name" in value:
            raise ValueError(NO_NER_MESSAGE)
        return value

    @field_validator("phone_regions")
    @classmethod
    def _known_regions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        import phonenumbers

        regions = tuple(region.upper() for region in value)
        unknown = [region for region in regions if region not in phonenumbers.SUPPORTED_REGIONS]
        if unknown:
            raise ValueError(f"unknown phone region(s) {unknown}; use ISO 3166 codes such as US, GB, DE")
        return regions


class OutputPolicy(_Strict):
    """Checks on what a model returns.

    :param redact_pii: redact the ``pii.redact`` kinds in outputs too.
    :param profanity: the profanity rule for outputs.
    """

    redact_pii: bool = True
    profanity: ProfanityPolicy = ProfanityPolicy()


class SqlPolicy(_Strict):
    """What the read-only SQL tool may run: one statement of an allowed kind, nothing that writes.

    :param allowed_statements: ``select`` (also ``WITH ... SELECT`` and UNION/INTERSECT/EXCEPT),
        ``explain`` (of an allowed statement), ``describe``, ``show``.
    :param dialect: the sqlglot dialect to parse with (``postgres``, ``mysql``, ...; ``null``
        for dialect-agnostic parsing).
    """

    allowed_statements: tuple[SqlStatement, ...] = Field(default=("select",), min_length=1)
    dialect: str | None = "postgres"


class ToolsPolicy(_Strict):
    """Limits on what agent tools may reach.

    :param allowed: tool names an agent may call (``null``: any tool it was given).
    :param domain_allowlist: hosts the HTTP tool may reach (IP addresses only if listed).
    :param allow_subdomains: also allow any subdomain of a listed host.
    :param allowed_schemes: URL schemes the HTTP tool may use.
    :param sql: the read-only SQL rule.
    """

    allowed: tuple[str, ...] | None = None
    domain_allowlist: tuple[str, ...] = ()
    allow_subdomains: bool = False
    allowed_schemes: tuple[Literal["https", "http"], ...] = ("https",)
    sql: SqlPolicy = SqlPolicy()

    @field_validator("domain_allowlist")
    @classmethod
    def _normalise_hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from include.guardrails._urls import normalise_host

        hosts = []
        for entry in value:
            host = normalise_host(entry)
            if host is None:
                raise ValueError(
                    f"domain_allowlist entry {entry!r} is not a bare host name or IP address "
                    "(no scheme, port, path or wildcard)"
                )
            hosts.append(host)
        return tuple(hosts)


class RateLimit(_Strict):
    """A token bucket for one model connection.

    :param requests_per_minute: the sustained rate, shared by every worker.
    :param burst: the bucket's capacity: how many requests may go at once after a quiet spell.
    """

    requests_per_minute: float = Field(gt=0)
    burst: int = Field(ge=1)


class GuardrailPolicy(_Strict):
    """The whole guardrail policy (``config/guardrails.yaml``).

    :param input: checks on model inputs.
    :param pii: what personal data is redacted.
    :param output: checks on model outputs.
    :param tools: limits on tools (tool names, HTTP domains, SQL).
    :param rate_limits: model connection id -> rate limit; ``default`` applies to connections
        not listed. No entry and no ``default``: not rate limited.
    :param source: the file it was read from, for error messages (not a YAML key).
    """

    input: InputPolicy = InputPolicy()
    pii: PiiPolicy = PiiPolicy()
    output: OutputPolicy = OutputPolicy()
    tools: ToolsPolicy = ToolsPolicy()
    rate_limits: dict[str, RateLimit] = Field(default_factory=dict)
    source: str = Field(default="<memory>", exclude=True)

    @classmethod
    def load(cls, path: str | Path | None = None) -> GuardrailPolicy:
        """Read and validate a policy file.

        :param path: the YAML file; ``None``: ``$AGENTFLOW_GUARDRAILS``, else the repository's
            ``config/guardrails.yaml``.
        :raises ConfigurationError: the file is missing or not YAML, or a key is unknown or
            has the wrong type (the message names the key and the file).
        """
        if path is not None and not isinstance(path, str | Path):
            raise TypeError(f"path must be a str or Path, not {type(path).__name__}")
        resolved = Path(path) if path else Path(os.environ.get(POLICY_ENV) or DEFAULT_POLICY_PATH)
        try:
            data = yaml.safe_load(resolved.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError, UnicodeDecodeError) as err:
            raise ConfigurationError(f"cannot read the guardrail policy {resolved}: {err}") from err
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigurationError(
                f"guardrail policy {resolved} must be a mapping at the top level, not {type(data).__name__}"
            )
        if "source" in data:
            raise ConfigurationError(f"guardrail policy {resolved}: unknown key 'source'")
        try:
            return cls.model_validate({**data, "source": str(resolved)})
        except ValidationError as err:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or '<top>'}: {error['msg']}"
                for error in err.errors()
            )
            raise ConfigurationError(f"guardrail policy {resolved} is invalid: {problems}") from err

    def rate_limit_for(self, conn_id: str) -> tuple[float, int] | None:
        """The token bucket for a model connection: ``(rate_per_s, capacity)``, or ``None``.

        :param conn_id: the Airflow connection id of the model (``agentflow_llm``).
        :raises TypeError: ``conn_id`` is not a string.
        """
        if not isinstance(conn_id, str):
            raise TypeError(f"conn_id must be a str, not {type(conn_id).__name__}")
        limit = self.rate_limits.get(conn_id) or self.rate_limits.get("default")
        if limit is None:
            return None
        return limit.requests_per_minute / 60.0, limit.burst

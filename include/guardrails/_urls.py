"""The HTTP tool's domain allowlist: parse the URL with the standard library, match the host.

Hosts are compared in their IDNA (punycode) form, so a look-alike Unicode host never equals
an ASCII allowlist entry. Refused outright: schemes not in the policy, any userinfo
(``https://evil.com@docs.example.com``), whitespace, control characters and backslashes
(parsers disagree on them), invalid ports, and IP addresses that are not listed themselves.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import idna

from include.guardrails._errors import GuardrailHit, GuardrailViolation

if TYPE_CHECKING:
    from include.guardrails._policy import ToolsPolicy


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def normalise_host(host: str) -> str | None:
    """A host in the form the allowlist compares: lower-case IDNA, no trailing dot.

    IP addresses come back in their canonical text form. ``None`` when ``host`` is not a
    bare host name or IP address (a scheme, port, path, wildcard or space in it).
    """
    if not isinstance(host, str):
        raise TypeError(f"host must be a str, not {type(host).__name__}")
    candidate = host.strip().rstrip(".")
    address = _ip(candidate)
    if address is not None:
        return address.compressed
    if not candidate or any(char in candidate for char in "/:@*?#[]\\ \t\r\n"):
        return None
    try:
        return idna.encode(candidate, uts46=True).decode("ascii").lower()
    except idna.IDNAError:
        return None


def _refuse(reason: str, code: str, **detail: object) -> GuardrailViolation:
    hit = GuardrailHit(rule="domain", action="blocked", detail={"reason": code, **detail})
    return GuardrailViolation(hit, reason)


def check_url(url: str, policy: ToolsPolicy) -> None:
    """Refuse ``url`` unless its scheme is allowed and its host is on the allowlist.

    :param url: the URL the HTTP tool was asked to fetch.
    :param policy: the ``tools`` section of the policy.
    :raises TypeError: ``url`` is not a string.
    :raises GuardrailViolation: rule ``domain``; ``hit.detail["reason"]`` says why (``scheme``,
        ``userinfo``, ``characters``, ``malformed``, ``no_host``, ``ip_literal``, ``not_allowed``).
    """
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, not {type(url).__name__}")
    if any(char.isspace() or ord(char) < 32 or ord(char) == 127 or char == "\\" for char in url):
        raise _refuse("the URL contains whitespace, control characters or backslashes", "characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as err:
        raise _refuse(f"the URL cannot be parsed: {err}", "malformed") from err
    scheme = parts.scheme.lower()
    if scheme not in policy.allowed_schemes:
        raise _refuse(
            f"scheme {scheme or '(none)'!r} is not allowed; allowed: {', '.join(policy.allowed_schemes)}",
            "scheme",
            scheme=scheme,
        )
    if "@" in parts.netloc:
        raise _refuse("a URL with user information ('user@host') is not allowed", "userinfo")
    raw_host = parts.hostname
    if not raw_host:
        raise _refuse("the URL has no host", "no_host")
    host = normalise_host(raw_host)
    if host is None:
        raise _refuse(f"{raw_host!r} is not a valid host name", "malformed")
    detail: dict[str, object] = {"host": host, "scheme": scheme, "port": port}
    if _ip(host) is not None:
        if host in policy.domain_allowlist:
            return
        raise _refuse(f"IP address {host} is not on the domain allowlist", "ip_literal", **detail)
    for allowed in policy.domain_allowlist:
        if host == allowed or (policy.allow_subdomains and host.endswith("." + allowed)):
            return
    listed = ", ".join(policy.domain_allowlist) or "(empty)"
    subdomains = " or their subdomains" if policy.allow_subdomains else ""
    raise _refuse(
        f"host {host!r} is not on the domain allowlist ({listed}{subdomains})", "not_allowed", **detail
    )

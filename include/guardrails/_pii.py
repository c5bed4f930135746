"""PII redaction: find emails, phone numbers, card numbers and IBANs, replace them by placeholders.

Each kind is confirmed by a library, not by a pattern alone:

- email: candidates around each ``@``, confirmed by ``email-validator`` (syntax only, no DNS);
- phone: ``phonenumbers.PhoneNumberMatcher`` (Google's libphonenumber metadata), valid numbers only;
- card: runs of 13-19 digits (single spaces or dashes between groups of 3 or more) passing
  ``stdnum.luhn``;
- iban: candidates of country code + check digits + up to 30 characters, confirmed by
  ``stdnum.iban`` (checksum and the country's BBAN format).

Where two findings overlap, the one that starts first wins, then the longer one, then the
kind listed first above.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import email_validator
import phonenumbers
from stdnum import iban as stdnum_iban
from stdnum import luhn

from include.guardrails._errors import GuardrailHit

PLACEHOLDERS = {
    "email": "[REDACTED:EMAIL]",
    "phone": "[REDACTED:PHONE]",
    "card": "[REDACTED:CARD]",
    "iban": "[REDACTED:IBAN]",
    "name": "[REDACTED:NAME]",
}
_PRIORITY = {"email": 0, "iban": 1, "card": 2, "phone": 3}

_LOCAL_CHARS = frozenset("!#$%&'*+-/=?^_`{|}~.")
_DOMAIN = re.compile(r"[\w-]+(?:\.[\w-]+)+")
_DIGIT_GROUPS = re.compile(r"(?<!\w)\d+(?:[ -]\d+)*(?!\w)")
_DIGITS = re.compile(r"\d+")
_IBAN_CANDIDATE = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]){10,30}")
_MAX_LOCAL = 64
_MIN_CARD_GROUP = 3
_MAX_DOMAIN = 253


@dataclass(frozen=True, order=True)
class Finding:
    """One piece of PII in a text: ``text[start:end]`` is of ``kind``."""

    start: int
    end: int
    kind: str


def _emails(text: str) -> Iterator[Finding]:
    at = text.find("@")
    while at != -1:
        start = at
        while (
            start > 0
            and at - start < _MAX_LOCAL
            and (text[start - 1].isalnum() or text[start - 1] in _LOCAL_CHARS)
        ):
            start -= 1
        while start < at and text[start] == ".":
            start += 1
        domain = _DOMAIN.match(text, at + 1, min(len(text), at + 1 + _MAX_DOMAIN))
        if start < at and domain:
            end = domain.end()
            try:
                email_validator.validate_email(
                    text[start:end], check_deliverability=False, globally_deliverable=False
                )
            except email_validator.EmailNotValidError:
                pass
            else:
                yield Finding(start, end, "email")
        at = text.find("@", at + 1)


def _cards(text: str) -> Iterator[Finding]:
    # groups of 1-2 digits ("1 2 3 4 ...") are never part of a printed card number
    for run in _DIGIT_GROUPS.finditer(text):
        groups = [(m.start(), m.end()) for m in _DIGITS.finditer(text, run.start(), run.end())]
        i = 0
        while i < len(groups):
            best = None
            digits = ""
            for j in range(i, len(groups)):
                if groups[j][1] - groups[j][0] < _MIN_CARD_GROUP:
                    break
                digits += text[groups[j][0] : groups[j][1]]
                if len(digits) > 19:
                    break
                if len(digits) >= 13 and luhn.is_valid(digits):
                    best = j
            if best is None:
                i += 1
                continue
            yield Finding(groups[i][0], groups[best][1], "card")
            i = best + 1


def _ibans(text: str) -> Iterator[Finding]:
    for match in _IBAN_CANDIDATE.finditer(text):
        candidate = match.group()
        # the longest prefix that ends a group and is a valid IBAN (words may follow it)
        for length in range(len(candidate), 14, -1):
            following = text[match.start() + length : match.start() + length + 1]
            if candidate[length - 1] == " " or following.isalnum():
                continue
            if stdnum_iban.is_valid(candidate[:length].upper()):
                yield Finding(match.start(), match.start() + length, "iban")
                break


# ISO 8601 timestamps: their digit groups (``06.745461`` of ``03:15:06.745461``) can read as a
# valid national number in some regions, so nothing inside one counts as a phone number.
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?")


def _phones(text: str, regions: Sequence[str]) -> Iterator[Finding]:
    stamps = [(m.start(), m.end()) for m in _TIMESTAMP.finditer(text)]
    for region in regions:
        for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID):
            if any(start < match.end and match.start < end for start, end in stamps):
                continue
            yield Finding(match.start, match.end, "phone")


def find_pii(text: str, kinds: Iterable[str], phone_regions: Sequence[str]) -> list[Finding]:
    """The non-overlapping PII findings in ``text``, in order.

    :param text: the text to scan.
    :param kinds: which kinds to look for (``email``, ``phone``, ``card``, ``iban``).
    :param phone_regions: regions whose national phone formats count.
    """
    wanted = set(kinds)
    found: list[Finding] = []
    if "email" in wanted:
        found.extend(_emails(text))
    if "iban" in wanted:
        found.extend(_ibans(text))
    if "card" in wanted:
        found.extend(_cards(text))
    if "phone" in wanted:
        found.extend(_phones(text, phone_regions))
    found.sort(key=lambda f: (f.start, -(f.end - f.start), _PRIORITY[f.kind]))
    kept: list[Finding] = []
    for finding in found:
        if not kept or finding.start >= kept[-1].end:
            kept.append(finding)
    return kept


def redact(text: str, kinds: Iterable[str], phone_regions: Sequence[str]) -> tuple[str, list[GuardrailHit]]:
    """Replace each PII finding by its placeholder; one hit per kind, with the count.

    :param text: the text to redact.
    :param kinds: which kinds to redact.
    :param phone_regions: regions whose national phone formats count.
    :return: the redacted text and the hits (``pii.<kind>``, action ``redacted``).
    """
    findings = find_pii(text, kinds, phone_regions)
    pieces: list[str] = []
    cursor = 0
    for finding in findings:
        pieces.append(text[cursor : finding.start])
        pieces.append(PLACEHOLDERS[finding.kind])
        cursor = finding.end
    pieces.append(text[cursor:])
    counts = Counter(finding.kind for finding in findings)
    hits = [
        GuardrailHit(
            rule=f"pii.{kind}",
            action="redacted",
            count=counts[kind],
            detail={"placeholder": PLACEHOLDERS[kind]},
        )
        for kind in sorted(counts, key=_PRIORITY.__getitem__)
    ]
    return "".join(pieces), hits

"""Checks on values before they are written: JSON only, within the configured size."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

from include.errors import NotJSONError, ValueTooLargeError


def dump_json(value: Any, *, max_bytes: int, what: str) -> str:
    """Return ``value`` as compact JSON text, refusing what is not JSON or too large.

    :param value: the value to encode (dicts, lists, strings, numbers, booleans, ``None``).
    :param max_bytes: the largest UTF-8 size allowed.
    :param what: what the value is, for the error message.
    :raises NotJSONError: if ``value`` is not JSON-serialisable (or holds NaN/infinity).
    :raises ValueTooLargeError: if the JSON text is larger than ``max_bytes``.
    """
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise NotJSONError(f"{what} is not JSON-serialisable: {exc}") from exc
    check_size(text, max_bytes=max_bytes, what=what)
    return text


def check_size(text: str | bytes, *, max_bytes: int, what: str) -> int:
    """Return the UTF-8 size of ``text``, refusing it when larger than ``max_bytes``.

    :raises ValueTooLargeError: if ``text`` is larger than ``max_bytes``.
    """
    size = len(text) if isinstance(text, bytes) else len(text.encode("utf-8"))
    return check_byte_count(size, max_bytes=max_bytes, what=what)


def check_byte_count(size: int, *, max_bytes: int, what: str) -> int:
    """Return ``size`` if it is at most ``max_bytes``.

    :raises ValueTooLargeError: if ``size`` is larger than ``max_bytes``.
    """
    if size > max_bytes:
        raise ValueTooLargeError(
            f"{what} is {size} bytes, more than the configured limit of {max_bytes} bytes "
            "(max_value_bytes); nothing was written"
        )
    return size


def check_key(value: Any, *, what: str, max_len: int = 512) -> str:
    """Return ``value`` if it is a non-empty string of at most ``max_len`` characters.

    :raises TypeError: if ``value`` is not a string.
    :raises ValueError: if it is empty or too long.
    """
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}")
    if not value or len(value) > max_len:
        raise ValueError(f"{what} must be 1 to {max_len} characters, got {len(value)}")
    return value


def check_vector(vector: Sequence[float], dimension: int, what: str = "the vector") -> list[float]:
    """Return ``vector`` as floats if it has ``dimension`` finite values, not all zero.

    :raises TypeError: if it is not a sequence.
    :raises ValueError: otherwise, saying what is wrong.
    """
    if isinstance(vector, str | bytes) or not isinstance(vector, Sequence | Iterable):
        raise TypeError(f"{what} must be a sequence of floats, got {type(vector).__name__}")
    values = [float(x) for x in vector]
    if len(values) != dimension:
        raise ValueError(f"{what} has {len(values)} dimensions, the store's is {dimension}")
    if not all(math.isfinite(x) for x in values):
        raise ValueError(f"{what} holds NaN or infinity")
    if not any(values):
        raise ValueError(f"{what} is all zeros, which has no cosine similarity")
    return values

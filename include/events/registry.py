"""The event registry: which payload model each topic's events carry, and message size limits.

Configuration lives in ``config/kafka/payloads.yaml``; :func:`validate_message` turns the raw
bytes of a Kafka message into a validated :class:`~include.events.schemas.EventEnvelope`, or
raises :class:`~include.errors.InvalidEventError` with a machine-readable ``reason``.
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from include.errors import ConfigurationError, InvalidEventError
from include.events.schemas import EventEnvelope

DEFAULT_REGISTRY_PATH = Path(__file__).resolve().parents[2] / "config" / "kafka" / "payloads.yaml"
"""The registry shipped with the project; ``AGENTFLOW_EVENT_REGISTRY`` points elsewhere."""

DEFAULT_MAX_MESSAGE_BYTES = 262_144
_DETAIL_MAX_CHARS = 500


@dataclass(frozen=True)
class TopicSpec:
    """What one topic carries.

    :param topic: the topic name (or fnmatch pattern) as registered.
    :param payloads: ``event_type`` -> payload model.
    :param max_message_bytes: larger messages are refused as ``too_large``.
    """

    topic: str
    payloads: dict[str, type[BaseModel]]
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES


@dataclass(frozen=True)
class EventRegistry:
    """Topic -> :class:`TopicSpec`; exact names win over patterns.

    :param topics: the registered topics.
    :param source: where the registry was read from, for error messages.
    """

    topics: dict[str, TopicSpec]
    source: str = "<memory>"
    _patterns: tuple[str, ...] = field(init=False, repr=False, default=())

    def __post_init__(self) -> None:
        patterns = tuple(name for name in self.topics if any(ch in name for ch in "*?["))
        object.__setattr__(self, "_patterns", patterns)

    def spec(self, topic: str) -> TopicSpec:
        """Return the spec of ``topic``.

        :raises ConfigurationError: the topic is not registered.
        """
        if topic in self.topics:
            return self.topics[topic]
        for pattern in self._patterns:
            if fnmatch.fnmatchcase(topic, pattern):
                return self.topics[pattern]
        raise ConfigurationError(
            f"topic {topic!r} is not in the event registry {self.source}; add it under `topics:`"
        )

    @classmethod
    def from_mapping(cls, data: dict[str, Any], *, source: str = "<memory>") -> EventRegistry:
        """Build a registry from the parsed YAML document.

        :raises ConfigurationError: the document is malformed or names a model that cannot be imported.
        """
        if not isinstance(data, dict) or not isinstance(data.get("topics"), dict):
            raise ConfigurationError(f"event registry {source} needs a `topics:` mapping")
        defaults = data.get("defaults") or {}
        default_max = int(defaults.get("max_message_bytes", DEFAULT_MAX_MESSAGE_BYTES))
        topics: dict[str, TopicSpec] = {}
        for name, entry in data["topics"].items():
            if not isinstance(entry, dict) or not isinstance(entry.get("payloads"), dict):
                raise ConfigurationError(f"topic {name!r} in {source} needs a `payloads:` mapping")
            payloads = {
                str(event_type): _import_model(str(path), source=source)
                for event_type, path in entry["payloads"].items()
            }
            max_bytes = int(entry.get("max_message_bytes", default_max))
            if max_bytes <= 0:
                raise ConfigurationError(f"topic {name!r} in {source}: max_message_bytes must be > 0")
            topics[str(name)] = TopicSpec(topic=str(name), payloads=payloads, max_message_bytes=max_bytes)
        return cls(topics=topics, source=source)


def _import_model(dotted: str, *, source: str) -> type[BaseModel]:
    module_name, _, attr = dotted.rpartition(".")
    try:
        model = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as err:
        raise ConfigurationError(f"event registry {source}: cannot import payload model {dotted!r}") from err
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise ConfigurationError(f"event registry {source}: {dotted!r} is not a pydantic model")
    return model


@lru_cache(maxsize=16)
def _load_cached(path: str, mtime_ns: int) -> EventRegistry:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ConfigurationError(f"cannot read the event registry {path}: {err}") from err
    return EventRegistry.from_mapping(data, source=path)


def load_registry(path: str | os.PathLike[str] | None = None) -> EventRegistry:
    """Load (and cache, until the file changes) the event registry.

    :param path: the YAML file; ``AGENTFLOW_EVENT_REGISTRY`` or the shipped file if omitted.
    :raises ConfigurationError: the file is missing or malformed.
    """
    resolved = Path(path or os.environ.get("AGENTFLOW_EVENT_REGISTRY") or DEFAULT_REGISTRY_PATH)
    try:
        mtime = resolved.stat().st_mtime_ns
    except OSError as err:
        raise ConfigurationError(f"event registry {resolved} does not exist") from err
    return _load_cached(str(resolved), mtime)


def _short(text: str) -> str:
    return text if len(text) <= _DETAIL_MAX_CHARS else text[: _DETAIL_MAX_CHARS - 3] + "..."


def _describe(err: ValidationError, prefix: str = "") -> str:
    parts = []
    for item in err.errors()[:5]:
        loc = ".".join(str(p) for p in (prefix, *item["loc"]) if p != "")
        parts.append(f"{loc or '<root>'}: {item['msg']}")
    more = len(err.errors()) - 5
    if more > 0:
        parts.append(f"and {more} more")
    return _short("; ".join(parts))


def validate_message(
    topic: str, raw: bytes | str | None, *, registry: EventRegistry | None = None
) -> EventEnvelope:
    """Validate one Kafka message value against the envelope and the topic's payload model.

    The returned envelope's ``payload`` is the payload model's JSON dump (defaults filled in).

    :param topic: the topic the message came from.
    :param raw: the message value.
    :param registry: the registry to use; :func:`load_registry` if omitted.
    :raises InvalidEventError: with ``reason`` ``empty``, ``too_large``, ``not_json``,
        ``missing_event_id`` or ``schema``, and a ``detail`` that names what was wrong.
    :raises ConfigurationError: the topic is not registered.
    """
    spec = (registry or load_registry()).spec(topic)
    if raw is None or len(raw) == 0:
        raise InvalidEventError("empty", "the message has no value", topic=topic)
    data = raw.encode() if isinstance(raw, str) else raw
    if len(data) > spec.max_message_bytes:
        raise InvalidEventError(
            "too_large", f"{len(data)} bytes, the limit for {topic} is {spec.max_message_bytes}", topic=topic
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidEventError("not_json", f"not UTF-8 text (binary?): {err}", topic=topic) from err
    if not text.strip():
        raise InvalidEventError("empty", "the message is only whitespace", topic=topic)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as err:
        raise InvalidEventError("not_json", f"not JSON: {err}", topic=topic) from err
    if not isinstance(document, dict):
        raise InvalidEventError(
            "schema", f"the event must be a JSON object, got {type(document).__name__}", topic=topic
        )
    event_id = document.get("event_id")
    if not isinstance(event_id, str) or not event_id.strip():
        raise InvalidEventError(
            "missing_event_id", f"event_id is missing or not a non-empty string: {event_id!r}", topic=topic
        )
    try:
        envelope = EventEnvelope.model_validate(document)
    except ValidationError as err:
        raise InvalidEventError("schema", _describe(err), topic=topic) from err
    model = spec.payloads.get(envelope.event_type)
    if model is None:
        raise InvalidEventError(
            "schema",
            f"event_type {envelope.event_type!r} is not registered for {topic} "
            f"(expected one of {sorted(spec.payloads)})",
            topic=topic,
        )
    try:
        payload = model.model_validate(envelope.payload)
    except ValidationError as err:
        raise InvalidEventError("schema", _describe(err, prefix="payload"), topic=topic) from err
    return envelope.model_copy(update={"payload": payload.model_dump(mode="json")})


def parse_payload(envelope: EventEnvelope, topic: str, *, registry: EventRegistry | None = None) -> BaseModel:
    """Return ``envelope.payload`` as the model registered for its topic and event type.

    :param envelope: a validated envelope.
    :param topic: the topic it came from.
    :param registry: the registry to use; :func:`load_registry` if omitted.
    :raises InvalidEventError: the payload does not match (``schema``).
    """
    spec = (registry or load_registry()).spec(topic)
    model = spec.payloads.get(envelope.event_type)
    if model is None:
        raise InvalidEventError(
            "schema", f"event_type {envelope.event_type!r} is not registered for {topic}", topic=topic
        )
    try:
        return model.model_validate(envelope.payload)
    except ValidationError as err:
        raise InvalidEventError("schema", _describe(err, prefix="payload"), topic=topic) from err

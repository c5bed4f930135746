"""Conversation memory: pydantic-ai message history per session, kept in Cassandra.

A *turn* is the list of messages one agent run added (``result.new_messages()``), stored as
one row in pydantic-ai's own JSON (``ModelMessagesTypeAdapter``), so loading gives back
exactly the messages that were saved, and a turn's tool calls and tool returns stay
together. Use it as common.ai's ``message_history``::

    memory = CassandraHook().memory()
    history = memory.load(session_id, last_turns=10)        # before the agent run
    memory.append(session_id, new_messages, run_id=run_id, turn_key=ti_key)  # after it

Layout: partition ``(session_id, bucket)`` where ``bucket`` is the write time divided by
``memory_bucket_s`` (default 7 days), so one partition holds one session's turns of one
span; rows are clustered newest first and live ``memory_ttl_s`` (default 30 days). Reads
walk the buckets from the newest back to the TTL horizon and stop as soon as they have
``last_turns`` turns or the ``token_budget`` is spent. Changing ``memory_bucket_s`` hides
the turns written with the old span until they expire.

A turn appended with a ``turn_key`` (the agent operator passes its task instance) replaces
the turns of earlier appends with that key, in the current and the previous bucket: a task
killed after remembering its turn and retried leaves one turn, not two. The new turn is
written before the old ones are deleted, so a crash in between leaves a duplicate, never a
gap.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from include.errors import NotJSONError
from include.state._values import check_key, check_size
from include.state.session import CassandraClient

if TYPE_CHECKING:
    from uuid import UUID

    from pydantic_ai.messages import ModelMessage

#: The most turns one read returns.
MAX_TURNS = 1000
#: Characters per token of the estimate used when a turn's token count is not given.
CHARS_PER_TOKEN = 4


class MemoryTurn(BaseModel):
    """One stored turn.

    :param session_id: the conversation it belongs to.
    :param turn_id: its time-based id (a ``timeuuid``).
    :param at: when it was written (UTC).
    :param run_id: the DAG run that wrote it, if given.
    :param tokens: its size in tokens (given, or estimated as characters / 4).
    :param messages: the pydantic-ai messages.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    session_id: str
    turn_id: Any
    at: datetime
    run_id: str | None
    tokens: int
    messages: list[Any]


def _adapter() -> Any:
    from pydantic_ai.messages import ModelMessagesTypeAdapter

    return ModelMessagesTypeAdapter


def encode_messages(messages: Sequence[ModelMessage] | str | bytes, *, max_bytes: int) -> str:
    """Return the messages as pydantic-ai JSON text, checked before anything is written.

    :param messages: pydantic-ai messages, or their JSON (``ModelMessagesTypeAdapter``).
    :raises NotJSONError: if they do not serialise (or the JSON is not a message list).
    :raises ValueTooLargeError: if the JSON is larger than ``max_bytes``.
    :raises ValueError: if there are no messages.
    """
    from pydantic import ValidationError
    from pydantic_core import PydanticSerializationError

    adapter = _adapter()
    if isinstance(messages, str | bytes):
        try:
            parsed = adapter.validate_json(messages)
        except ValidationError as exc:
            raise NotJSONError(f"the messages are not pydantic-ai message JSON: {exc}") from exc
    else:
        parsed = list(messages)
    if not parsed:
        raise ValueError("a turn needs at least one message")
    try:
        text: str = adapter.dump_json(parsed).decode("utf-8")
    except PydanticSerializationError as exc:
        raise NotJSONError(f"the messages are not JSON-serialisable: {exc}") from exc
    except (AttributeError, TypeError) as exc:  # not ModelRequest/ModelResponse objects
        raise TypeError(f"messages must be pydantic-ai ModelRequest/ModelResponse objects: {exc}") from exc
    check_size(text, max_bytes=max_bytes, what="the turn's messages")
    return text


class ConversationMemory:
    """Per-session message history in ``<keyspace>.conversation_memory``.

    :param client: the Cassandra client (its settings give TTL, bucket span and size limit).
    :param ttl_s: how long turns live; default ``settings.memory_ttl_s``.
    :param bucket_s: the span of one partition; default ``settings.memory_bucket_s``.
    :param clock: returns the current UNIX time (tests pass their own).
    """

    def __init__(
        self,
        client: CassandraClient,
        *,
        ttl_s: int | None = None,
        bucket_s: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        settings = client.settings
        self.client = client
        self.ttl_s = int(ttl_s if ttl_s is not None else settings.memory_ttl_s)
        self.bucket_s = int(bucket_s if bucket_s is not None else settings.memory_bucket_s)
        if self.ttl_s < 1 or self.bucket_s < 1:
            raise ValueError("ttl_s and bucket_s must be at least 1 second")
        self.clock = clock
        self._table = f"{client.keyspace}.conversation_memory"

    def bucket_of(self, unix_s: float) -> int:
        """Return the bucket a write at ``unix_s`` goes to."""
        return int(unix_s // self.bucket_s)

    def buckets_to_read(self, now: float) -> list[int]:
        """Return the buckets that can hold live turns, newest first (one ahead for clock skew)."""
        newest = self.bucket_of(now) + 1
        oldest = self.bucket_of(now - self.ttl_s)
        return list(range(newest, oldest - 1, -1))

    def append(
        self,
        session_id: str,
        messages: Sequence[ModelMessage] | str | bytes,
        *,
        run_id: str | None = None,
        turn_key: str | None = None,
        tokens: int | None = None,
        at: datetime | None = None,
    ) -> MemoryTurn:
        """Store one turn (the messages one run added) and return it.

        :param session_id: the conversation, e.g. the customer id of the triggering event.
        :param messages: pydantic-ai messages, or their ``ModelMessagesTypeAdapter`` JSON.
        :param run_id: the DAG run that produced them.
        :param turn_key: what wrote the turn (a task instance); earlier turns with this key in
            the session are deleted once this one is written.
        :param tokens: the turn's size in tokens for ``token_budget`` reads; default: estimated.
        :param at: the turn's time; default now.
        :raises NotJSONError: the messages do not serialise; nothing is written.
        :raises ValueTooLargeError: larger than ``max_value_bytes``; nothing is written.
        """
        from cassandra.util import uuid_from_time

        check_key(session_id, what="session_id")
        text = encode_messages(messages, max_bytes=self.client.settings.max_value_bytes)
        count = int(tokens) if tokens is not None else math.ceil(len(text) / CHARS_PER_TOKEN)
        if count < 0:
            raise ValueError(f"tokens must not be negative, got {count}")
        when = at.astimezone(UTC) if at is not None else datetime.fromtimestamp(self.clock(), UTC)
        turn_id = uuid_from_time(when)
        bucket = self.bucket_of(when.timestamp())
        self.client.execute(
            f"INSERT INTO {self._table} (session_id, bucket, turn_id, run_id, turn_key, messages, tokens) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?",
            (session_id, bucket, turn_id, run_id, turn_key, text, count, self.ttl_s),
        )
        if turn_key is not None:
            self._drop_earlier(session_id, turn_key, keep=turn_id, buckets=(bucket, bucket - 1))
        return MemoryTurn(
            session_id=session_id,
            turn_id=turn_id,
            at=when,
            run_id=run_id,
            tokens=count,
            messages=_adapter().validate_json(text),
        )

    def _drop_earlier(self, session_id: str, turn_key: str, *, keep: Any, buckets: Sequence[int]) -> None:
        """Delete the turns of ``session_id`` with ``turn_key`` other than ``keep`` in ``buckets``."""
        for bucket in buckets:
            rows = self.client.execute(
                f"SELECT turn_id, turn_key FROM {self._table} WHERE session_id = ? AND bucket = ?",
                (session_id, bucket),
            )
            for row in rows:
                if row.turn_key == turn_key and row.turn_id != keep:
                    self.client.execute(
                        f"DELETE FROM {self._table} WHERE session_id = ? AND bucket = ? AND turn_id = ?",
                        (session_id, bucket, row.turn_id),
                    )

    def turns(
        self, session_id: str, *, last_turns: int | None = 20, token_budget: int | None = None
    ) -> list[MemoryTurn]:
        """Return the newest turns, oldest first, within ``last_turns`` and ``token_budget``.

        :param last_turns: the most turns to return (at most ``MAX_TURNS``); ``None`` means
            ``MAX_TURNS``.
        :param token_budget: the most tokens the turns may add up to; the newest turn that
            would exceed it and everything older are left out.
        :raises ValueError: on a limit below 1 or above ``MAX_TURNS``.
        """
        check_key(session_id, what="session_id")
        limit = MAX_TURNS if last_turns is None else int(last_turns)
        if not 1 <= limit <= MAX_TURNS:
            raise ValueError(f"last_turns must be 1 to {MAX_TURNS}, got {last_turns}")
        if token_budget is not None and token_budget < 0:
            raise ValueError(f"token_budget must not be negative, got {token_budget}")
        adapter = _adapter()
        newest_first: list[MemoryTurn] = []
        spent = 0
        for bucket in self.buckets_to_read(self.clock()):
            rows = self.client.execute(
                f"SELECT turn_id, run_id, messages, tokens FROM {self._table} "
                "WHERE session_id = ? AND bucket = ? LIMIT ?",
                (session_id, bucket, limit - len(newest_first)),
            )
            for row in rows:
                cost = int(row.tokens or 0)
                if token_budget is not None and spent + cost > token_budget:
                    return newest_first[::-1]
                spent += cost
                newest_first.append(
                    MemoryTurn(
                        session_id=session_id,
                        turn_id=row.turn_id,
                        at=_uuid_time(row.turn_id),
                        run_id=row.run_id,
                        tokens=cost,
                        messages=adapter.validate_json(row.messages),
                    )
                )
                if len(newest_first) >= limit:
                    return newest_first[::-1]
        return newest_first[::-1]

    def load(
        self, session_id: str, *, last_turns: int | None = 20, token_budget: int | None = None
    ) -> list[ModelMessage]:
        """Return the message history to pass as ``message_history``: the turns' messages in order."""
        return [
            m
            for turn in self.turns(session_id, last_turns=last_turns, token_budget=token_budget)
            for m in turn.messages
        ]

    def clear(self, session_id: str) -> None:
        """Delete every turn of ``session_id`` (each bucket up to the TTL horizon)."""
        check_key(session_id, what="session_id")
        for bucket in self.buckets_to_read(self.clock()):
            self.client.execute(
                f"DELETE FROM {self._table} WHERE session_id = ? AND bucket = ?", (session_id, bucket)
            )


def _uuid_time(turn_id: UUID) -> datetime:
    from cassandra.util import datetime_from_uuid1

    return datetime_from_uuid1(turn_id).replace(tzinfo=UTC)

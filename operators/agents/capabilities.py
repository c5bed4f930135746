"""pydantic-ai capabilities that put guardrails and the audit trail into a common.ai agent run.

They plug into the agent loop through pydantic-ai's own lifecycle hooks (the loop stays
common.ai's): :class:`GuardrailCapability` redacts PII from every request before the model
sees it, keeps the model to its tool allowlist, waits on the shared rate limit and masks
secrets in what the model says; :class:`AuditCapability` notes each model call and tool call.
Both write into a :class:`RunRecorder`, which the agent operator flushes to the audit trail
once the run ends (on success and on failure), so no Cassandra write blocks the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Iterable
from dataclasses import KW_ONLY, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic_ai.capabilities import AbstractCapability

if TYPE_CHECKING:
    from pydantic_ai import RunContext
    from pydantic_ai.messages import ModelMessage, ModelResponse, ToolCallPart
    from pydantic_ai.models import ModelRequestContext
    from pydantic_ai.tools import ToolDefinition

    from include.guardrails import GuardrailHit, Guardrails, RedisTokenBucket

#: Longest tool result, in characters, copied into one audit record.
AUDIT_RESULT_CHARS = 2000


@dataclass
class AuditEntry:
    """One audit record waiting to be written (see ``include.state.audit.AuditTrail.record``).

    :param kind: ``model_call``, ``tool_call``, ``approval`` or ``guardrail_hit``.
    :param name: the model, tool or guardrail rule.
    :param outcome: e.g. ``ok``, ``error``, ``redacted``, ``blocked``.
    :param detail: JSON details, secrets already masked.
    :param at: when it happened.
    """

    kind: str
    name: str
    outcome: str
    detail: dict[str, Any]
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class RunRecorder:
    """What one agent run did, collected by the capabilities and flushed by the operator.

    :param entries: audit entries in the order they happened.
    :param hits: guardrail hits, in order.
    :param on_hit: called with every hit as it happens (metrics).
    """

    entries: list[AuditEntry] = field(default_factory=list)
    hits: list[GuardrailHit] = field(default_factory=list)
    on_hit: Callable[[GuardrailHit], None] | None = None

    def hit(self, hit: GuardrailHit, **extra: Any) -> None:
        """Record a guardrail hit (and its audit entry)."""
        self.hits.append(hit)
        self.entries.append(
            AuditEntry(
                kind="guardrail_hit",
                name=hit.rule,
                outcome=hit.action,
                detail={"count": hit.count, **hit.detail, **extra},
            )
        )
        if self.on_hit is not None:
            self.on_hit(hit)

    def hits_of(self, hits: Iterable[GuardrailHit], **extra: Any) -> None:
        """Record several hits."""
        for hit in hits:
            self.hit(hit, **extra)


def _mask(value: Any) -> Any:
    """Mask the secrets Airflow knows of (connection passwords, variables marked secret)."""
    from airflow.sdk._shared.secrets_masker import redact

    return redact(value)


def _redact_json(value: Any, redact: Callable[[str], tuple[str, list[GuardrailHit]]], hits: list[Any]) -> Any:
    """Redact every string inside a JSON-like value."""
    if isinstance(value, str):
        text, found = redact(value)
        hits.extend(found)
        return text
    if isinstance(value, dict):
        return {key: _redact_json(item, redact, hits) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_json(item, redact, hits) for item in value]
    return value


@dataclass
class GuardrailCapability(AbstractCapability[Any]):
    """Guardrails around every model request and tool call of an agent run.

    * before each model request: PII in the user prompt, tool results and history is
      replaced by ``[REDACTED:...]`` placeholders, in the run's persistent history too, so
      the model, the transcript and the memory never hold it; then one token is taken from
      the connection's shared rate limit (a Redis token bucket all workers share);
    * tools outside ``allowed_tools`` are not offered, and a call the model makes to one
      anyway (prompt injection) is recorded as a ``tool_not_allowed`` hit (pydantic-ai then
      tells the model the tool does not exist);
    * secrets Airflow masks (connection passwords, secret variables) are masked in what the
      model answers, and PII in its text is redacted.

    :param guardrails: the policy checks (``include.guardrails.Guardrails``).
    :param recorder: where hits go.
    :param allowed_tools: the only function tools the agent may call; ``None`` allows all.
    :param bucket: the shared rate limit, or ``None`` for none.
    :param rate_limit_timeout_s: the longest wait for a rate-limit token.
    """

    _: KW_ONLY
    guardrails: Guardrails
    recorder: RunRecorder
    allowed_tools: frozenset[str] | None = None
    bucket: RedisTokenBucket | None = None
    rate_limit_timeout_s: float = 60.0
    id: str | None = "agentflow_guardrails"

    async def prepare_tools(
        self, ctx: RunContext[Any], tool_defs: list[ToolDefinition]
    ) -> list[ToolDefinition]:
        """Offer only the allowed tools."""
        if self.allowed_tools is None:
            return tool_defs
        return [tool for tool in tool_defs if tool.name in self.allowed_tools]

    async def before_model_request(
        self, ctx: RunContext[Any], request_context: ModelRequestContext
    ) -> ModelRequestContext:
        """Redact PII from the conversation, then wait for the shared rate limit."""
        replaced: dict[int, ModelMessage] = {}
        for index, message in enumerate(ctx.messages):
            redacted = self._redact_message(message)
            if redacted is not message:
                replaced[id(message)] = redacted
                ctx.messages[index] = redacted
        if replaced:
            messages = [
                replaced.get(id(message), self._redact_message(message))
                for message in request_context.messages
            ]
            request_context = dataclasses.replace(request_context, messages=messages)
        if self.bucket is not None:
            from include.guardrails import GuardrailViolation

            try:
                waited = await asyncio.to_thread(self.bucket.acquire, 1, self.rate_limit_timeout_s)
            except GuardrailViolation as err:
                self.recorder.hit(err.hit)
                raise
            if waited >= 0.05:  # a real wait, not the round trip
                from include.guardrails import GuardrailHit

                self.recorder.hit(
                    GuardrailHit(rule="rate_limit", action="flagged", detail={"waited_s": round(waited, 3)})
                )
        return request_context

    def _redact_message(self, message: ModelMessage) -> ModelMessage:
        """``message`` with PII redacted from its prompt and tool-result parts (same object if clean)."""
        from pydantic_ai.messages import ModelRequest, ToolReturnPart, UserPromptPart

        if not isinstance(message, ModelRequest):
            return message
        parts = []
        changed = False
        for part in message.parts:
            hits: list[GuardrailHit] = []
            if isinstance(part, UserPromptPart) and isinstance(part.content, str):
                content, hits = self.guardrails.redact(part.content)
                if hits:
                    part = dataclasses.replace(part, content=content)
            elif isinstance(part, ToolReturnPart):
                content = _redact_json(part.content, self.guardrails.redact, hits)
                if hits:
                    part = dataclasses.replace(part, content=content)
            if hits:
                changed = True
                self.recorder.hits_of(hits, where=part.part_kind)
            parts.append(part)
        return dataclasses.replace(message, parts=parts) if changed else message

    async def after_model_request(
        self, ctx: RunContext[Any], *, request_context: ModelRequestContext, response: ModelResponse
    ) -> ModelResponse:
        """Record calls to tools outside the allowlist; mask secrets and redact PII in the answer."""
        from pydantic_ai.messages import TextPart, ToolCallPart

        offered = {tool.name for tool in request_context.model_request_parameters.function_tools}
        offered |= {tool.name for tool in request_context.model_request_parameters.output_tools}
        parts = []
        for part in response.parts:
            if isinstance(part, ToolCallPart) and part.tool_name not in offered:
                from include.guardrails import GuardrailHit

                self.recorder.hit(
                    GuardrailHit(
                        rule="tool_not_allowed",
                        action="blocked",
                        detail={"tool": part.tool_name, "offered": sorted(offered)},
                    )
                )
            elif isinstance(part, TextPart):
                masked = _mask(part.content)
                text, hits = self.guardrails.redact(masked)
                if masked != part.content:
                    from include.guardrails import GuardrailHit

                    self.recorder.hit(
                        GuardrailHit(rule="secret", action="redacted", detail={"where": "text"})
                    )
                self.recorder.hits_of(hits, where="model_text")
                if text != part.content:
                    part = dataclasses.replace(part, content=text)
            elif isinstance(part, ToolCallPart):
                args = part.args_as_dict()
                masked_args = _mask(args)
                if masked_args != args:
                    from include.guardrails import GuardrailHit

                    self.recorder.hit(
                        GuardrailHit(rule="secret", action="redacted", detail={"tool": part.tool_name})
                    )
                    part = dataclasses.replace(part, args=masked_args)
            parts.append(part)
        return dataclasses.replace(response, parts=parts)


@dataclass
class AuditCapability(AbstractCapability[Any]):
    """Notes every model call (model, tokens, latency) and tool call (arguments, outcome, latency).

    Arguments and results are masked by Airflow's secrets masker before they are noted; a
    result longer than ``AUDIT_RESULT_CHARS`` is cut. Only the recorder is written here; the
    agent operator flushes it to the audit trail when the run ends.

    A tool that raises does not end the run: the agent gets a structured error as the tool's
    result (``{"error": <type>, "message": <masked text>}``) and decides what to do next,
    within the run's budgets (``usage_limits``, ``time_limit``).

    :param recorder: where entries go.
    """

    _: KW_ONLY
    recorder: RunRecorder
    id: str | None = "agentflow_audit"
    _failed_calls: set[str] = field(default_factory=set, repr=False)

    async def wrap_model_request(
        self, ctx: RunContext[Any], *, request_context: ModelRequestContext, handler: Any
    ) -> Any:
        """Time the model request and note its usage."""
        started = time.monotonic()
        try:
            response = await handler(request_context)
        except Exception as err:
            self.recorder.entries.append(
                AuditEntry(
                    kind="model_call",
                    name=request_context.model.model_name,
                    outcome="error",
                    detail={"error": f"{type(err).__name__}: {_mask(str(err))}", "latency_ms": _ms(started)},
                )
            )
            raise
        usage = response.usage
        self.recorder.entries.append(
            AuditEntry(
                kind="model_call",
                name=response.model_name or request_context.model.model_name,
                outcome="ok",
                detail={
                    "input_tokens": usage.input_tokens,
                    "output_tokens": usage.output_tokens,
                    "tool_calls": [part.tool_name for part in response.tool_calls],
                    "latency_ms": _ms(started),
                },
            )
        )
        return response

    async def wrap_tool_execute(
        self, ctx: RunContext[Any], *, call: ToolCallPart, tool_def: ToolDefinition, args: Any, handler: Any
    ) -> Any:
        """Time the tool call and note its arguments and outcome."""
        started = time.monotonic()
        detail: dict[str, Any] = {"args": _mask(call.args_as_dict()), "tool_call_id": call.tool_call_id}
        try:
            result = await handler(args)
        except Exception as err:
            detail.update(error=f"{type(err).__name__}: {_mask(str(err))}", latency_ms=_ms(started))
            self.recorder.entries.append(AuditEntry("tool_call", call.tool_name, "error", detail))
            raise
        if call.tool_call_id in self._failed_calls:
            return result  # noted by on_tool_execute_error
        text = str(_mask(result))
        detail.update(
            result=text[:AUDIT_RESULT_CHARS] + ("..." if len(text) > AUDIT_RESULT_CHARS else ""),
            latency_ms=_ms(started),
        )
        self.recorder.entries.append(AuditEntry("tool_call", call.tool_name, "ok", detail))
        return result

    async def on_tool_execute_error(
        self,
        ctx: RunContext[Any],
        *,
        call: ToolCallPart,
        tool_def: ToolDefinition,
        args: Any,
        error: Exception,
    ) -> Any:
        """Note the failure and give the model a structured error instead of ending the run."""
        failure = {"error": type(error).__name__, "message": str(_mask(str(error)))[:AUDIT_RESULT_CHARS]}
        self._failed_calls.add(call.tool_call_id)
        self.recorder.entries.append(
            AuditEntry("tool_call", call.tool_name, "error", {"args": _mask(call.args_as_dict()), **failure})
        )
        return failure


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)

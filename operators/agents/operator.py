"""``AgentflowAgentOperator``: common.ai's ``AgentOperator`` with the platform wired in.

The agent loop, tool calling, structured output, fallback, usage limits, durable replay and
tool approval are common.ai's (pydantic-ai's); this subclass only adds, through their
extension points:

* **memory**: the session's last turns (Cassandra, or the embedded SQLite store) are the
  run's ``message_history``, the run's new messages are appended after it succeeds, and the
  agent gets ``recall_memory`` / ``remember`` tools;
* **knowledge**: the ``search_knowledge`` tool (Cassandra ANN when a Cassandra connection is
  defined, the shipped corpus with BM25 when not);
* **guardrails** (``config/guardrails.yaml``): the prompt is checked (size, profanity) and
  PII-redacted before the run; every model request is redacted and rate limited
  (:class:`~operators.agents.capabilities.GuardrailCapability`); the output is redacted;
* **budgets**: ``usage_limits`` (tokens, requests, tool calls: common.ai's) plus a wall-clock
  ``time_limit`` for the run (pydantic-ai's run timeout);
* **audit and run records**: every model call, tool call and guardrail hit goes to the audit
  trail, and the run's summary and transcript to the agent-run store the UI reads; the
  ``agent.executed`` / ``agent.failed`` events are the lifecycle listener's.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from airflow.providers.common.ai.operators.agent import AgentOperator

from operators.agents.capabilities import AuditCapability, GuardrailCapability, RunRecorder

if TYPE_CHECKING:
    from airflow.sdk import Context
    from pydantic_ai import Agent
    from pydantic_ai.messages import ModelMessage
    from pydantic_ai.usage import RunUsage

    from include.guardrails import Guardrails, RedisTokenBucket
    from include.state.embedded import EmbeddedState
    from operators.hooks.cassandra import CassandraHook

KnowledgeMode = Literal["auto", "vector", "lexical"]


class AgentflowAgentOperator(AgentOperator):
    """Run a common.ai agent with session memory, knowledge, guardrails, budgets and audit.

    Every ``AgentOperator`` argument works unchanged (``llm_conn_id``, ``prompt``,
    ``system_prompt``, ``output_type``, ``toolsets``, ``usage_limits``, ``durable``,
    ``fallback_conn_ids``...); the ones below are added.

    :param session_id: the conversation the run belongs to (e.g. the customer id of the
        triggering event); templated. ``None`` runs without memory.
    :param memory_turns: how many of the session's latest turns the agent sees.
    :param memory_token_budget: stop loading older turns once this many tokens are loaded.
    :param memory_tools: give the agent ``recall_memory`` / ``remember`` (needs ``session_id``).
    :param knowledge: ``"auto"`` (default: the Cassandra vector store when
        ``cassandra_conn_id`` is defined, else the shipped corpus with BM25), ``"vector"``,
        ``"lexical"``, or ``None`` for no knowledge tool.
    :param allowed_tools: the only tools the agent may call (names); ``None`` allows every
        tool it is given. Calls outside it are refused and audited.
    :param guardrails: apply ``config/guardrails.yaml`` (or the policy file at this path);
        ``False`` turns guardrails off.
    :param time_limit: the longest the agent run may take (seconds or a ``timedelta``); the
        run fails with pydantic-ai's ``RunTimedOut`` after it.
    :param cassandra_conn_id: the state connection (memory, knowledge, audit, run records);
        when it is not defined, the embedded SQLite store.
    :param redis_conn_id: the Redis connection of the shared rate limit; when it is not
        defined, no shared rate limit applies (logged).
    :param record_runs: write the run summary and transcript to the agent-run store.
    """

    template_fields: Sequence[str] = (*AgentOperator.template_fields, "session_id")

    def __init__(
        self,
        *,
        session_id: str | None = None,
        memory_turns: int = 10,
        memory_token_budget: int | None = None,
        memory_tools: bool = True,
        knowledge: KnowledgeMode | None = "auto",
        allowed_tools: Sequence[str] | None = None,
        guardrails: bool | str = True,
        time_limit: float | timedelta | None = None,
        cassandra_conn_id: str = "cassandra_default",
        redis_conn_id: str = "redis_default",
        record_runs: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if knowledge not in (None, "auto", "vector", "lexical"):
            raise ValueError(f"knowledge must be 'auto', 'vector', 'lexical' or None, got {knowledge!r}")
        if memory_turns < 1:
            raise ValueError(f"memory_turns must be at least 1, got {memory_turns}")
        limit_s = time_limit.total_seconds() if isinstance(time_limit, timedelta) else time_limit
        if limit_s is not None and limit_s <= 0:
            raise ValueError(f"time_limit must be positive, got {time_limit!r}")
        self.session_id = session_id
        self.memory_turns = memory_turns
        self.memory_token_budget = memory_token_budget
        self.memory_tools = memory_tools
        self.knowledge = knowledge
        self.allowed_tools = list(allowed_tools) if allowed_tools is not None else None
        self.guardrails = guardrails
        self.time_limit = limit_s
        self.cassandra_conn_id = cassandra_conn_id
        self.redis_conn_id = redis_conn_id
        self.record_runs = record_runs
        # Per try, set in _prepare (execute, or the resume after a tool approval).
        self._recorder = RunRecorder()
        self._state: CassandraHook | EmbeddedState | None = None
        self._guard: Guardrails | None = None
        self._history: list[ModelMessage] | None = None
        self._started_at = datetime.now(UTC)
        self._started = time.monotonic()
        self._finished = False
        self._declared_toolset_list = list(self.toolsets or [])
        self._declared_capability_list = list(self.capabilities or [])

    # --- run set-up ---------------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        """Check the prompt, load memory, wire in tools and guardrails, then run the agent."""
        with self._log_context(context):
            self._prepare(context)
            try:
                return super().execute(context)
            except BaseException as err:
                self._finish_failed(context, err)
                raise
            finally:
                self._close_state()

    def _log_context(self, context: Context) -> Any:
        """Every log record of the run (ours, common.ai's, pydantic-ai's) carries the run's ids."""
        import structlog

        ti = context["task_instance"]
        return structlog.contextvars.bound_contextvars(
            dag_id=ti.dag_id,
            run_id=ti.run_id,
            task_id=ti.task_id,
            map_index=ti.map_index,
            try_number=ti.try_number,
            session_id=self.session_id,
        )

    def resume_after_tool_approval(self, context: Context, **kwargs: Any) -> Any:  # type: ignore[override]
        """Resume after a human decided on the tool calls the agent waits on (common.ai's flow)."""
        with self._log_context(context):
            return self._resume(context, **kwargs)

    def _resume(self, context: Context, **kwargs: Any) -> Any:
        self._prepare(context, check_prompt=False)
        event = kwargs.get("event") or {}
        if "chosen_options" in event:
            from operators.agents.capabilities import AuditEntry

            user = event.get("responded_by_user") or {}
            chosen = event["chosen_options"]
            self._recorder.entries.append(
                AuditEntry(
                    kind="approval",
                    name="tool approval",
                    outcome="approved" if chosen == ["Approve"] else "rejected",
                    detail={
                        "chosen_options": chosen,
                        "responded_by": user.get("name") or user.get("id"),
                        "reason": (event.get("params_input") or {}).get("reason"),
                    },
                )
            )
        try:
            return super().resume_after_tool_approval(context, **kwargs)
        except BaseException as err:
            self._finish_failed(context, err)
            raise
        finally:
            self._close_state()

    def _close_state(self) -> None:
        if self._state is not None:
            self._state.close()
            self._state = None

    def _prepare(self, context: Context, *, check_prompt: bool = True) -> None:
        from operators.hooks.cassandra import state_backend

        self._recorder = RunRecorder(on_hit=_count_hit)
        self._started_at = datetime.now(UTC)
        self._started = time.monotonic()
        self._finished = False
        self._state = state_backend(self.cassandra_conn_id)
        self._guard = guardrails = self._load_guardrails()

        if guardrails is not None and check_prompt and isinstance(self.prompt, str):
            from airflow.sdk.exceptions import AirflowFailException

            from include.guardrails import GuardrailViolation

            try:
                self.prompt, hits = guardrails.check_input(self.prompt)
            except GuardrailViolation as err:
                self._recorder.hit(err.hit, where="prompt")
                self._finish(context, None, status="failed", error=str(err))
                # A refused prompt is refused again on retry: fail now, without retries.
                raise AirflowFailException(f"guardrail refused the prompt: {err}") from err
            self._recorder.hits_of(hits, where="prompt")

        self._history = None
        if self.session_id:
            self._history = self._state.memory().load(
                self.session_id, last_turns=self.memory_turns, token_budget=self.memory_token_budget
            )
            self.log.info(
                "Session %s: %d earlier messages loaded from memory", self.session_id, len(self._history)
            )

        toolsets = list(self._declared_toolset_list)
        if self.knowledge is not None:
            toolsets.append(self._knowledge_toolset())
        if self.session_id and self.memory_tools:
            from operators.toolsets.memory import MemoryToolset

            toolsets.append(MemoryToolset(self.session_id, self._state))
        self.toolsets = toolsets

        capabilities = list(self._declared_capability_list)
        if guardrails is not None:
            # The operator's allowlist and the policy's (tools.allowed) both apply.
            allowed = None if self.allowed_tools is None else set(self.allowed_tools)
            if guardrails.policy.tools.allowed is not None:
                policy_allowed = set(guardrails.policy.tools.allowed)
                allowed = policy_allowed if allowed is None else allowed & policy_allowed
            capabilities.append(
                GuardrailCapability(
                    guardrails=guardrails,
                    recorder=self._recorder,
                    allowed_tools=frozenset(allowed) if allowed is not None else None,
                    bucket=self._rate_limit(guardrails),
                )
            )
        capabilities.append(AuditCapability(recorder=self._recorder))
        self.capabilities = capabilities

    def _load_guardrails(self) -> Guardrails | None:
        if self.guardrails is False:
            return None
        from include.guardrails import GuardrailPolicy, Guardrails

        path = self.guardrails if isinstance(self.guardrails, str) else None
        return Guardrails(GuardrailPolicy.load(path))

    def _knowledge_toolset(self) -> Any:
        from operators.toolsets import CassandraKnowledgeToolset, knowledge_toolset

        mode = self.knowledge
        if mode == "auto":
            from operators.hooks.cassandra import CassandraHook

            mode = "vector" if isinstance(self._state, CassandraHook) else "lexical"
        self.log.info("Knowledge tool: %s", "Cassandra vector search" if mode == "vector" else "BM25 corpus")
        return CassandraKnowledgeToolset(self.cassandra_conn_id) if mode == "vector" else knowledge_toolset()

    def _rate_limit(self, guardrails: Guardrails) -> RedisTokenBucket | None:
        limit = guardrails.policy.rate_limit_for(self.llm_conn_id)
        if limit is None:
            return None
        from airflow.exceptions import AirflowNotFoundException
        from airflow.providers.redis.hooks.redis import RedisHook

        from include.guardrails import RedisTokenBucket

        try:
            RedisHook.get_connection(self.redis_conn_id)
        except AirflowNotFoundException:
            self.log.info(
                "No shared rate limit for %s: connection %r is not defined",
                self.llm_conn_id,
                self.redis_conn_id,
            )
            return None
        rate_per_s, capacity = limit
        return RedisTokenBucket(
            RedisHook(redis_conn_id=self.redis_conn_id).get_conn(),
            key=f"agentflow:rate:{self.llm_conn_id}",
            rate_per_s=rate_per_s,
            capacity=capacity,
        )

    # --- hooks into AgentOperator ---------------------------------------------------------------

    def _resolve_message_history(self) -> list[ModelMessage] | None:
        """The session's memory, followed by any ``message_history`` given explicitly."""
        explicit = super()._resolve_message_history()
        if not self._history:
            return explicit
        return [*self._history, *(explicit or [])]

    def _run_agent_tracked(
        self, agent: Agent[Any, Any], prompt: Any, *, run_usage: RunUsage, **run_kwargs: Any
    ) -> Any:
        """Run with the wall-clock budget (pydantic-ai's run ``timeout``) when one is set."""
        if self.time_limit is not None:
            run_kwargs.setdefault("timeout", self.time_limit)
        return super()._run_agent_tracked(agent, prompt, run_usage=run_usage, **run_kwargs)

    def _complete_run(self, context: Context, result: Any, *, attempt_usage: RunUsage) -> Any:
        """Finish the run as common.ai does, then redact the output, remember the turn and record it."""
        from airflow.sdk.exceptions import TaskAwaitingInput

        try:
            output = super()._complete_run(context, result, attempt_usage=attempt_usage)
        except TaskAwaitingInput:
            self._finish(context, result, status="awaiting_approval", usage=attempt_usage)
            raise
        except BaseException as err:
            self._finish(context, result, status="failed", error=_describe(err), usage=attempt_usage)
            raise
        output = self._redact_output(output)
        if self.session_id and self._state is not None:
            ti = context["ti"]
            # One turn per task instance: a retry's turn replaces what a killed try remembered.
            self._state.memory().append(
                self.session_id,
                result.new_messages(),
                run_id=context["run_id"],
                turn_key=f"{ti.dag_id}/{ti.run_id}/{ti.task_id}/{ti.map_index}",
            )
        self._finish(context, result, status="success", usage=attempt_usage)
        return output

    def _redact_output(self, output: Any) -> Any:
        guardrails = self._guard
        if guardrails is None:
            return output
        from operators.agents.capabilities import _redact_json

        hits: list[Any] = []
        # check_output: PII redaction and the output profanity policy (flag, or block: fails the task).
        if hasattr(output, "model_dump"):
            checked = _redact_json(output.model_dump(mode="json"), guardrails.check_output, hits)
            output = type(output).model_validate(checked) if hits else output
        else:
            output = _redact_json(output, guardrails.check_output, hits)
        self._recorder.hits_of(hits, where="output")
        return output

    # --- records ---------------------------------------------------------------------------------

    def _finish_failed(self, context: Context, err: BaseException) -> None:
        from airflow.sdk.exceptions import TaskAwaitingInput

        if self._finished or isinstance(err, TaskAwaitingInput):
            return
        try:
            self._finish(context, None, status="failed", error=_describe(err))
        except Exception:
            # The run's own error is what the task reports; recording it is second.
            self.log.exception("Could not record the failed agent run")

    def _finish(
        self,
        context: Context,
        result: Any,
        *,
        status: Literal["success", "failed", "awaiting_approval"],
        error: str | None = None,
        usage: RunUsage | None = None,
    ) -> None:
        """Flush the audit entries and write the run summary and transcript (once per try)."""
        if self._finished or self._state is None:
            return
        self._finished = True
        ti = context["task_instance"]
        map_index = ti.map_index if ti.map_index is not None else -1
        where: dict[str, Any] = {
            "dag_id": ti.dag_id,
            "run_id": ti.run_id,
            "task_id": ti.task_id,
            "map_index": map_index,
            "try_number": ti.try_number,
        }
        audit = self._state.audit()
        for entry in self._recorder.entries:
            audit.record(
                dag_id=ti.dag_id,
                run_id=ti.run_id,
                task_id=ti.task_id,
                map_index=map_index,
                try_number=ti.try_number,
                kind=entry.kind,
                name=entry.name,
                actor="agent",
                outcome=entry.outcome,
                detail={**entry.detail, "session_id": self.session_id} if self.session_id else entry.detail,
                at=entry.at,
            )
        if usage is None and self._run_usage is not None:
            from airflow.providers.common.ai.utils.usage_budget import subtract_run_usage

            usage = subtract_run_usage(self._run_usage, self._run_usage_base)
        summary = _summary(
            where,
            session_id=self.session_id,
            model=getattr(getattr(result, "response", None), "model_name", None),
            status=status,
            started_at=self._started_at,
            latency_ms=int((time.monotonic() - self._started) * 1000),
            usage=usage,
            guardrail_hits=sum(hit.count for hit in self._recorder.hits),
            error=error,
        )
        from operators import metrics

        metrics.agent_run(summary)
        if self.record_runs:
            self._state.agent_runs().record(summary, self._transcript(result))
        self.log.info(
            "Agent run %s: %d audit records, %d guardrail hits, tokens in/out %d/%d",
            status,
            len(self._recorder.entries),
            summary.guardrail_hits,
            summary.input_tokens,
            summary.output_tokens,
        )

    def _transcript(self, result: Any) -> list[dict[str, Any]]:
        if result is None:
            return []
        from pydantic_ai.messages import ModelMessagesTypeAdapter

        transcript = ModelMessagesTypeAdapter.dump_python(result.all_messages(), mode="json")
        guardrails = self._guard
        if guardrails is None:
            return transcript
        from operators.agents.capabilities import _redact_json

        return _redact_json(transcript, guardrails.redact, [])


def _summary(
    where: dict[str, Any],
    *,
    session_id: str | None,
    model: str | None,
    status: Literal["success", "failed", "awaiting_approval"],
    started_at: datetime,
    latency_ms: int,
    usage: RunUsage | None,
    guardrail_hits: int,
    error: str | None,
) -> Any:
    from include.state.runs import AgentRunSummary

    return AgentRunSummary(
        **where,
        session_id=session_id,
        model=model,
        status=status,
        started_at=started_at,
        finished_at=datetime.now(UTC),
        latency_ms=latency_ms,
        input_tokens=usage.input_tokens if usage else 0,
        output_tokens=usage.output_tokens if usage else 0,
        requests=usage.requests if usage else 0,
        tool_calls=usage.tool_calls if usage else 0,
        guardrail_hits=guardrail_hits,
        error=error,
    )


def _count_hit(hit: Any) -> None:
    from operators import metrics

    metrics.guardrail_hit(hit.rule, hit.action)


def _describe(err: BaseException) -> str:
    from airflow.sdk._shared.secrets_masker import redact

    return str(redact(f"{type(err).__name__}: {err}"))[:2000]

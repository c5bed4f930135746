"""A pydantic-ai model on openvino-genai's ``LLMPipeline``: local LLMs for common.ai agents.

:class:`OpenVINOModel` is a ``pydantic_ai.models.Model``. Each request renders the
conversation through the model's own chat template (an ``openvino_genai.ChatHistory`` with
the offered tools set on it, so a Qwen2.5-style template lists them as it was trained
to) and generates with openvino-genai's constrained decoding
(``GenerationConfig.structured_output_config``):

* tools offered (the agent's function tools, and the ``final_result`` output tool of a
  structured ``output_type``): the answer must match the JSON schema ``{"anyOf": [{"name":
  <const tool name>, "arguments": <that tool's parameter schema>}, ...]}``; it is parsed into
  a ``ToolCallPart``. Where plain text is allowed too, one more branch ``{"content":
  <string>}`` becomes a ``TextPart``. One tool call per response.
* native structured output (``NativeOutput``): the answer must match the output schema.
* neither: free text.

The pipeline is compiled on first use and kept warm in this process (:func:`get_pipeline`,
an LRU keyed by folder, device and properties), never in ``__init__``: building an
:class:`OpenVINOModel` is free, so a DAG file or a hook may build one at parse time.

Greedy decoding with a JSON schema can loop on whitespace until ``max_new_tokens`` (the
grammar allows free whitespace between JSON tokens); the default is therefore seeded
sampling (``do_sample``, ``seed``), reproducible for a given seed and conversation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_ai.messages import (
    BaseToolReturnPart,
    ModelMessage,
    ModelRequest,
    ModelResponse,
    ModelResponsePart,
    SystemPromptPart,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    UserPromptPart,
)
from pydantic_ai.models import Model, ModelRequestParameters
from pydantic_ai.profiles import ModelProfile
from pydantic_ai.usage import RequestUsage

from include.errors import ConfigurationError
from include.inference._errors import CorruptModelError
from include.inference.registry import Device, get_model_spec

if TYPE_CHECKING:
    import openvino_genai as ov_genai
    from pydantic_ai.settings import ModelSettings

log = logging.getLogger(__name__)

#: The files an exported OpenVINO GenAI model folder needs.
REQUIRED_FILES = ("openvino_model.xml", "openvino_tokenizer.xml", "openvino_detokenizer.xml")
#: The JSON key of the plain-text branch when text is allowed next to tools.
TEXT_KEY = "content"


class LLMSettings(BaseModel):
    """How to run a local LLM: a ``pydanticai_openvino`` connection's extra.

    :param model: a registry name (``config/models.yaml``, task ``generate``) whose source is
        an exported OpenVINO model folder (``make models`` prints one).
    :param model_dir: an exported OpenVINO model folder (instead of ``model``).
    :param device: the OpenVINO device; the registry's (or ``CPU``) if ``None``.
    :param max_new_tokens: the most tokens one response may have (openvino-genai's default is unbounded).
    :param do_sample: sample (seeded) instead of greedy decoding.
    :param temperature: sampling temperature.
    :param top_p: nucleus sampling mass.
    :param seed: the sampling seed; each turn of a conversation uses ``seed`` plus the turn number.
    :param properties: extra OpenVINO properties for the pipeline (e.g. ``{"KV_CACHE_PRECISION": "u8"}``).
    """

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    model_dir: str | None = None
    device: Device | None = None
    max_new_tokens: int = Field(default=512, ge=1, le=32768)
    do_sample: bool = True
    temperature: float = Field(default=0.7, gt=0, le=5)
    top_p: float = Field(default=0.95, gt=0, le=1)
    seed: int = Field(default=0, ge=0)
    properties: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_source(self) -> LLMSettings:
        if bool(self.model) == bool(self.model_dir):
            raise ValueError(
                "give exactly one of 'model' (a registry name) or 'model_dir' (an exported folder)"
            )
        return self

    def resolve(self) -> tuple[Path, str, str]:
        """The exported folder, the device and a display name.

        :raises UnknownModelError: ``model`` is not in the registry.
        :raises ConfigurationError: the registry model is not a ``generate`` model, or the folder
            is not an exported OpenVINO GenAI model.
        """
        if self.model:
            spec = get_model_spec(self.model)
            if spec.task != "generate":
                raise ConfigurationError(
                    f"model {self.model!r} has task {spec.task!r}; a pydanticai_openvino connection "
                    "needs a model with task 'generate'"
                )
            folder, device, name = spec.source.resolve(), self.device or spec.device, self.model
        else:
            folder = Path(os.path.expandvars(str(self.model_dir))).expanduser()
            device, name = self.device or "CPU", folder.name
        check_model_dir(folder, name)
        return folder, device, name


def check_model_dir(folder: Path, name: str) -> None:
    """Refuse a folder that is not an exported OpenVINO GenAI model, naming what is missing.

    :raises ConfigurationError: the folder or one of :data:`REQUIRED_FILES` is missing.
    """
    if not folder.is_dir():
        raise ConfigurationError(f"LLM {name!r}: model folder {folder} does not exist (run `make models`?)")
    missing = [f for f in REQUIRED_FILES if not (folder / f).is_file()]
    if missing:
        raise ConfigurationError(
            f"LLM {name!r}: {folder} is not an exported OpenVINO model (missing {', '.join(missing)}); "
            "export it with `make models` or `optimum-cli export openvino --task text-generation-with-past`"
        )


# --- warm pipelines --------------------------------------------------------------------------


@dataclass
class _Loaded:
    pipeline: ov_genai.LLMPipeline
    lock: threading.Lock = field(default_factory=threading.Lock)


class PipelineCache:
    """Compiled ``LLMPipeline`` objects kept warm in this process: an LRU with counters.

    :param max_pipelines: how many pipelines to keep; the least recently used is dropped.
    """

    def __init__(self, max_pipelines: int = 1) -> None:
        if max_pipelines < 1:
            raise ValueError(f"max_pipelines must be at least 1, not {max_pipelines}")
        self.max_pipelines = max_pipelines
        self._items: OrderedDict[tuple[str, str, str], _Loaded] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0
        self.hits = 0
        self.evictions = 0

    def get(self, folder: Path, device: str, properties: dict[str, Any] | None = None) -> _Loaded:
        """The warm pipeline for ``folder`` on ``device``, compiling it on a miss.

        :raises DeviceNotAvailableError: ``device`` is not present.
        :raises CorruptModelError: OpenVINO cannot read or compile the model.
        """
        props = dict(properties or {})
        key = (str(folder.resolve()), device, json.dumps(props, sort_keys=True, default=str))
        with self._lock:
            loaded = self._items.get(key)
            if loaded is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return loaded
            loaded = _Loaded(_load_pipeline(folder, device, props))
            self.loads += 1
            self._items[key] = loaded
            while len(self._items) > self.max_pipelines:
                old, _ = self._items.popitem(last=False)
                self.evictions += 1
                log.info("LLM pipeline cache: dropping %s on %s", old[0], old[1])
            return loaded

    def stats(self) -> dict[str, Any]:
        """``loads``, ``hits``, ``evictions`` and the folders held."""
        with self._lock:
            held = [f"{k[0]}@{k[1]}" for k in self._items]
        return {"loads": self.loads, "hits": self.hits, "evictions": self.evictions, "loaded": held}

    def clear(self) -> None:
        """Drop every pipeline (freed when the last request using it ends)."""
        with self._lock:
            self._items.clear()


def _load_pipeline(folder: Path, device: str, properties: dict[str, Any]) -> ov_genai.LLMPipeline:
    import openvino_genai as ov_genai

    from include.inference.convert import compiled_cache_dir
    from include.inference.hardware import detect_hardware

    hardware = detect_hardware(device)
    # One compiled-model cache per property set: OpenVINO's cache key ignores some properties
    # (the precision hint among them, see include.inference.runtime.compile_properties).
    key = hashlib.sha256(json.dumps(properties, sort_keys=True, default=str).encode()).hexdigest()[:12]
    props = {"CACHE_DIR": str(compiled_cache_dir() / "llm" / key), **properties}
    started = time.monotonic()
    try:
        pipeline = ov_genai.LLMPipeline(str(folder), device, props)
    except RuntimeError as err:
        raise CorruptModelError(f"cannot load the OpenVINO LLM at {folder} on {device}: {err}") from err
    log.info(
        "LLM %s compiled on %s in %.2f s (%s)", folder, device, time.monotonic() - started, hardware.summary()
    )
    return pipeline


_cache: PipelineCache | None = None
_cache_lock = threading.Lock()


def get_pipeline_cache() -> PipelineCache:
    """The process-wide cache (``AGENTFLOW_LLM_MAX_PIPELINES`` pipelines, default 1)."""
    global _cache
    with _cache_lock:
        if _cache is None:
            _cache = PipelineCache(int(os.environ.get("AGENTFLOW_LLM_MAX_PIPELINES", "1")))
        return _cache


# --- requests: messages in, constrained generation, parts out ------------------------------------


def tool_schema(tools: Sequence[Any], allow_text: bool) -> dict[str, Any]:
    """The JSON schema one response must match when ``tools`` (``ToolDefinition``) are offered."""
    branches: list[dict[str, Any]] = [
        {
            "type": "object",
            "properties": {"name": {"const": t.name}, "arguments": t.parameters_json_schema},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for t in tools
    ]
    if allow_text:
        branches.append(
            {
                "type": "object",
                "properties": {TEXT_KEY: {"type": "string"}},
                "required": [TEXT_KEY],
                "additionalProperties": False,
            }
        )
    return {"anyOf": branches}


def offered_tools(
    params: ModelRequestParameters, settings: ModelSettings | None = None
) -> tuple[list[Any], bool]:
    """The tools this response may call and whether it may answer in text instead.

    Follows pydantic-ai's ``tool_choice`` setting (``none``, ``auto``, ``required``, a list of
    tool names, ``ToolOrOutput``) as the provider adapters do.
    """
    from pydantic_ai.models._tool_choice import resolve_tool_choice

    tools = [*params.declared_function_tools, *params.output_tools]
    choice = resolve_tool_choice(settings, params)
    if choice == "none":
        return [t for t in params.output_tools], True
    if choice == "auto":
        return tools, params.allow_text_output
    if choice == "required":
        return tools, False
    mode, names = choice
    return [t for t in tools if t.name in names], mode == "auto" and params.allow_text_output


def response_schema(
    params: ModelRequestParameters, settings: ModelSettings | None = None
) -> dict[str, Any] | None:
    """What the response must match for these request parameters, or ``None`` for free text."""
    tools, allow_text = offered_tools(params, settings)
    native = params.output_mode == "native" and params.output_object is not None
    if tools:
        schema = tool_schema(tools, allow_text=allow_text and not native)
        if native and params.output_object is not None:
            schema["anyOf"].append(params.output_object.json_schema)
        return schema
    if native and params.output_object is not None:
        return dict(params.output_object.json_schema)
    return None


def parse_response(
    text: str, params: ModelRequestParameters, call_id: str, settings: ModelSettings | None = None
) -> list[ModelResponsePart]:
    """The response parts for generated ``text`` under ``params`` (see :func:`response_schema`).

    :raises UnexpectedModelBehavior: constrained output that is not complete JSON (the
        response hit ``max_new_tokens``), or a tool call naming no offered tool.
    """
    from pydantic_ai.exceptions import UnexpectedModelBehavior

    if response_schema(params, settings) is None:
        return [TextPart(text)]
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise UnexpectedModelBehavior(
            f"the model's constrained output is not complete JSON ({err.msg}); raise max_new_tokens "
            "if the answer was cut off",
            body=text[-2000:],
        ) from None
    tools, allow_text = offered_tools(params, settings)
    offered = {t.name for t in tools}
    if isinstance(value, dict) and set(value) == {"name", "arguments"} and value["name"] in offered:
        return [ToolCallPart(value["name"], value["arguments"], tool_call_id=call_id)]
    if isinstance(value, dict) and set(value) == {TEXT_KEY} and allow_text:
        return [TextPart(str(value[TEXT_KEY]))]
    if params.output_mode == "native":
        return [TextPart(text)]
    raise UnexpectedModelBehavior(f"the model answered with no offered tool ({sorted(offered)})", body=text)


def _user_text(part: UserPromptPart) -> str:
    if isinstance(part.content, str):
        return part.content
    texts = [item for item in part.content if isinstance(item, str)]
    if len(texts) != len(part.content):
        kinds = sorted({type(item).__name__ for item in part.content if not isinstance(item, str)})
        raise ConfigurationError(f"an OpenVINO LLM takes text only; the prompt holds {', '.join(kinds)}")
    return "\n".join(texts)


def chat_messages(messages: Sequence[ModelMessage], instructions: str | None) -> list[dict[str, Any]]:
    """OpenAI-style chat messages (what chat templates read) for a pydantic-ai conversation."""
    from pydantic_ai.models import _sendable_request_parts

    out: list[dict[str, Any]] = []
    for message in messages:
        if isinstance(message, ModelRequest):
            for part in _sendable_request_parts(message.parts):
                if isinstance(part, SystemPromptPart):
                    out.append({"role": "system", "content": part.content})
                elif isinstance(part, UserPromptPart):
                    out.append({"role": "user", "content": _user_text(part)})
                elif isinstance(part, BaseToolReturnPart):
                    out.append(
                        {
                            "role": "tool",
                            "tool_call_id": part.tool_call_id,
                            "name": part.tool_name,
                            "content": part.model_response_str(),
                        }
                    )
                else:
                    raise ConfigurationError(
                        f"the OpenVINO LLM model cannot render a {getattr(part, 'part_kind', type(part))!r} "
                        "request part"
                    )
        else:
            texts, calls = [], []
            for rpart in message.parts:
                if isinstance(rpart, TextPart):
                    texts.append(rpart.content)
                elif isinstance(rpart, ToolCallPart):
                    calls.append(
                        {
                            "id": rpart.tool_call_id,
                            "type": "function",
                            "function": {"name": rpart.tool_name, "arguments": rpart.args_as_dict()},
                        }
                    )
                elif not isinstance(rpart, ThinkingPart):
                    log.debug("not sending a %s response part to the local LLM", rpart.part_kind)
            entry: dict[str, Any] = {"role": "assistant", "content": "\n\n".join(texts)}
            if calls:
                entry["tool_calls"] = calls
            out.append(entry)
    if instructions:
        first = next((i for i, m in enumerate(out) if m["role"] != "system"), len(out))
        out.insert(first, {"role": "system", "content": instructions})
    # Chat templates (Qwen2.5's among them) read one leading system message.
    systems = [m["content"] for m in out if m["role"] == "system"]
    rest = [m for m in out if m["role"] != "system"]
    return ([{"role": "system", "content": "\n\n".join(systems)}] if systems else []) + rest


def openai_tools(tools: Sequence[Any]) -> list[dict[str, Any]]:
    """The offered tools in the ``{"type": "function", "function": {...}}`` form chat templates read."""
    return [
        {
            "type": "function",
            "function": {
                "name": t.name,
                "description": t.description or "",
                "parameters": t.parameters_json_schema,
            },
        }
        for t in tools
    ]


class OpenVINOModel(Model):
    """A pydantic-ai model that generates with openvino-genai's ``LLMPipeline`` in this process.

    Building one loads nothing; the first request compiles the pipeline (kept warm, see
    :func:`get_pipeline_cache`). Request settings ``max_tokens``, ``temperature``, ``top_p``,
    ``seed`` and ``stop_sequences`` override the connection's.

    :param llm: where the model is and how to generate (a ``pydanticai_openvino`` connection's extra).
    :param cache: the pipeline cache; the process-wide one if ``None``.
    :param settings: default pydantic-ai model settings.
    """

    def __init__(
        self,
        llm: LLMSettings,
        *,
        cache: PipelineCache | None = None,
        settings: ModelSettings | None = None,
    ) -> None:
        profile = ModelProfile(
            supports_tools=True,
            supports_json_schema_output=True,
            supports_json_object_output=False,
            default_structured_output_mode="tool",
        )
        super().__init__(settings=settings, profile=profile)
        self.llm = llm
        self._cache = cache
        self._name = llm.model or Path(str(llm.model_dir)).name

    @property
    def model_name(self) -> str:
        """The registry name, or the model folder's name."""
        return self._name

    @property
    def system(self) -> str:
        """The provider, for OpenTelemetry's ``gen_ai.system``."""
        return "openvino"

    def generation_config(
        self, settings: ModelSettings | None, schema: dict[str, Any] | None, turn: int
    ) -> ov_genai.GenerationConfig:
        """The openvino-genai generation config for one request."""
        import openvino_genai as ov_genai

        s: dict[str, Any] = dict(settings or {})
        config = ov_genai.GenerationConfig()
        config.max_new_tokens = int(s.get("max_tokens", self.llm.max_new_tokens))
        config.do_sample = self.llm.do_sample
        if self.llm.do_sample:
            config.temperature = float(s.get("temperature", self.llm.temperature))
            config.top_p = float(s.get("top_p", self.llm.top_p))
            config.rng_seed = int(s.get("seed", self.llm.seed)) + turn
        if s.get("stop_sequences"):
            config.stop_strings = set(s["stop_sequences"])
        if schema is not None:
            config.structured_output_config = ov_genai.StructuredOutputConfig(json_schema=json.dumps(schema))
        return config

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        """Generate one response (see the module docstring)."""
        import anyio.to_thread
        import openvino_genai as ov_genai
        from pydantic_ai._instrumentation import get_instructions
        from pydantic_ai.exceptions import ModelAPIError

        model_settings, params = self.prepare_request(model_settings, model_request_parameters)
        turn = sum(1 for m in messages if isinstance(m, ModelResponse))
        schema = response_schema(params, model_settings)
        history = ov_genai.ChatHistory(chat_messages(messages, get_instructions(messages, params)))
        tools = openai_tools(offered_tools(params, model_settings)[0])
        if tools:
            history.set_tools(tools)
        config = self.generation_config(model_settings, schema, turn)
        folder, device, _ = self.llm.resolve()
        loaded = (self._cache or get_pipeline_cache()).get(folder, device, self.llm.properties)

        def generate() -> Any:
            with loaded.lock:
                return loaded.pipeline.generate(history, config)

        try:
            result = await anyio.to_thread.run_sync(generate)
        except RuntimeError as err:
            raise ModelAPIError(self.model_name, f"OpenVINO generation failed: {err}") from err
        text = str(result.texts[0])
        metrics = result.perf_metrics
        generated = int(metrics.get_num_generated_tokens())
        log.info(
            "LLM %s: %s input + %s generated tokens, TTFT %.0f ms, %.1f tokens/s",
            self.model_name,
            metrics.get_num_input_tokens(),
            generated,
            metrics.get_ttft().mean,
            metrics.get_throughput().mean,
        )
        parts = parse_response(text, params, f"ov-{turn}-{time.time_ns():x}", model_settings)
        return ModelResponse(
            parts=parts,
            usage=RequestUsage(input_tokens=int(metrics.get_num_input_tokens()), output_tokens=generated),
            model_name=self.model_name,
            provider_name="openvino",
            finish_reason="length" if generated >= config.max_new_tokens else "stop",
        )

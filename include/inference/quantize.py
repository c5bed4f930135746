"""INT8 for embedding models: NNCF post-training quantization, used only if the accuracy gate passes.

A registry model with ``precision: int8`` gets, once per converted IR, an INT8 copy made by
``nncf.quantize`` (transformer preset, calibrated on the gate's probe texts and on
:data:`NATURAL_TEXTS`, each text alone) and a
verdict from :func:`include.inference.gate.accuracy_gate`: the INT8 model as it will run
(OpenVINO's default precision, bf16 on AMX CPUs) against the strict-f32 model, cosine per
probe over every token length of the sweep (8..128). Each probe is embedded alone, so a
batch is exactly that many tokens wide, and all probes are embedded again in length-sorted
batches; both must pass. That matters: OpenVINO 2026.4.1's INT8 model in bf16 mode returns
wrong embeddings for a text of exactly 32 tokens (cosine ~0.9 here) while every other length
stays above 0.99, which neither a corpus mean nor padded batches show.

The verdict (:class:`Int8Decision`) is written next to the IR (``int8-gate-<threshold>.json``)
with the INT8 IR (:data:`INT8_XML`), so the quantization and the gate run once per model,
not per process. A rejected or impossible INT8 (NNCF not installed: it is in the ``convert``
extra, not the runtime image) falls back to ``auto`` with the reason in the log.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel

from include.inference.convert import ConvertedModel, _locked
from include.inference.gate import GateResult, accuracy_gate, length_probes

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from include.inference.registry import ModelSpec
    from include.inference.runtime import TextEncoder

log = logging.getLogger(__name__)

#: Bump when the quantization recipe changes: old verdicts are then ignored.
QUANTIZER_VERSION = "2"
INT8_XML = f"model-int8-v{QUANTIZER_VERSION}.xml"
#: Every n-th probe length calibrates the quantizer (the gate still checks every length).
CALIBRATION_STRIDE = 1
#: Natural sentences calibrate the quantizer too (word-list probes alone give an INT8 model
#: that is poor on real text) and are gated, batched, next to the length probes.
NATURAL_TEXTS = (
    "I was charged twice for the same order on my credit card.",
    "My parcel has not arrived even though the tracking page said it would be delivered on Monday.",
    "Please cancel my subscription, I keep getting billed.",
    "The box was crushed and two of the glasses inside were broken when it finally arrived.",
    "How do I change the delivery address before the order ships?",
    "I forgot my password and the reset email never comes.",
    "The app crashes on the login screen after the latest update.",
    "Can I return a sweater that does not fit and get my money back?",
    "Where is my refund? It has been two weeks since you received the item.",
    "Your website shows a blank page at checkout on Firefox.",
    "Do you ship to Norway, and how long does it take?",
    "The invoice for March lists an item I never ordered, please correct it.",
    "Hi",
    "Thanks, that solved it!",
    "I have already contacted support twice by email without any answer, so a quick reply would "
    "help; the order number is 5512 and the courier says the address label was unreadable.",
    "What are your opening hours on public holidays?",
)
GATE_LENGTHS = range(8, 129)


class Int8Decision(BaseModel):
    """Whether a model runs its INT8 IR, and why.

    :param accepted: the INT8 IR passed the gate and is used.
    :param reason: one line for the log: the gate's numbers, or why INT8 was not tried.
    :param xml: the INT8 IR (when it was made).
    :param threshold: the cosine every probe needed.
    :param gate: the worse of the per-length and the batched gate results (when it ran).
    :param nncf: the NNCF version that quantized it.
    :param version: :data:`QUANTIZER_VERSION` when it was made.
    """

    accepted: bool
    reason: str
    xml: str | None = None
    threshold: float
    gate: GateResult | None = None
    nncf: str | None = None
    version: str = QUANTIZER_VERSION


def decision_path(folder: Path, threshold: float) -> Path:
    """Where the verdict for ``threshold`` is kept in a converted model's folder."""
    return folder / f"int8-gate-{threshold:g}.json"


def one_text_at_a_time(encoder: TextEncoder) -> Any:
    """An embed function that runs each text alone (its batch is exactly its own length wide)."""

    def embed(texts: list[str]) -> NDArray[np.float32]:
        return np.concatenate([encoder.embed([t]) for t in texts])

    return embed


def gate_candidate(candidate: TextEncoder, reference: TextEncoder, threshold: float) -> GateResult:
    """The gate over :data:`GATE_LENGTHS`, per length alone and in batches.

    Returns the worse of the two results, with the failing lengths of both and the lower
    cosine per length.
    """
    probes = length_probes(reference, GATE_LENGTHS)
    alone = accuracy_gate(one_text_at_a_time(candidate), one_text_at_a_time(reference), probes, threshold)
    batched = accuracy_gate(candidate.embed, reference.embed, probes, threshold)
    worse = alone if alone.min_cosine <= batched.min_cosine else batched
    return worse.model_copy(
        update={
            "passed": alone.passed and batched.passed,
            "failing_lengths": sorted(set(alone.failing_lengths) | set(batched.failing_lengths)),
            "cosines": {n: min(c, batched.cosines.get(n, c)) for n, c in alone.cosines.items()},
        }
    )


def quantize_ir(xml: Path, out_xml: Path, calibration: list[dict[str, NDArray[np.int64]]]) -> None:
    """NNCF post-training INT8 quantization of the IR at ``xml`` (transformer preset) into ``out_xml``.

    Written under a temporary name and renamed into place (``.xml`` after ``.bin``).

    :raises ImportError: NNCF is not installed.
    """
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(xml))
    quantized = nncf.quantize(
        model, nncf.Dataset(calibration), model_type=nncf.ModelType.TRANSFORMER, subset_size=len(calibration)
    )
    tmp = out_xml.with_name(f".tmp-{out_xml.name}")
    ov.save_model(quantized, str(tmp), compress_to_fp16=False)
    os.replace(tmp.with_suffix(".bin"), out_xml.with_suffix(".bin"))
    os.replace(tmp, out_xml)


def ensure_int8(
    spec: ModelSpec,
    converted: ConvertedModel,
    build: Any,
    reference: TextEncoder | None = None,
) -> Int8Decision:
    """The INT8 verdict for a converted model: cached, else quantize, gate and record it.

    :param spec: the registry spec (its ``gate_threshold``).
    :param converted: the converted f32 IR.
    :param build: ``build(xml, precision)`` compiles an IR into a :class:`TextEncoder`
        (``precision`` ``"auto"`` or ``"f32"``).
    :param reference: the strict-f32 encoder, if one is already compiled.
    """
    threshold = spec.gate_threshold
    path = decision_path(converted.folder, threshold)
    cached = _read_decision(path)
    if cached is not None:
        return cached
    try:
        import nncf
    except ImportError:
        return Int8Decision(
            accepted=False,
            threshold=threshold,
            reason="NNCF is not installed (the `convert` extra); INT8 was not tried",
        )
    with _locked(converted.folder.parent / f".{converted.folder.name}.int8.lock"):
        cached = _read_decision(path)
        if cached is not None:
            return cached
        started = time.monotonic()
        reference = reference or build(converted.xml, "f32")
        out_xml = converted.folder / INT8_XML
        if not (out_xml.is_file() and out_xml.with_suffix(".bin").is_file()):
            probes = length_probes(reference, GATE_LENGTHS[::CALIBRATION_STRIDE])
            ids, _ = reference.tokenize([probes[n] for n in sorted(probes)] + list(NATURAL_TEXTS))
            calibration = [reference.batches([seq])[1][0] for seq in ids]
            log.info("model %s: quantizing to INT8 with NNCF %s", spec.name, nncf.__version__)
            quantize_ir(converted.xml, out_xml, calibration)
        gate = gate_candidate(build(out_xml, "auto"), reference, threshold)
        verdict = (
            f"min cosine {gate.min_cosine:.5f} at {gate.worst_length} tokens, "
            f"mean {gate.mean_cosine:.5f}, threshold {threshold}"
        )
        if gate.passed:
            reason = f"INT8 passed the accuracy gate ({verdict})"
        else:
            reason = f"INT8 failed the accuracy gate at lengths {spans(gate.failing_lengths)} ({verdict})"
        decision = Int8Decision(
            accepted=gate.passed,
            reason=reason,
            xml=str(out_xml),
            threshold=threshold,
            gate=gate,
            nncf=str(nncf.__version__),
        )
        path.write_text(decision.model_dump_json(indent=2))
        log.info("model %s: %s (%.1f s)", spec.name, reason, time.monotonic() - started)
        return decision


def spans(lengths: list[int]) -> str:
    """``[8, 9, 10, 32]`` -> ``"[8-10, 32]"``: failing lengths, short enough for a log line."""
    parts: list[str] = []
    for n in sorted(lengths):
        if parts and parts[-1].split("-")[-1] == str(n - 1):
            parts[-1] = f"{parts[-1].split('-')[0]}-{n}"
        else:
            parts.append(str(n))
    return "[" + ", ".join(parts) + "]"


def _read_decision(path: Path) -> Int8Decision | None:
    try:
        decision = Int8Decision.model_validate(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None
    if decision.version != QUANTIZER_VERSION or (decision.xml and not Path(decision.xml).is_file()):
        return None
    return decision

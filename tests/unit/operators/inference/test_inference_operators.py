"""The inference operators over the in-process backend (a fake engine behind the real pool)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from include.errors import ConfigurationError
from include.inference import InvalidTextError, UnsupportedHardwareError
from include.inference import backend as backend_module
from include.inference.backend import LocalBackend
from include.inference.hardware import HardwareInfo
from include.inference.registry import ModelSpec
from include.inference.runtime import ModelPool, TextEncoder
from operators.inference import OpenVINOClassifyOperator, OpenVINOEmbedOperator, OpenVINORerankOperator
from operators.inference._common import coerce_texts
from tests.unit.include.inference.conftest import REGISTRY_YAML, TOKENIZER, RecordingRunner

INTEL = HardwareInfo(vendor="GenuineIntel", cpu_model="Xeon", cpus=2, flags=["amx_bf16"], precision="bf16")
AMD = HardwareInfo(vendor="AuthenticAMD", cpu_model="EPYC", cpus=2)


@pytest.fixture
def hardware() -> dict[str, HardwareInfo]:
    return {"info": INTEL}


@pytest.fixture
def pool(tmp_path: Path, hardware: dict[str, HardwareInfo], monkeypatch: pytest.MonkeyPatch) -> ModelPool:
    registry = tmp_path / "models.yaml"
    registry.write_text(REGISTRY_YAML)

    def load(spec: ModelSpec) -> TextEncoder:
        return TextEncoder(
            spec.name,
            TOKENIZER,
            RecordingRunner(),
            max_length=spec.max_length,
            max_batch=spec.max_batch,
            hardware=hardware["info"],
        )

    pool = ModelPool(loader=load, registry_path=registry)
    backend = LocalBackend(pool)
    monkeypatch.delenv("AGENTFLOW_INFERENCE_SOCKET", raising=False)  # no server: in-process
    monkeypatch.setattr(backend_module, "local_backend", lambda: backend)
    return pool


def _context(map_index: int = -1) -> Any:
    return {"ti": SimpleNamespace(dag_id="d", run_id="manual__1", task_id="embed", map_index=map_index)}


def test_defaults_are_the_openvino_pool_and_the_intel_queue() -> None:
    op = OpenVINOEmbedOperator(task_id="e", texts=["x"])
    assert (op.pool, op.queue) == ("openvino", "intel")
    assert OpenVINOClassifyOperator(task_id="c", texts=["x"], queue="other").queue == "other"
    assert "texts" in op.template_fields
    with pytest.raises(ValueError, match="on_invalid"):
        OpenVINOEmbedOperator(task_id="e2", texts=["x"], on_invalid="ignore")  # type: ignore[arg-type]


def test_embed_twice_in_one_process_loads_once(pool: ModelPool) -> None:
    first = OpenVINOEmbedOperator(task_id="e", texts=["hello there", "hi"], model="fake-a").execute(
        _context()
    )
    second = OpenVINOEmbedOperator(task_id="e", texts='["again"]', model="fake-a").execute(_context())
    assert first["count"] == 2
    assert first["dimension"] == 4
    assert first["path"] is None
    assert [row[0] for row in first["embeddings"]] == [4.0, 3.0]
    assert first["precision"] == "bf16"
    assert second["count"] == 1
    assert pool.loads == 1
    assert pool.hits >= 2


def test_large_results_go_to_a_file(pool: ModelPool, tmp_path: Path) -> None:
    op = OpenVINOEmbedOperator(
        task_id="e", texts=["a", "b", "c"], model="fake-a", max_xcom_values=8, output_dir=str(tmp_path)
    )
    result = op.execute(_context(map_index=3))
    assert result["embeddings"] is None
    path = Path(result["path"])
    assert path == tmp_path / "d" / "manual__1" / "embed-3.npy"
    assert np.load(path).shape == (3, 4)
    assert [p.name for p in path.parent.iterdir()] == ["embed-3.npy"]  # no temporary left


def test_invalid_texts_fail_by_default_and_can_be_skipped(pool: ModelPool) -> None:
    texts = ["fine", "", "also fine"]
    with pytest.raises(InvalidTextError, match="text 1: empty text"):
        OpenVINOEmbedOperator(task_id="e", texts=texts, model="fake-a").execute(_context())
    out = OpenVINOEmbedOperator(task_id="e", texts=texts, model="fake-a", on_invalid="skip").execute(
        _context()
    )
    assert out["invalid"] == {"1": "empty text"}  # JSON keys
    assert out["embeddings"][1] is None
    assert out["embeddings"][0][0] == 3.0
    assert out["embeddings"][2][0] == 4.0


def test_non_intel_hardware_fails_unless_the_policy_warns(
    pool: ModelPool, hardware: dict[str, HardwareInfo], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AGENTFLOW_NON_INTEL_POLICY", raising=False)
    hardware["info"] = AMD
    with pytest.raises(UnsupportedHardwareError, match="AuthenticAMD"):
        OpenVINOEmbedOperator(task_id="e", texts=["x"], model="fake-a").execute(_context())
    out = OpenVINOEmbedOperator(task_id="e", texts=["x"], model="fake-a", hardware_policy="warn").execute(
        _context()
    )
    assert out["count"] == 1


def test_classify_and_rerank(pool: ModelPool, tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text("model: fake-a\nlabels: {short: [hi, ok], long: [a much longer example text here]}\n")
    labels = OpenVINOClassifyOperator(
        task_id="c", texts=["yo", "another rather long sentence"], classifier=str(config)
    ).execute(_context())
    assert len(labels) == 2
    assert {"label", "score", "scores"} <= set(labels[0])
    skipped = OpenVINOClassifyOperator(
        task_id="c", texts=["yo", ""], classifier=str(config), on_invalid="skip"
    ).execute(_context())
    assert skipped[1] is None
    assert skipped[0] is not None
    hits = OpenVINORerankOperator(
        task_id="r", query="hello", documents=["x", "hello", "y z"], model="fake-a", top_k=2
    ).execute(_context())
    assert len(hits) == 2
    assert hits[0]["score"] >= hits[1]["score"]
    assert hits[0]["document"] == ["x", "hello", "y z"][hits[0]["index"]]
    assert pool.loads == 1


def test_coerce_texts() -> None:
    assert coerce_texts(["a", "b"]) == ["a", "b"]
    assert coerce_texts('["a", "b"]') == ["a", "b"]
    assert coerce_texts("one text") == ["one text"]
    with pytest.raises(ConfigurationError, match="list of strings"):
        coerce_texts(42)


def test_operator_modules_do_not_import_heavy_libraries() -> None:
    import subprocess

    code = (
        "import sys, operators.inference, include.inference.client; "
        "heavy = ('openvino', 'numpy', 'tokenizers', 'torch', 'transformers'); "
        "bad = [m for m in heavy if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_embedding_maps_over_shards() -> None:
    from airflow.sdk import DAG

    with DAG("shards", schedule=None) as dag:
        mapped = OpenVINOEmbedOperator.partial(task_id="embed", model="fake-a").expand(
            texts=[["a", "b"], ["c"]]
        )
    assert dag.task_dict["embed"] is mapped
    assert (mapped.pool, mapped.queue) == ("openvino", "intel")


def test_dag_default_args_win_over_the_inference_defaults() -> None:
    from airflow.sdk import DAG

    with DAG("chosen", schedule=None, default_args={"pool": "gpu_pool", "queue": "gpu"}):
        plain = OpenVINOEmbedOperator(task_id="plain", texts=["x"])
        mapped = OpenVINOEmbedOperator.partial(task_id="mapped").expand(texts=[["a"]])
    assert (plain.pool, plain.queue) == ("gpu_pool", "gpu")
    assert (mapped.pool, mapped.queue) == ("gpu_pool", "gpu")

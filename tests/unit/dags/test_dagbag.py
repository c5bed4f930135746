"""Every DAG imports cleanly and follows the project's DAG rules."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

ROOT = Path(__file__).resolve().parents[3]
DAGS_DIR = ROOT / "dags"
HEAVY_MODULES = {
    "openvino",
    "openvino_genai",
    "transformers",
    "torch",
    "numpy",
    "cassandra",
    "optimum",
    "nncf",
}
DAG_FILES = sorted(DAGS_DIR.glob("*.py"))


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    # known_pools makes a task naming a pool that config/pools.json does not create an import error.
    pools = set(json.loads((ROOT / "config" / "pools.json").read_text())) | {"default_pool"}
    return DagBag(dag_folder=str(DAGS_DIR), known_pools=pools)


def test_dag_files_exist() -> None:
    assert DAG_FILES, f"no DAG files in {DAGS_DIR}"


def test_no_import_errors(dagbag: DagBag) -> None:
    assert dagbag.import_errors == {}


def test_flagship_dag_is_loaded(dagbag: DagBag) -> None:
    assert "support_ticket_triage" in dagbag.dags


def test_every_dag_has_tags_retries_and_docs(dagbag: DagBag) -> None:
    assert dagbag.dags, "the DagBag is empty"
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert (dag.doc_md or "").strip(), f"{dag_id} has no doc_md"
        for task in dag.tasks:
            assert task.retries >= 1, f"{dag_id}.{task.task_id} has retries={task.retries}"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_no_heavy_import_at_module_level(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    offenders = []
    for node in tree.body:  # module level only; imports inside functions are the rule
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        else:
            continue
        offenders += [name for name in names if name.split(".")[0] in HEAVY_MODULES]
    assert not offenders, f"{path.name} imports {offenders} at module level; import inside the task"


def test_heavy_import_check_catches_offenders(tmp_path: Path) -> None:
    # The rule above must be able to fail: an offending file is detected.
    bad = tmp_path / "bad_dag.py"
    bad.write_text("import numpy as np\nfrom openvino import Core\n")
    with pytest.raises(AssertionError, match="numpy"):
        test_no_heavy_import_at_module_level(bad)

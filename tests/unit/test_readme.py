"""The README's authoring guide: its complete agent DAG imports as a valid DAG, in under 40 lines."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _guide_dag() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Writing an agent DAG") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "no python block in 'Writing an agent DAG'"
    return match.group(1)


def test_the_guide_dag_is_complete_and_short(tmp_path: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    code = _guide_dag()
    lines = [line for line in code.splitlines() if line.strip()]
    assert len(lines) < 40, f"{len(lines)} lines"
    (tmp_path / "ticket_replies.py").write_text(code)
    bag = DagBag(dag_folder=str(tmp_path))
    assert bag.import_errors == {}
    dag = bag.dags.get("ticket_replies")
    assert dag is not None
    assert set(dag.task_dict) == {"ticket", "draft", "approve", "reply", "publish"}
    assert type(dag.task_dict["draft"]).__name__ == "AgentflowAgentOperator"
    assert dag.task_dict["publish"].upstream_task_ids == {"approve", "reply"}

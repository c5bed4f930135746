"""A durable agent whose tool calls leave countable side effects (test DAG, not a use case).

Used by ``tests/integration/test_durable_resume.py``: the ``scripted_llm`` connection
(``pydanticai_scripted``) calls ``record_step`` once per turn with step 1, 2, ... Each call
appends ``"<step> <pid>"`` to ``$DURABLE_TEST_DIR/side_effects.log``. Steps after
``$DURABLE_TEST_BLOCK_AFTER`` wait for ``$DURABLE_TEST_DIR/gate`` before their side effect, so
the test can SIGKILL the task while the first steps are done and journaled and no later
step has started.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from airflow.providers.common.ai.operators.agent import AgentOperator
from airflow.sdk import dag
from pydantic_ai.toolsets import FunctionToolset

GATE_TIMEOUT_S = 300


def record_step(step: int) -> str:
    """Record that ``step`` ran (the side effect the test counts) and return a receipt."""
    workdir = Path(os.environ["DURABLE_TEST_DIR"])
    if step > int(os.environ["DURABLE_TEST_BLOCK_AFTER"]):
        deadline = time.monotonic() + GATE_TIMEOUT_S
        while not (workdir / "gate").exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"step {step}: no gate file in {workdir} after {GATE_TIMEOUT_S}s")
            time.sleep(0.05)
    with open(workdir / "side_effects.log", "a", encoding="utf-8") as log:
        log.write(f"{step} {os.getpid()}\n")
        log.flush()
        os.fsync(log.fileno())
    return f"receipt-{step}"


@dag(schedule=None, catchup=False, tags=["test"], default_args={"retries": 1}, doc_md=__doc__)
def durable_resume():
    AgentOperator(
        task_id="agent",
        llm_conn_id="scripted_llm",
        system_prompt="Run every step in order.",
        prompt="Run the steps.",
        toolsets=[FunctionToolset([record_step], id="steps")],
        durable=True,
    )


resume_dag = durable_resume()

if __name__ == "__main__":
    resume_dag.test()

"""
### Knowledge ingest

Loads the support knowledge base into the vector store (Cassandra 5 SAI ANN; the
embedded SQLite store without a Cassandra connection): the Markdown documents (by
default the corpus shipped in `include/knowledge/corpus/`) are split into shards, and
each shard is chunked at sentence boundaries, embedded with all-MiniLM-L6-v2 on OpenVINO
and upserted keyed by the SHA-256 of each chunk, so running it again writes nothing new.

* **plan_shards**: the document files, in shards of `shard_size`.
* **ingest_shard** (mapped, one task per shard): `KnowledgeIngestOperator` on the
  `openvino` pool and the `intel` Celery queue; the model stays warm in the node's
  inference server between tasks and runs.
* **report**: documents, chunks, written and unchanged, summed over the shards.

Agents search what it stored with `search_knowledge` (`AgentflowAgentOperator`,
`knowledge="vector"`, or `operators.toolsets.CassandraKnowledgeToolset`).
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import Param, dag, task

from operators.knowledge import KnowledgeIngestOperator

log = logging.getLogger(__name__)


@dag(
    schedule=None,
    catchup=False,
    tags=["agentflow", "flagship", "knowledge"],
    default_args={"retries": 2},
    params={
        "documents_dir": Param(None, type=["null", "string"], description="folder of *.md documents"),
        "shard_size": Param(4, type="integer", minimum=1, maximum=1000),
    },
    doc_md=__doc__,
)
def knowledge_ingest() -> None:
    @task
    def plan_shards(params: dict[str, Any]) -> list[list[str]]:
        """The documents to ingest, in shards of ``shard_size`` files."""
        from pathlib import Path

        from include.knowledge.corpus import CORPUS_DIR

        folder = Path(params["documents_dir"]) if params["documents_dir"] else CORPUS_DIR
        files = sorted(str(path) for path in folder.glob("*.md"))
        if not files:
            raise ValueError(f"no knowledge documents (*.md) in {folder}")
        size = int(params["shard_size"])
        shards = [files[i : i + size] for i in range(0, len(files), size)]
        log.info("%d documents in %d shards", len(files), len(shards))
        return shards

    ingested = KnowledgeIngestOperator.partial(task_id="ingest_shard").expand(documents=plan_shards())

    @task
    def report(results: list[dict[str, int]]) -> dict[str, int]:
        """Sum the shards' counts."""
        total = {
            key: sum(result[key] for result in results)
            for key in ("documents", "chunks", "written", "unchanged")
        }
        log.info("knowledge ingest: %s", total)
        return total

    report(ingested.output)


knowledge_ingest_dag = knowledge_ingest()

if __name__ == "__main__":
    knowledge_ingest_dag.test()

"""
### Knowledge ingest

Loads the support knowledge base into Cassandra: the Markdown documents (by default the
corpus shipped in `include/knowledge/corpus/`) are chunked at sentence boundaries,
embedded with all-MiniLM-L6-v2 on OpenVINO, and upserted into the vector store keyed by
the SHA-256 of each chunk, so running it again writes nothing new.

* **ingest_corpus**: `KnowledgeIngestOperator` on the `openvino` pool and the `intel`
  Celery queue; the model stays warm in the node's inference server between runs.

Agents search what it stored with `operators.toolsets.CassandraKnowledgeToolset`. Needs
the `cassandra_default` connection (the full stack: `make up`).
"""

from __future__ import annotations

from airflow.sdk import Param, dag

from operators.knowledge import KnowledgeIngestOperator


@dag(
    schedule=None,
    catchup=False,
    tags=["agentflow", "flagship", "knowledge"],
    default_args={"retries": 2},
    params={"documents_dir": Param(None, type=["null", "string"], description="folder of *.md documents")},
    doc_md=__doc__,
)
def knowledge_ingest() -> None:
    KnowledgeIngestOperator(task_id="ingest_corpus", documents_dir="{{ params.documents_dir or '' }}")


knowledge_ingest_dag = knowledge_ingest()

if __name__ == "__main__":
    knowledge_ingest_dag.test()

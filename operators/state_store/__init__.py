"""Airflow 3.3 state-store backends (AIP-103) on Cassandra.

``[state_store] backend = operators.state_store.cassandra.CassandraStoreBackend`` keeps task and
asset state (and so common.ai's ``durable=True`` journals) in Cassandra;
``[workers] state_store_backend = operators.state_store.cassandra.CassandraWorkerStoreBackend``
keeps the values in Cassandra and sends Airflow only a reference. Both reach Cassandra through
the ``cassandra_default`` connection.
"""

from __future__ import annotations

from operators.state_store.cassandra import CassandraStoreBackend, CassandraWorkerStoreBackend

__all__ = ["CassandraStoreBackend", "CassandraWorkerStoreBackend"]

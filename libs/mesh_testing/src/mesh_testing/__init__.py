"""Test harness for contract-mesh: real Kafka and PostgreSQL, polling helpers.

Fixtures (from the pytest plugin, loaded automatically once installed):
`kafka_bootstrap`, `postgres_url`, `postgres_sqlalchemy_url`.
"""

from mesh_testing.kafka import consume_all, create_topics, unique_name
from mesh_testing.ports import free_port
from mesh_testing.processes import stop_processes
from mesh_testing.waiting import wait_for

__all__ = ["consume_all", "create_topics", "free_port", "stop_processes", "unique_name", "wait_for"]

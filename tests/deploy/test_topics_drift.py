"""The committed Strimzi KafkaTopics are exactly what the topic catalog generates."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import yaml

from contract_schema.topics import CATALOG, all_topics

REPO = Path(__file__).resolve().parents[2]
GENERATOR = REPO / "deploy" / "k8s" / "generate_topics.py"
COMMITTED = REPO / "deploy" / "k8s" / "base" / "topics" / "kafkatopics.yaml"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_topics", GENERATOR)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_kafkatopics_match_the_catalog() -> None:
    wanted = _generator().render(all_topics())
    assert COMMITTED.read_text() == wanted, (
        "deploy/k8s/base/topics/kafkatopics.yaml drifted from contract_schema.topics: "
        "run `python deploy/k8s/generate_topics.py` and commit the result")


def test_every_catalog_topic_and_dlq_has_its_partitions_and_configs() -> None:
    docs = {d["metadata"]["name"]: d for d in yaml.safe_load_all(COMMITTED.read_text()) if d}
    assert set(docs) == {t.name for t in all_topics()}
    assert {t.dlq_name for t in CATALOG} <= set(docs)
    for topic in all_topics():
        spec = docs[topic.name]["spec"]
        assert spec["topicName"] == topic.name
        assert spec["partitions"] == topic.partitions
        assert topic.config().items() <= spec["config"].items()


def test_check_mode_fails_on_drift_and_passes_when_in_sync(tmp_path: Path) -> None:
    drifted = tmp_path / "kafkatopics.yaml"
    # One partition count changed behind the catalog's back, as a hand edit would.
    drifted.write_text(COMMITTED.read_text().replace("partitions: 6", "partitions: 12", 1))
    check = [sys.executable, str(GENERATOR), "--check", "--output", str(drifted)]
    failed = subprocess.run(check, capture_output=True, text=True, timeout=60)
    assert failed.returncode == 1
    assert "+  partitions: 6" in failed.stdout and "drifted from the catalog" in failed.stdout

    rewrite = subprocess.run([sys.executable, str(GENERATOR), "--output", str(drifted)],
                             capture_output=True, text=True, timeout=60)
    assert rewrite.returncode == 0
    assert subprocess.run(check, capture_output=True, text=True, timeout=60).returncode == 0
    assert drifted.read_text() == COMMITTED.read_text()

"""The Kustomize base and overlays render, validate against real Kubernetes schemas, and hold the
operational promises (probes, limits, security context, one autoscaler per Deployment, ...).

Core kinds are validated by kubeconform -strict against the Kubernetes v1.34 JSON schemas (from the
kubernetes-validate wheel, see deploy/tools/install.sh). The custom resources (Strimzi KafkaTopic,
KEDA ScaledObject and TriggerAuthentication) have no schema we can get here, so kubeconform skips
exactly those kinds by name and `check_custom_resource` below checks their structure.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

# The first test of a fresh machine also builds the pinned tools (deploy/tools/install.sh, ~4 min cold).
pytestmark = pytest.mark.timeout(900)

RENDER_TARGETS = ("base", "dev", "prod")  # as in conftest.py

SERVICES = ("contract-registry", "obligation-engine", "invoice-validator", "renewal-sync", "notifier")
CRD_KINDS = ("KafkaTopic", "ScaledObject", "TriggerAuthentication")
Doc = dict[str, Any]


def kubeconform(tools: Path, schemas: Path, manifest: str, *extra: str) -> subprocess.CompletedProcess[str]:
    location = f"{schemas}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json"
    return subprocess.run(
        [str(tools / "kubeconform"), "-strict", "-summary", "-output", "text", "-schema-location", location,
         "-skip", ",".join(CRD_KINDS), *extra, "-"],
        input=manifest, capture_output=True, text=True, timeout=60,
    )


def of_kind(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


# --- rendering and schema validation -------------------------------------------------------------

@pytest.mark.parametrize("target", sorted(RENDER_TARGETS))
def test_render_validates_against_kubernetes_schemas(target: str, renders: dict[str, str],
                                                     deploy_tools: Path, k8s_schema_dir: Path) -> None:
    done = kubeconform(deploy_tools, k8s_schema_dir, renders[target])
    assert done.returncode == 0, done.stdout + done.stderr
    summary = re.search(r"Valid: (\d+), Invalid: (\d+), Errors: (\d+), Skipped: (\d+)", done.stdout)
    assert summary, done.stdout
    valid, invalid, errors, skipped = map(int, summary.groups())
    assert (invalid, errors) == (0, 0)
    # Everything that is not a custom resource was really checked against a schema.
    docs_total = renders[target].count("\nkind: ") + renders[target].startswith("kind: ")
    assert valid + skipped == docs_total and valid >= 5 * 4 + 2


def test_schemas_are_real_and_strict(deploy_tools: Path, k8s_schema_dir: Path) -> None:
    """The validator can fail: a misspelled probe field, a wrong type and an unknown apiVersion are all caught."""
    bad = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  replicas: "two"
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      containers:
        - name: c
          image: i
          readinessProbe: {httpGet: {path: /readyz, port: 8080}, periodSecond: 5}
---
apiVersion: policy/v1beta7
kind: PodDisruptionBudget
metadata: {name: y}
spec: {maxUnavailable: 1}
"""
    done = kubeconform(deploy_tools, k8s_schema_dir, bad)
    assert done.returncode != 0
    assert "periodSecond" in done.stdout and "replicas" in done.stdout
    assert "could not find schema for PodDisruptionBudget" in done.stdout


# --- structure of the custom resources (no schema available: checked here) -----------------------

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
KEDA_KAFKA_KEYS = {
    "bootstrapServers", "consumerGroup", "topic", "lagThreshold", "activationLagThreshold", "offsetResetPolicy",
    "allowIdleConsumers", "excludePersistentLag", "scaleToZeroOnInvalidOffset", "limitToPartitionsWithLag",
    "partitionLimitation", "version", "sasl", "tls", "unsafeSsl",
}
KEDA_AUTH_PARAMETERS = {"sasl", "username", "password", "tls", "ca", "cert", "key", "keyPassword"}


def check_custom_resource(doc: Doc, docs: list[Doc]) -> list[str]:
    """Problems with one KafkaTopic / ScaledObject / TriggerAuthentication, as the operators would see them."""
    kind, name = doc["kind"], doc["metadata"]["name"]
    spec = doc.get("spec")
    problems: list[str] = []
    if not isinstance(spec, dict):
        return [f"{kind} {name}: no spec"]
    if kind == "KafkaTopic":
        if doc["apiVersion"] not in ("kafka.strimzi.io/v1beta2", "kafka.strimzi.io/v1"):
            problems.append(f"apiVersion {doc['apiVersion']}")
        if not DNS_SUBDOMAIN.match(name) or len(name) > 253:
            problems.append("name is not a DNS subdomain")
        if not doc["metadata"].get("labels", {}).get("strimzi.io/cluster"):
            problems.append("no strimzi.io/cluster label (the topic operator would ignore it)")
        for field in ("partitions", "replicas"):
            if not isinstance(spec.get(field), int) or spec[field] < 1:
                problems.append(f"spec.{field} must be a positive integer")
        if spec.get("topicName", name) != name and not isinstance(spec.get("topicName"), str):
            problems.append("spec.topicName")
        config = spec.get("config", {})
        if not all(isinstance(v, str | int | bool) for v in config.values()):
            problems.append("config values must be scalars")
        unknown_fields = set(spec) - {"topicName", "partitions", "replicas", "config"}
        if unknown_fields:
            problems.append(f"unknown spec fields {sorted(unknown_fields)}")
    elif kind == "ScaledObject":
        deployments = of_kind(docs, "Deployment")
        topics = {d["spec"].get("topicName", d["metadata"]["name"]): d for d in docs if d["kind"] == "KafkaTopic"}
        auths = of_kind(docs, "TriggerAuthentication")
        target = spec.get("scaleTargetRef", {})
        if target.get("kind", "Deployment") != "Deployment" or target.get("name") not in deployments:
            problems.append(f"scaleTargetRef {target} names no Deployment in the render")
        low, high = spec.get("minReplicaCount"), spec.get("maxReplicaCount")
        if not (isinstance(low, int) and isinstance(high, int) and 0 <= low <= high):
            problems.append(f"replica bounds {low}..{high}")
        triggers = spec.get("triggers") or []
        if not triggers:
            problems.append("no triggers")
        if not any(trigger.get("type") == "kafka" for trigger in triggers):
            problems.append("no kafka (consumer lag) trigger")
        for trigger in triggers:
            meta = trigger.get("metadata", {})
            if trigger.get("type") == "cpu":  # needs CPU requests on the target, a Utilization % value
                if trigger.get("metricType") != "Utilization" or not str(meta.get("value", "")).isdigit():
                    problems.append("cpu trigger needs metricType Utilization and a whole-number value")
                container = deployments.get(target.get("name"), {}).get("spec", {}).get("template", {}) \
                    .get("spec", {}).get("containers", [{}])[0]
                if "cpu" not in container.get("resources", {}).get("requests", {}):
                    problems.append("cpu trigger on a target without CPU requests")
                continue
            if trigger.get("type") != "kafka":
                problems.append(f"trigger type {trigger.get('type')}")
            if not all(isinstance(v, str) for v in meta.values()):
                problems.append("trigger metadata values must be strings")
            unknown = {k for k in meta if k.removesuffix("FromEnv") not in KEDA_KAFKA_KEYS}
            if unknown:
                problems.append(f"unknown kafka trigger metadata {sorted(unknown)}")
            if not ({"bootstrapServers", "bootstrapServersFromEnv"} & set(meta)) or "consumerGroup" not in meta:
                problems.append("kafka trigger needs bootstrapServers and consumerGroup")
            if not str(meta.get("lagThreshold", "")).isdigit():
                problems.append("lagThreshold must be a whole number")
            topic = meta.get("topic")
            if topic is not None and topic not in topics:
                problems.append(f"trigger topic {topic} is not a provisioned topic")
            elif topic is not None and isinstance(high, int) and high > topics[topic]["spec"]["partitions"]:
                problems.append(f"maxReplicaCount {high} > partitions of {topic}")
            ref = trigger.get("authenticationRef", {}).get("name")
            if ref is not None and ref not in auths:
                problems.append(f"authenticationRef {ref} is not in the render")
            if "bootstrapServersFromEnv" in meta:  # KEDA reads it from the target's container env
                target_doc = deployments.get(target.get("name"), {})
                if not target_doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers"):
                    problems.append("bootstrapServersFromEnv needs a target container")
    elif kind == "TriggerAuthentication":
        refs = spec.get("secretTargetRef", [])
        for ref in refs:
            if set(ref) != {"parameter", "name", "key"} or not all(isinstance(v, str) for v in ref.values()):
                problems.append(f"secretTargetRef entry {ref}")
            elif ref["parameter"] not in KEDA_AUTH_PARAMETERS:
                problems.append(f"unknown kafka auth parameter {ref['parameter']}")
        if len({r.get("parameter") for r in refs}) != len(refs):
            problems.append("a parameter is given twice")
    return [f"{kind} {name}: {p}" for p in problems]


@pytest.mark.parametrize("target", sorted(RENDER_TARGETS))
def test_custom_resources_are_well_formed(target: str, rendered_docs: dict[str, list[Doc]]) -> None:
    docs = rendered_docs[target]
    custom = [d for d in docs if d["kind"] in CRD_KINDS]
    assert custom, "the render has no custom resources at all"
    problems = [p for d in custom for p in check_custom_resource(d, docs)]
    assert problems == []


def test_custom_resource_check_catches_mistakes(rendered_docs: dict[str, list[Doc]]) -> None:
    docs = rendered_docs["prod"]
    scaled = dict(of_kind(docs, "ScaledObject")["invoice-validator"])
    scaled["spec"] = dict(scaled["spec"], scaleTargetRef={"name": "invoice-validatr"}, maxReplicaCount=12,
                          triggers=[{"type": "kafka", "metadata": {"consumerGroup": "g", "lagTreshold": "5",
                                                                   "topic": "ap.invoice.received.v1"}}])
    problems = " | ".join(check_custom_resource(scaled, docs))
    for expected in ("names no Deployment", "lagTreshold", "needs bootstrapServers", "maxReplicaCount 12"):
        assert expected in problems
    scaled["spec"] = dict(scaled["spec"], triggers=[{"type": "cpu", "metricType": "AverageValue",
                                                     "metadata": {"value": "70%"}}])
    problems = " | ".join(check_custom_resource(scaled, docs))
    assert "no kafka (consumer lag) trigger" in problems and "cpu trigger needs" in problems
    topic = dict(next(d for d in docs if d["kind"] == "KafkaTopic"))
    topic["metadata"] = {"name": "Bad_Name"}
    topic["spec"] = {"partitions": 0, "replicas": 3, "partition": 6}
    problems = " | ".join(check_custom_resource(topic, docs))
    for expected in ("DNS subdomain", "strimzi.io/cluster", "spec.partitions", "unknown spec fields"):
        assert expected in problems


# --- what every service gets ------------------------------------------------------------------------

def _container(deployment: Doc) -> Doc:
    containers: list[Doc] = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


@pytest.mark.parametrize("target", sorted(RENDER_TARGETS))
def test_every_service_has_deployment_service_pdb_policy_and_autoscaler(
        target: str, rendered_docs: dict[str, list[Doc]]) -> None:
    docs = rendered_docs[target]
    for kind in ("Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy"):
        assert set(of_kind(docs, kind)) == set(SERVICES), kind
    scaled = {d["spec"]["scaleTargetRef"]["name"] for d in of_kind(docs, "ScaledObject").values()}
    hpas = [d["spec"]["scaleTargetRef"]["name"] for d in of_kind(docs, "HorizontalPodAutoscaler").values()]
    # Exactly one autoscaler per Deployment: KEDA makes its own HPA, two would fight over replicas.
    assert Counter(list(scaled) + hpas) == Counter(SERVICES)
    assert (scaled, set(hpas)) == ((set(), set(SERVICES)) if target == "dev" else (set(SERVICES), set()))


@pytest.mark.parametrize("target", sorted(RENDER_TARGETS))
def test_deployments_probe_limit_and_harden(target: str, rendered_docs: dict[str, list[Doc]]) -> None:
    docs = rendered_docs[target]
    configmaps, secrets = of_kind(docs, "ConfigMap"), of_kind(docs, "Secret")
    for name, deployment in of_kind(docs, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        c = _container(deployment)
        assert c["command"] == [name]
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c["resources"][bound]), bound
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert any(m["mountPath"] == "/tmp" for m in c["volumeMounts"]), "read-only root needs a writable /tmp"
        config_refs = [s["configMapRef"]["name"] for s in c["envFrom"] if "configMapRef" in s]
        secret_refs = [s["secretRef"] for s in c["envFrom"] if "secretRef" in s]
        required = [ref["name"] for ref in secret_refs if not ref.get("optional")]
        optional = [ref["name"] for ref in secret_refs if ref.get("optional")]
        assert len(config_refs) == 1 and config_refs[0] in configmaps, "configuration from the rendered ConfigMap"
        assert optional == [f"contract-mesh-{name}"], "a service's own credentials, when it has any"
        # The shared Secret is rendered in dev only; base and prod expect it to exist in the cluster.
        assert len(required) == 1
        if target == "dev":
            assert required[0] in secrets
        else:
            assert required[0] == "contract-mesh-credentials" and not secrets
        assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"


@pytest.mark.parametrize("target", sorted(RENDER_TARGETS))
def test_selectors_of_services_pdbs_and_policies_match_the_pods(target: str,
                                                                 rendered_docs: dict[str, list[Doc]]) -> None:
    docs = rendered_docs[target]
    for name, deployment in of_kind(docs, "Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "contract-mesh"
        service = of_kind(docs, "Service")[name]
        assert service["spec"]["selector"].items() <= labels.items()
        assert service["spec"]["ports"][0]["targetPort"] == "http"
        for kind in ("PodDisruptionBudget", "NetworkPolicy"):
            doc = of_kind(docs, kind)[name]
            selector = doc["spec"]["selector" if kind == "PodDisruptionBudget" else "podSelector"]["matchLabels"]
            assert selector.items() <= labels.items(), kind
        policy = of_kind(docs, "NetworkPolicy")[name]["spec"]
        assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
        egress_ports = {p["port"] for rule in policy["egress"] for p in rule.get("ports", [])}
        assert {53, 9092, 5432} <= egress_ports


@pytest.mark.parametrize("target", sorted(RENDER_TARGETS))
def test_migration_job_runs_the_registry_migration(target: str, rendered_docs: dict[str, list[Doc]]) -> None:
    job = of_kind(rendered_docs[target], "Job")["contract-registry-migrate"]
    pod = job["spec"]["template"]["spec"]
    c = _container(job)
    assert c["command"] == ["contract-registry", "migrate"]
    assert pod["restartPolicy"] == "Never" and pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True


def test_overlays_differ_where_they_should(rendered_docs: dict[str, list[Doc]]) -> None:
    dev, prod = rendered_docs["dev"], rendered_docs["prod"]
    assert {d["metadata"].get("namespace") for d in dev if d["kind"] != "Namespace"} == {"contract-mesh-dev"}
    assert {d["metadata"].get("namespace") for d in prod if d["kind"] != "Namespace"} == {"contract-mesh"}
    assert {d["spec"]["replicas"] for d in dev if d["kind"] == "KafkaTopic"} == {1}
    assert {d["spec"]["replicas"] for d in prod if d["kind"] == "KafkaTopic"} == {3}
    prod_config = next(iter(of_kind(prod, "ConfigMap").values()))["data"]
    assert prod_config["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert prod_config["KAFKA_SASL_MECHANISM"].startswith("SCRAM-SHA-")
    for deployment in of_kind(prod, "Deployment").values():
        assert _container(deployment)["image"].endswith(":1.0.0")
        mounts = {m["mountPath"] for m in _container(deployment)["volumeMounts"]}
        assert prod_config["KAFKA_SSL_CA_LOCATION"].rsplit("/", 1)[0] in mounts
    assert {d["spec"]["minReplicaCount"] for d in of_kind(prod, "ScaledObject").values()} == {2}
    for ns in (of_kind(dev, "Namespace"), of_kind(prod, "Namespace")):
        assert next(iter(ns.values()))["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_kafka_topics_are_part_of_every_render(rendered_docs: dict[str, list[Doc]]) -> None:
    from contract_schema.topics import all_topics

    for docs in rendered_docs.values():
        assert set(of_kind(docs, "KafkaTopic")) == {t.name for t in all_topics()}



def test_managed_kafka_component_swaps_kafkatopics_for_a_provisioning_job(
        deploy_tools: Path, k8s_schema_dir: Path, tmp_path: Path, kustomize: Callable[[Path], str]) -> None:
    """An overlay for a non-Strimzi Kafka: no KafkaTopic left, the provisioning Job instead, still valid."""
    k8s = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: contract-mesh\n"
        f"resources:\n  - {os.path.relpath(k8s / 'overlays' / 'prod', tmp_path)}\n"
        f"components:\n  - {os.path.relpath(k8s / 'components' / 'managed-kafka', tmp_path)}\n")
    rendered = kustomize(tmp_path)
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    assert not of_kind(docs, "KafkaTopic")
    job = of_kind(docs, "Job")["mesh-provision-topics"]
    assert _container(job)["command"] == ["python", "-m", "mesh_common.provision"]
    assert job["metadata"]["namespace"] == "contract-mesh"
    done = kubeconform(deploy_tools, k8s_schema_dir, rendered)
    assert done.returncode == 0, done.stdout

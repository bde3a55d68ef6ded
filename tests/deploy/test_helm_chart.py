"""The Helm chart (deploy/helm/socd): lint, render, validate, and check what it renders.

Every values file in the chart's ``ci/`` folder is linted, rendered and validated with
``kubeconform -strict`` against the Kubernetes schemas of three releases and the
Prometheus Operator CRDs (no schema may be missing). The parsed manifests are then
checked for what the chart promises: hardened pods (non-root, read-only root
filesystem, every capability dropped, only NET_RAW added for the sensor, nothing
privileged), probes on /healthz and /readyz, a configuration socd itself accepts,
secrets only through secretKeyRef, pods that roll when the configuration changes, and
the shipped Prometheus alert rules.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import socd
from socd.kafka.client import KafkaClientConfig

from .conftest import (
    CHART,
    CI_VALUES,
    K8S_VERSIONS,
    NAMESPACE,
    REPO,
    K8sTools,
    Rendering,
    run_helm,
    template_args,
    write_values,
)

Render = Callable[..., Rendering]

# The first test provisions helm and kubeconform (scripts/k8s-tools.sh): on a machine
# without them that is a few minutes of `go install`, beyond the default 300 s timeout.
pytestmark = pytest.mark.timeout(1800)

CI_IDS = [p.name.removesuffix("-values.yaml") for p in CI_VALUES]
SENSOR_VALUES = CHART / "ci" / "sensor-values.yaml"
TLS_VALUES = CHART / "ci" / "tls-values.yaml"
SCALEOUT_VALUES = CHART / "ci" / "scaleout-values.yaml"
KAFKA_VALUES = CHART / "ci" / "kafka-values.yaml"
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")


def pod_specs(rendering: Rendering) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for workload in rendering.workloads():
        yield workload, workload["spec"]["template"]["spec"]


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def socd_configs(rendering: Rendering) -> dict[str, dict[str, Any]]:
    """ConfigMap name -> parsed socd.yaml."""
    return {cm["metadata"]["name"]: yaml.safe_load(cm["data"]["socd.yaml"])
            for cm in rendering.of_kind("ConfigMap") if "socd.yaml" in cm.get("data", {})}


def role_args(workload: dict[str, Any], kafka: bool) -> list[str]:
    """The `--role` a workload must pass: its component in Kafka mode, where the sensor
    is an intake too; none for the single pipeline."""
    component = workload["metadata"]["labels"]["app.kubernetes.io/component"]
    if component in ("intake", "worker"):
        return ["--role", component]
    return ["--role", "intake"] if kafka and component == "sensor" else []


def kafka_mode(rendering: Rendering) -> bool:
    return any(w["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"
               for w in rendering.workloads())


# --------------------------------------------------------------- the chart as a whole


def test_ci_values_files_cover_the_required_scenarios() -> None:
    assert {"minimal", "sensor", "tls", "scaleout", "kafka"} <= set(CI_IDS)


def test_app_version_is_the_socd_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == socd.__version__


def test_chart_alert_rules_are_the_shipped_file() -> None:
    shipped = REPO / "deploy" / "prometheus" / "socd-alerts.yml"
    copy = CHART / "files" / "socd-alerts.yml"
    assert copy.read_bytes() == shipped.read_bytes(), (
        "deploy/helm/socd/files/socd-alerts.yml differs from deploy/prometheus/socd-alerts.yml:"
        " copy the shipped file into the chart")


@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_helm_lint(k8s_tools: K8sTools, values: Path) -> None:
    proc = run_helm(k8s_tools, "lint", "--strict", str(CHART), "-f", str(values))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("kube_version", K8S_VERSIONS)
@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_kubeconform_strict(k8s_tools: K8sTools, render: Render, tmp_path: Path,
                            values: Path, kube_version: str) -> None:
    rendering = render([values], kube_version=kube_version)
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(rendering.text)
    proc = subprocess.run(
        [str(k8s_tools.kubeconform), "-strict", "-summary", "-kubernetes-version",
         kube_version, *k8s_tools.schema_locations(), str(manifest)],
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    count = len(rendering.docs)
    assert (f"{count} resources found in 1 file - Valid: {count}, Invalid: 0, Errors: 0, "
            "Skipped: 0") in proc.stdout, proc.stdout


def test_kubeconform_rejects_unknown_fields(k8s_tools: K8sTools, render: Render,
                                            tmp_path: Path) -> None:
    """The schemas are loaded and strict: a misspelt field fails validation."""
    rendering = render([SCALEOUT_VALUES])
    text = rendering.text.replace(
        "readOnlyRootFilesystem: true",
        "readOnlyRootFilesystem: true\n            readOnlyRootFS: true", 1)
    text = text.replace("jobLabel:", "jobLable:", 1)
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(text)
    proc = subprocess.run(
        [str(k8s_tools.kubeconform), "-strict", "-summary", "-kubernetes-version", "1.31.0",
         *k8s_tools.schema_locations(), str(manifest)],
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode != 0
    assert "readOnlyRootFS" in proc.stdout
    assert "jobLable" in proc.stdout


# ------------------------------------------------------------------------ security


@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_no_privileged_pod_and_hardened_containers(render: Render, values: Path) -> None:
    rendering = render([values])
    specs = list(pod_specs(rendering))
    assert specs
    for workload, spec in specs:
        where = f"{workload['kind']} {workload['metadata']['name']}"
        sensor = workload["kind"] == "DaemonSet"
        assert spec["automountServiceAccountToken"] is False, where
        assert not spec.get("hostPID"), where
        assert not spec.get("hostIPC"), where
        assert bool(spec.get("hostNetwork")) == sensor, where
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert not any("hostPath" in v for v in spec.get("volumes", [])), where
        for container in containers(spec):
            ctx = container["securityContext"]
            assert ctx["privileged"] is False, where
            assert ctx["allowPrivilegeEscalation"] is False, where
            assert ctx["readOnlyRootFilesystem"] is True, where
            assert ctx["capabilities"]["drop"] == ["ALL"], where
            assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}, where
            if sensor:
                assert ctx["capabilities"]["add"] == ["NET_RAW"], where
            else:
                assert "add" not in ctx["capabilities"], where
                assert ctx["runAsNonRoot"] is True, where
                assert spec["securityContext"]["runAsNonRoot"] is True, where
                assert spec["securityContext"]["runAsUser"] > 0, where
                assert ctx.get("runAsUser", 1) > 0, where


def test_sensor_daemonset_has_only_net_raw_on_the_host_network(render: Render) -> None:
    rendering = render([SENSOR_VALUES])
    ds = rendering.one("DaemonSet")
    spec = ds["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True
    assert spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    (container,) = spec["containers"]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["NET_RAW"]}
    assert spec["nodeSelector"] == {"soc.example/span-port": "true"}
    config = socd_configs(rendering)[f"{ds['metadata']['name']}"]
    assert config["collectors"] == {"sensor": {"type": "sensor", "interface": "ens224",
                                               "bpf_filter": "not port 22"}}
    assert config["log"]["level"] == "warning"  # sensor.config merged last
    assert config["http"]["host"] == "${SOCD_POD_IP}"
    env = {e["name"]: e for e in container["env"]}
    assert env["SOCD_POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"


@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_secrets_only_through_secret_key_refs(render: Render, values: Path) -> None:
    rendering = render([values])
    assert not rendering.of_kind("Secret"), "the chart must not create Secrets"
    for workload, spec in pod_specs(rendering):
        for container in containers(spec):
            for env in container.get("env", []):
                if "value" in env:
                    assert env["name"] == "HOME", f"{workload['kind']}: plain env {env}"
                else:
                    source = env["valueFrom"]
                    assert set(source) <= {"secretKeyRef", "fieldRef"}, env
    secret_keys = {"password", "api_key", "bot_token", "token", "bearer_token", "hmac_secret"}

    def walk(node: Any, path: str) -> Iterator[tuple[str, Any]]:
        if isinstance(node, dict):
            for key, value in node.items():
                yield from walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                yield from walk(value, f"{path}[{i}]")
        else:
            yield path, node

    for name, config in socd_configs(rendering).items():
        for path, value in walk(config, name):
            leaf = path.rsplit(".", 1)[-1]
            if leaf in secret_keys:
                assert ENV_REF.fullmatch(str(value)), f"{path} holds a literal secret"


def test_tls_values_wire_secret_env_and_certificates(render: Render) -> None:
    rendering = render([TLS_VALUES])
    workload = rendering.one("Deployment")
    spec = workload["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]
            if "valueFrom" in e}
    assert refs["SOCD_ES_API_KEY"] == {"name": "socd-elasticsearch", "key": "api-key"}
    assert refs["SOCD_TELEGRAM_BOT_TOKEN"] == {"name": "socd-telegram", "key": "bot-token"}
    assert set(refs) == {"SOCD_ES_API_KEY", "SOCD_MQTT_PASSWORD", "SOCD_SMTP_PASSWORD",
                         "SOCD_TELEGRAM_BOT_TOKEN", "SOCD_WEBHOOK_FIREWALL_TOKEN"}
    (config_volume,) = [v for v in spec["volumes"] if v["name"] == "config"]
    projected = {item["path"]
                 for source in config_volume["projected"]["sources"]
                 for kind in ("configMap", "secret") if kind in source
                 for item in source[kind]["items"]}
    config = socd_configs(rendering)[workload["metadata"]["name"]]
    # Every certificate path in the configuration is a file of the projected volume.
    tls_paths = set(re.findall(r"/etc/socd/(tls/[\w./-]+)", yaml.safe_dump(config)))
    assert tls_paths
    assert tls_paths <= projected
    assert container["image"].endswith("@sha256:" + "0" * 64)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 9797, "webhook": 8443}
    service = rendering.one("Service", workload["metadata"]["name"])
    assert {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        "http": (9797, "http"), "webhook": (443, "webhook")}


# --------------------------------------------------------------- probes and config


@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_probes_on_healthz_and_readyz(render: Render, values: Path) -> None:
    rendering = render([values])
    configs = socd_configs(rendering)
    for workload, spec in pod_specs(rendering):
        (container,) = spec["containers"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            assert container[probe]["httpGet"]["port"] == "http"
        # The container serves what the probes ask: its socd.yaml listens on that port.
        (config_volume,) = [v for v in spec["volumes"] if v["name"] == "config"]
        cm_name = config_volume["projected"]["sources"][0]["configMap"]["name"]
        config = configs[cm_name]
        assert config["http"]["port"] == ports["http"]
        assert config["http"].get("enabled", True) is True
        assert container["args"] == ["run", "-c", "/etc/socd/socd.yaml",
                                     *role_args(workload, kafka_mode(rendering))]
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert config["state_dir"] in mounts
        assert mounts["/etc/socd"]["readOnly"] is True
        assert "/tmp" in mounts  # the root filesystem is read-only
        drain = config.get("pipeline", {}).get("drain_timeout_secs", 30)
        assert spec["terminationGracePeriodSeconds"] > drain, workload["metadata"]["name"]


@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_rendered_configuration_passes_socd_check_config(render: Render, tmp_path: Path,
                                                         values: Path) -> None:
    """socd's own loader accepts each rendered socd.yaml with the mounted files."""
    rendering = render([values])
    rules = [cm for cm in rendering.of_kind("ConfigMap")
             if cm["metadata"]["name"].endswith("-rules")]
    env = dict(os.environ, HOME=str(tmp_path), SOCD_POD_IP="127.0.0.1")
    for _workload, spec in pod_specs(rendering):
        for container in containers(spec):
            for var in container.get("env", []):
                if "valueFrom" in var and "secretKeyRef" in var["valueFrom"]:
                    env[var["name"]] = "test-" + var["name"].lower()
    checked = 0
    for name, config in socd_configs(rendering).items():
        root = tmp_path / name
        etc, state = root / "etc", root / "state"
        state.mkdir(parents=True)
        etc.mkdir()
        for cm in rules:
            (etc / "rules.d").mkdir(exist_ok=True)
            for file, text in cm["data"].items():
                (etc / "rules.d" / file).write_text(text)
        text = (yaml.safe_dump(config).replace("/etc/socd", str(etc))
                .replace("/var/lib/socd", str(state)))
        (etc / "socd.yaml").write_text(text)
        proc = subprocess.run([str(Path(sys.executable).parent / "socd"), "check-config", "-c",
                               str(etc / "socd.yaml")], capture_output=True, text=True,
                              env=env, timeout=120, check=False)
        assert proc.returncode == 0, f"{name}: {proc.stdout}{proc.stderr}"
        checked += 1
    assert checked == len(socd_configs(rendering)) >= 1


def test_custom_rules_are_mounted_and_loaded(render: Render) -> None:
    rendering = render([SCALEOUT_VALUES])
    workload = rendering.one("StatefulSet")
    config = socd_configs(rendering)[workload["metadata"]["name"]]
    assert config["rules"]["paths"] == ["builtin", "/etc/socd/rules.d"]
    rules_cm = rendering.one("ConfigMap", f"{workload['metadata']['name']}-rules")
    assert set(rules_cm["data"]) == {"local.yaml"}
    (volume,) = [v for v in workload["spec"]["template"]["spec"]["volumes"]
                 if v["name"] == "config"]
    items = [i for s in volume["projected"]["sources"] if "configMap" in s
             for i in s["configMap"]["items"]]
    assert {"key": "local.yaml", "path": "rules.d/local.yaml"} in items


# -------------------------------------------------------------------- roll on change


def checksum(rendering: Rendering) -> dict[str, str]:
    return {w["metadata"]["name"]: w["spec"]["template"]["metadata"]["annotations"][
        "checksum/config"] for w in rendering.workloads()}


def test_checksum_annotation_rolls_pods_on_config_and_rules_changes(render: Render) -> None:
    base = checksum(render([SENSOR_VALUES]))
    assert len(base) == 2
    changed = checksum(render([SENSOR_VALUES], sets={"config.log.level": "debug"}))
    assert all(changed[name] != base[name] for name in base)
    rules = checksum(render([SENSOR_VALUES], sets={"rules.extra\\.yaml": "rules: []"}))
    assert all(rules[name] != base[name] for name in base)
    # Scaling is not a configuration change.
    assert checksum(render([SENSOR_VALUES], sets={"replicaCount": "2"})) == base


# ---------------------------------------------------------------- scale-out and state


def test_statefulset_scale_out(render: Render) -> None:
    rendering = render([SCALEOUT_VALUES])
    sts = rendering.one("StatefulSet")
    assert sts["spec"]["replicas"] == 3
    assert sts["spec"]["serviceName"] == f"{sts['metadata']['name']}-headless"
    assert rendering.one("Service", sts["spec"]["serviceName"])["spec"]["clusterIP"] == "None"
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "state"
    assert claim["spec"]["storageClassName"] == "fast-ssd"
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert not rendering.of_kind("PersistentVolumeClaim")
    pdb = rendering.one("PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == sts["spec"]["selector"]["matchLabels"]
    config = socd_configs(rendering)[sts["metadata"]["name"]]
    topics = [s["topic"] for s in config["collectors"]["broker"]["subscriptions"]]
    assert topics
    assert all(t.startswith("$share/socd/") for t in topics)
    assert sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 75


def test_single_replica_has_no_pdb_and_emptydir_state(render: Render) -> None:
    rendering = render([CHART / "ci" / "minimal-values.yaml"])
    assert not rendering.of_kind("PodDisruptionBudget")
    spec = rendering.one("Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes["state"]
    assert "emptyDir" in volumes["tmp"]


def test_deployment_persistence_is_one_claim_with_recreate(render: Render) -> None:
    rendering = render(sets={"persistence.enabled": "true"})
    deployment = rendering.one("Deployment")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    claim = rendering.one("PersistentVolumeClaim")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["state"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]


# --------------------------------------------------------------------- Kafka mode


def component(doc: dict[str, Any]) -> str:
    return str(doc["metadata"]["labels"]["app.kubernetes.io/component"])


def test_kafka_mode_runs_intake_and_workers_instead_of_the_pipeline(render: Render) -> None:
    rendering = render([KAFKA_VALUES])
    workloads = {component(w): w for w in rendering.workloads()}
    assert set(workloads) == {"intake", "worker", "sensor"}
    intake, worker = workloads["intake"], workloads["worker"]
    assert intake["metadata"]["name"] == "soc-socd-intake"
    assert worker["metadata"]["name"] == "soc-socd-worker"
    assert (intake["kind"], worker["kind"]) == ("StatefulSet", "StatefulSet")
    assert (intake["spec"]["replicas"], worker["spec"]["replicas"]) == (2, 3)
    for workload in (intake, worker):
        selector = workload["spec"]["selector"]["matchLabels"]
        assert selector["app.kubernetes.io/component"] == component(workload)
        assert workload["spec"]["template"]["metadata"]["labels"].items() >= selector.items()
        # Each pod keeps its own state_dir (spool, journal).
        (claim,) = workload["spec"]["volumeClaimTemplates"]
        assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    (intake_c,) = intake["spec"]["template"]["spec"]["containers"]
    (worker_c,) = worker["spec"]["template"]["spec"]["containers"]
    assert intake_c["args"][-2:] == ["--role", "intake"]
    assert worker_c["args"][-2:] == ["--role", "worker"]
    assert worker_c["resources"]["requests"] == {"cpu": "1", "memory": "512Mi"}
    assert intake_c["resources"] == yaml.safe_load((CHART / "values.yaml").read_text())[
        "resources"]
    # One configuration for both roles (and the sensor, an intake too).
    config = socd_configs(rendering)["soc-socd"]
    assert config["cluster"] == {
        "kafka": {"bootstrap_servers": ["kafka-0.kafka.soc.svc:9093",
                                        "kafka-1.kafka.soc.svc:9093",
                                        "kafka-2.kafka.soc.svc:9093"],
                  "tls": {"ca_file": "/etc/socd/tls/kafka/ca.crt",
                          "cert_file": "/etc/socd/tls/kafka/tls.crt",
                          "key_file": "/etc/socd/tls/kafka/tls.key"},
                  "sasl": {"mechanism": "SCRAM-SHA-512", "username": "${SOCD_KAFKA_USERNAME}",
                           "password": "${SOCD_KAFKA_PASSWORD}"}},
        "topic_prefix": "soc-hanoi", "partitions": 12, "replication_factor": 3}
    assert "role" not in config["cluster"]  # each workload passes --role
    # The client settings are what socd's shared Kafka client model accepts.
    client = KafkaClientConfig.model_validate(config["cluster"]["kafka"])
    assert client.security_protocol == "SASL_SSL"
    sensor_config = socd_configs(rendering)["soc-socd-sensor"]
    assert sensor_config["cluster"] == config["cluster"]
    (sensor_c,) = workloads["sensor"]["spec"]["template"]["spec"]["containers"]
    assert sensor_c["args"][-2:] == ["--role", "intake"]


def test_kafka_credentials_come_from_the_named_secrets(render: Render) -> None:
    rendering = render([KAFKA_VALUES])
    for workload in rendering.workloads():
        spec = workload["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]
                if "secretKeyRef" in e.get("valueFrom", {})}
        assert refs["SOCD_KAFKA_USERNAME"] == {"name": "socd-kafka-user", "key": "username"}
        assert refs["SOCD_KAFKA_PASSWORD"] == {"name": "socd-kafka-user", "key": "password"}
        (volume,) = [v for v in spec["volumes"] if v["name"] == "config"]
        secrets = [src["secret"] for src in volume["projected"]["sources"] if "secret" in src]
        assert {"name": "socd-kafka-tls", "items": [
            {"key": "ca.crt", "path": "tls/kafka/ca.crt"},
            {"key": "tls.crt", "path": "tls/kafka/tls.crt"},
            {"key": "tls.key", "path": "tls/kafka/tls.key"}]} in secrets
    # Plaintext without SASL: no Kafka variables, no TLS section, no secret volume.
    plain = render([KAFKA_VALUES], sets={"cluster.kafka.tls.enabled": "false",
                                         "cluster.kafka.tls.existingSecret": "",
                                         "cluster.kafka.tls.certKey": "",
                                         "cluster.kafka.tls.keyKey": "",
                                         "cluster.kafka.sasl.mechanism": "",
                                         "cluster.kafka.sasl.existingSecret": ""})
    assert set(socd_configs(plain)["soc-socd"]["cluster"]["kafka"]) == {"bootstrap_servers"}
    assert "SOCD_KAFKA_PASSWORD" not in plain.text
    assert "tls/kafka" not in plain.text
    # TLS with the system CAs: an empty tls section.
    system = render([KAFKA_VALUES], sets={"cluster.kafka.tls.existingSecret": "",
                                          "cluster.kafka.tls.certKey": "",
                                          "cluster.kafka.tls.keyKey": ""})
    assert socd_configs(system)["soc-socd"]["cluster"]["kafka"]["tls"] == {}


def test_kafka_mode_services_budgets_and_monitoring(render: Render) -> None:
    rendering = render([KAFKA_VALUES])
    services = {s["metadata"]["name"]: s for s in rendering.of_kind("Service")}
    assert set(services) == {"soc-socd", "soc-socd-intake-headless", "soc-socd-worker",
                             "soc-socd-sensor"}
    # Senders (syslog, webhook) and port-forwards reach the intake.
    assert services["soc-socd"]["spec"]["selector"]["app.kubernetes.io/component"] == "intake"
    worker_svc = services["soc-socd-worker"]
    assert worker_svc["spec"]["clusterIP"] == "None"
    assert worker_svc["spec"]["selector"]["app.kubernetes.io/component"] == "worker"
    statefulsets = {component(w): w for w in rendering.of_kind("StatefulSet")}
    assert statefulsets["worker"]["spec"]["serviceName"] == "soc-socd-worker"
    assert statefulsets["intake"]["spec"]["serviceName"] == "soc-socd-intake-headless"
    budgets = {b["metadata"]["name"]: b["spec"] for b in rendering.of_kind("PodDisruptionBudget")}
    assert budgets["soc-socd-intake"]["minAvailable"] == 1
    # One worker at a time: each eviction is one rebalance.
    assert budgets["soc-socd-worker"]["maxUnavailable"] == 1
    assert "minAvailable" not in budgets["soc-socd-worker"]
    for name, budget in budgets.items():
        assert budget["selector"]["matchLabels"] == statefulsets[name.rsplit("-", 1)[1]][
            "spec"]["selector"]["matchLabels"]
    # Prometheus scrapes every role: the intake's Service and the workers' (not the
    # intake's headless one, which would scrape the intake twice).
    monitor = rendering.one("ServiceMonitor")
    scraped = set(monitor["spec"]["selector"]["matchExpressions"][0]["values"])
    assert {component(s) for s in services.values()} & scraped == {"intake", "worker", "sensor"}
    policy = rendering.one("NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchExpressions"] == [{
        "key": "app.kubernetes.io/component", "operator": "In", "values": ["intake", "worker"]}]
    assert {"to": [{"ipBlock": {"cidr": "10.30.0.0/24"}}],
            "ports": [{"port": 9093, "protocol": "TCP"}]} in policy["egress"]
    # The pipeline's budget is not rendered.
    assert "soc-socd" not in budgets


def test_kafka_mode_with_deployments_and_no_budget_for_one_worker(render: Render,
                                                                  tmp_path: Path) -> None:
    path = write_values(tmp_path, {"cluster": {
        "enabled": True, "kafka": {"bootstrapServers": ["kafka:9092"]},
        "intake": {"replicaCount": 1}, "worker": {"replicaCount": 1}}})
    rendering = render([path])
    workloads = {component(w): w for w in rendering.workloads()}
    assert set(workloads) == {"intake", "worker"}
    assert {w["kind"] for w in workloads.values()} == {"Deployment"}
    assert not rendering.of_kind("PodDisruptionBudget")
    assert {s["metadata"]["name"] for s in rendering.of_kind("Service")} == {
        "soc-socd", "soc-socd-worker"}
    config = socd_configs(rendering)["soc-socd"]
    assert config["cluster"] == {"kafka": {"bootstrap_servers": ["kafka:9092"]},
                                 "topic_prefix": "socd", "partitions": 12,
                                 "replication_factor": 3}
    # Workers listen on nothing but http: the webhook/syslog ports are the intake's.
    ports = render([path, TLS_VALUES])
    by_role = {component(w): w["spec"]["template"]["spec"]["containers"][0]["ports"]
               for w in ports.workloads()}
    assert [p["name"] for p in by_role["worker"]] == ["http"]
    assert [p["name"] for p in by_role["intake"]] == ["http", "webhook"]


def test_kafka_mode_keeps_extra_cluster_settings_from_config(render: Render,
                                                             tmp_path: Path) -> None:
    path = write_values(tmp_path, {
        "cluster": {"enabled": True, "kafka": {"bootstrapServers": ["kafka:9092"]},
                    "partitions": 24, "worker": {"replicaCount": 24}},
        "config": {"cluster": {"rebuild_slack_secs": 600, "partitions": 6}}})
    cluster = socd_configs(render([path]))["soc-socd"]["cluster"]
    assert cluster["rebuild_slack_secs"] == 600
    assert cluster["partitions"] == 24  # the chart's value wins: the render checks it


# -------------------------------------------------------- monitoring and networking


def test_prometheus_rule_is_the_shipped_alert_file(render: Render) -> None:
    rendering = render([SCALEOUT_VALUES])
    rule = rendering.one("PrometheusRule")
    shipped = yaml.safe_load((REPO / "deploy" / "prometheus" / "socd-alerts.yml").read_text())
    assert rule["spec"]["groups"] == shipped["groups"]
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_service_monitor_scrapes_pipeline_and_sensor_as_job_socd(render: Render) -> None:
    rendering = render([SENSOR_VALUES])
    monitor = rendering.one("ServiceMonitor")
    assert monitor["spec"]["jobLabel"] == "app.kubernetes.io/name"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "http"
    assert endpoint["path"] == "/metrics"
    selector = monitor["spec"]["selector"]
    components = set(selector["matchExpressions"][0]["values"])
    selected = [s for s in rendering.of_kind("Service")
                if selector["matchLabels"].items() <= s["metadata"]["labels"].items()
                and s["metadata"]["labels"]["app.kubernetes.io/component"] in components]
    assert len(selected) == 2
    for service in selected:
        # job = the jobLabel's value, which the alert rules match with job=~".*socd.*".
        assert service["metadata"]["labels"]["app.kubernetes.io/name"] == "socd"
        assert "http" in {p["name"] for p in service["spec"]["ports"]}


def test_network_policy(render: Render) -> None:
    default = render([CHART / "ci" / "minimal-values.yaml"]).one("NetworkPolicy")
    assert default["spec"]["egress"] == [{}]
    (ingress,) = default["spec"]["ingress"]
    assert ingress["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
            } in ingress["from"]
    policy = render([SCALEOUT_VALUES]).one("NetworkPolicy")
    assert {"ipBlock": {"cidr": "10.20.0.0/16"}} in policy["spec"]["ingress"][0]["from"]
    egress = policy["spec"]["egress"]
    assert {} not in egress
    assert [p["port"] for p in egress[0]["ports"]] == [53, 53]
    assert egress[1] == {"to": [{"ipBlock": {"cidr": "10.10.0.0/24"}}],
                         "ports": [{"port": 1883, "protocol": "TCP"},
                                   {"port": 9200, "protocol": "TCP"}]}
    tls = render([TLS_VALUES]).one("NetworkPolicy")
    assert {"port": "webhook", "protocol": "TCP"} in tls["spec"]["ingress"][0]["ports"]


# ---------------------------------------------------- values that helm must refuse


@pytest.mark.parametrize(("sets", "message"), [
    ({"replicaCont": "2"}, "Additional property replicaCont is not allowed"),
    ({"networkPolicy.egres.allowAll": "false"}, "Additional property egres is not allowed"),
    ({"sensor.interfce": "eth1"}, "Additional property interfce is not allowed"),
    ({"kind": "DaemonSet"}, "kind"),
    ({"securityContext.runAsUser": "0"}, "runAsUser"),
    ({"rules.bad name": "x"}, "rules"),
    ({"persistence.enabled": "true", "replicaCount": "2"}, "kind: StatefulSet"),
    ({"config.sinks.es.api_key": "${SOCD_UNSET_KEY}"}, "SOCD_UNSET_KEY"),
    ({"config.state_dir": "/data"}, "config.state_dir is set by the chart"),
    ({"config.http.port": "8080"}, "set ports.http only"),
    ({"cluster.enabled": "true"}, "cluster.kafka.bootstrapServers"),
    ({"cluster.enabled": "true", "cluster.kafka.bootstrapServers[0]": "k:9092",
      "cluster.partitions": "2"}, "cluster.worker.replicaCount (3) is more than "
                                  "cluster.partitions (2)"),
    ({"cluster.enabled": "true", "cluster.kafka.bootstrapServers[0]": "k:9092",
      "persistence.enabled": "true"}, "persistence.enabled in Kafka mode needs kind: "
                                      "StatefulSet"),
    ({"cluster.enabled": "true", "cluster.kafka.bootstrapServers[0]": "k:9092",
      "cluster.kafka.sasl.mechanism": "PLAIN"}, "cluster.kafka.sasl.existingSecret"),
    ({"cluster.kafka.sasl.mechanism": "GSSAPI"}, "mechanism"),
    ({"cluster.kafka.bootstrapServers[0]": "kafka"}, "bootstrapServers"),
    ({"cluster.kafka.bootstrap": "k:9092"}, "Additional property bootstrap is not allowed"),
    ({"cluster.worker.replicas": "2"}, "Additional property replicas is not allowed"),
    ({"cluster.enabled": "true", "cluster.kafka.bootstrapServers[0]": "k:9092",
      "cluster.kafka.tls.enabled": "true", "cluster.kafka.tls.existingSecret": "s",
      "cluster.kafka.tls.certKey": "tls.crt"}, "set both certKey and keyKey"),
    ({"config.cluster.partitions": "3"}, "config.cluster is set but cluster.enabled is false"),
])
def test_helm_refuses_bad_values(k8s_tools: K8sTools, sets: dict[str, str],
                                 message: str) -> None:
    proc = run_helm(k8s_tools, *template_args(sets=sets))
    assert proc.returncode != 0, f"helm accepted {sets}"
    assert message in proc.stderr, proc.stderr


def test_values_file_typo_is_refused(k8s_tools: K8sTools, tmp_path: Path) -> None:
    path = write_values(tmp_path, {"metrics": {"serviceMonitor": {"enabeld": True}}})
    proc = run_helm(k8s_tools, *template_args([path]))
    assert proc.returncode != 0
    assert "enabeld" in proc.stderr


def test_secret_reference_satisfies_the_env_check(render: Render, tmp_path: Path) -> None:
    path = write_values(tmp_path, {
        "config": {"sinks": {"es": {"api_key": "${SOCD_ES_API_KEY}"}}},
        "secrets": {"elasticsearch": {"existingSecret": "es-creds",
                                      "env": {"SOCD_ES_API_KEY": "key"}}}})
    rendering = render([path])
    (container,) = rendering.one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert {"name": "SOCD_ES_API_KEY",
            "valueFrom": {"secretKeyRef": {"name": "es-creds", "key": "key"}}} in container["env"]


# -------------------------------------------------------------------------- NOTES


def render_notes(k8s_tools: K8sTools, tmp_path: Path, values: list[Path]) -> str:
    """NOTES.txt for ``values``. helm template does not render NOTES.txt: render its
    named template in a copy of the chart, inside a ConfigMap."""
    chart = tmp_path / "socd"
    if not chart.exists():
        shutil.copytree(CHART, chart)
        (chart / "templates" / "notes-under-test.yaml").write_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
            "data: {notes: {{ include \"socd.notes\" . | toJson }}}\n")
    args = [arg for path in values for arg in ("-f", str(path))]
    proc = run_helm(k8s_tools, "template", "soc", str(chart), "--namespace", NAMESPACE,
                    *args, "--show-only", "templates/notes-under-test.yaml")
    assert proc.returncode == 0, proc.stderr
    return str(yaml.safe_load(proc.stdout)["data"]["notes"])


def test_notes_warn_about_unshared_topics_when_scaled(k8s_tools: K8sTools,
                                                      tmp_path: Path) -> None:
    path = write_values(tmp_path, {"replicaCount": 2, "config": {"collectors": {"broker": {
        "subscriptions": [{"topic": "edr/servers/#", "decoder": "server_edr"},
                          {"topic": "$share/socd/ids/#", "decoder": "json"}]}}}})
    notes = render_notes(k8s_tools, tmp_path, [path])
    assert 'subscribes to "edr/servers/#" without $share/' in notes
    assert "ids/#" not in notes
    assert "emptyDir" in notes
    assert "kubectl -n socd port-forward svc/soc-socd 9797" in notes
    # $share splits a source's events over the replicas: stateful rules are per replica.
    assert "keep their state per replica" in notes
    assert "docs/scaling.md" in notes


def test_notes_in_kafka_mode(k8s_tools: K8sTools, tmp_path: Path) -> None:
    notes = render_notes(k8s_tools, tmp_path, [KAFKA_VALUES])
    assert "deployed in Kafka mode" in notes
    assert "StatefulSet soc-socd-intake, 2 replica(s)" in notes
    assert "StatefulSet soc-socd-worker, 3 replica(s) on 12 partitions" in notes
    assert "exec statefulset/soc-socd-intake -- socd check-config" in notes
    # Intake keeps no rule state: $share between intake replicas is the right thing.
    assert "with 2 intake replicas" in notes
    assert "keep their state per replica" not in notes

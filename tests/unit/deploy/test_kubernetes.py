"""deploy/k8s: every manifest parses, and the names, keys, ports and queues they refer to exist."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic_settings import BaseSettings

from deploy.definitions.users import dev_password
from devtools.cluster import NET_TICKTIME_SECONDS
from devtools.servers.rabbitmq import DEAD_LETTER_CONFIRM_MS
from services.api.settings import ApiSettings, ProjectorSettings
from services.mailer.settings import MailerSettings
from services.payments.sandbox.settings import SandboxSettings
from services.payments.settings import PaymentsSettings
from services.relay.app import RelaySettings
from services.verifier.settings import VerifierSettings
from shared.manifest import service_names
from shared.settings import CoreSettings
from shared.system_topology import SYSTEM_TOPOLOGY

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deploy" / "k8s"
KUSTOMIZATION: dict[str, Any] = yaml.safe_load((K8S / "kustomization.yaml").read_text())

# Deployment -> settings class, RabbitMQ user, Postgres role, queues it consumes.
WORKLOADS: dict[str, tuple[type[BaseSettings], str | None, str | None, set[str]]] = {
    "api": (ApiSettings, "api", "api", set()),
    "projector": (ApiSettings, "api", "api", {"api.projector"}),
    "relay": (RelaySettings, "relay", "relay", set()),
    "verifier": (VerifierSettings, "verifier", "verifier", {"verifier.documents"}),
    "payments": (PaymentsSettings, "payments", "payments", {"payments.applications"}),
    "mailer": (
        MailerSettings,
        "mailer",
        "mailer",
        {s.name for s in SYSTEM_TOPOLOGY.queues if s.service == "mailer"},
    ),
    "sandbox": (SandboxSettings, None, None, set()),
    "migrate": (CoreSettings, None, None, set()),
}


def load_resources() -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    for name in KUSTOMIZATION["resources"]:
        for document in yaml.safe_load_all((K8S / name).read_text()):
            if document:
                document["_file"] = name
                documents.append(document)
    return documents


RESOURCES = load_resources()


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in RESOURCES if r["kind"] == kind}


def secret_keys() -> dict[str, set[str]]:
    """Every Secret the base creates, with its keys (generated ones included)."""
    keys = {
        name: set(s.get("stringData", {})) | set(s.get("data", {}))
        for name, s in of_kind("Secret").items()
    }
    for generator in KUSTOMIZATION.get("secretGenerator", []):
        names = {entry.partition("=")[0] for entry in generator.get("files", [])}
        names |= {entry.partition("=")[0] for entry in generator.get("literals", [])}
        keys[generator["name"]] = names
    return keys


def pod_templates() -> Iterator[tuple[str, dict[str, Any]]]:
    for kind in ("Deployment", "Job"):
        for name, workload in of_kind(kind).items():
            yield name, workload["spec"]["template"]


def containers(template: dict[str, Any]) -> list[dict[str, Any]]:
    spec = template["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def plain_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def test_every_resource_and_generated_file_exists() -> None:
    for name in KUSTOMIZATION["resources"]:
        assert (K8S / name).is_file(), name
    for generator in KUSTOMIZATION.get("secretGenerator", []):
        for entry in generator.get("files", []):
            assert (K8S / entry.rpartition("=")[2]).is_file(), entry
    assert RESOURCES, "no manifests"
    for resource in RESOURCES:
        assert {"apiVersion", "kind", "metadata"} <= set(resource), resource["_file"]


def test_the_base_builds_with_kustomize() -> None:
    kubectl = shutil.which("kubectl")
    kustomize = shutil.which("kustomize")
    if kubectl is None and kustomize is None:
        pytest.skip("neither kubectl nor kustomize is installed")
    command = [kubectl, "kustomize", str(K8S)] if kubectl else [str(kustomize), "build", str(K8S)]
    built = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert built.returncode == 0, built.stderr
    documents = [d for d in yaml.safe_load_all(built.stdout) if d]
    assert len(documents) == len(RESOURCES) + len(KUSTOMIZATION.get("secretGenerator", []))
    for document in documents:
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == "admissions", document["kind"]
    images = {
        c["image"]
        for d in documents
        if d["kind"] in {"Deployment", "Job"}
        for c in d["spec"]["template"]["spec"]["containers"]
    }
    assert "admissions-app:dev" in images  # the images transformer reached the workloads


def test_the_system_is_all_there() -> None:
    deployments = of_kind("Deployment")
    assert set(WORKLOADS) - {"migrate"} <= set(deployments)
    assert "migrate" in of_kind("Job")
    assert set(of_kind("Namespace")) == {"admissions"}
    assert "admissions-config" in of_kind("ConfigMap")
    assert deployments["relay"]["spec"]["replicas"] == 2
    (rabbitmq,) = [r for r in RESOURCES if r["kind"] == "RabbitmqCluster"]
    assert rabbitmq["apiVersion"] == "rabbitmq.com/v1beta1"
    assert rabbitmq["spec"]["replicas"] == 3
    plugins = set(rabbitmq["spec"]["rabbitmq"]["additionalPlugins"])
    assert {"rabbitmq_shovel", "rabbitmq_shovel_management"} <= plugins
    (postgres,) = [r for r in RESOURCES if r["kind"] == "Cluster"]
    assert postgres["apiVersion"] == "postgresql.cnpg.io/v1"
    assert postgres["spec"]["instances"] == 3
    blobs = of_kind("PersistentVolumeClaim")["blobs"]
    assert blobs["spec"]["accessModes"] == ["ReadWriteMany"]


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_every_command_is_a_module_of_the_code(name: str) -> None:
    template = dict(pod_templates())[name]
    (container,) = template["spec"]["containers"]
    command = container["command"]
    assert command[:2] == ["python", "-m"], command
    spec = importlib.util.find_spec(command[2])
    assert spec is not None, command[2]
    if spec.submodule_search_locations is not None:
        assert importlib.util.find_spec(f"{command[2]}.__main__") is not None


def test_every_config_secret_volume_and_account_reference_exists() -> None:
    config_maps = {name: set(c["data"]) for name, c in of_kind("ConfigMap").items()}
    secrets = secret_keys()
    claims = set(of_kind("PersistentVolumeClaim"))
    accounts = set(of_kind("ServiceAccount"))
    for name, template in pod_templates():
        spec = template["spec"]
        assert spec.get("serviceAccountName") in accounts, f"{name}: service account"
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, name
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets, name
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps, name
        for container in containers(template):
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in config_maps, name
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets, name
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {})
                if "secretKeyRef" in ref:
                    key = ref["secretKeyRef"]
                    assert key["key"] in secrets.get(key["name"], set()), f"{name}: {key}"
                if "configMapKeyRef" in ref:
                    key = ref["configMapKeyRef"]
                    assert key["key"] in config_maps.get(key["name"], set()), f"{name}: {key}"
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{name}: mount {mount['name']}"


def test_deployments_select_their_own_pods() -> None:
    for name, deployment in of_kind("Deployment").items():
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert matches(selector, deployment["spec"]["template"]["metadata"]["labels"]), name
    selectors = [
        tuple(sorted(d["spec"]["selector"]["matchLabels"].items()))
        for d in of_kind("Deployment").values()
    ]
    assert len(selectors) == len(set(selectors)), "two Deployments select the same pods"


def test_services_reach_pods_on_ports_they_listen_on() -> None:
    deployments = of_kind("Deployment")
    for name, service in of_kind("Service").items():
        selector = service["spec"]["selector"]
        targets = [
            d
            for d in deployments.values()
            if matches(selector, d["spec"]["template"]["metadata"]["labels"])
        ]
        assert len(targets) == 1, f"Service {name} selects {len(targets)} Deployments"
        ports = [
            port
            for c in targets[0]["spec"]["template"]["spec"]["containers"]
            for port in c.get("ports", [])
        ]
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            if isinstance(target, str):
                assert target in {p.get("name") for p in ports}, f"{name}: {target}"
            else:
                assert target in {p["containerPort"] for p in ports}, f"{name}: {target}"
    for name, budget in of_kind("PodDisruptionBudget").items():
        selector = budget["spec"]["selector"]["matchLabels"]
        assert any(
            matches(selector, d["spec"]["template"]["metadata"]["labels"])
            for d in deployments.values()
        ), name


def test_probes_use_declared_ports_and_the_api_health_endpoints() -> None:
    for name, template in pod_templates():
        for container in containers(template):
            port_names = {p.get("name") for p in container.get("ports", [])}
            port_numbers = {p["containerPort"] for p in container.get("ports", [])}
            for probe in ("readinessProbe", "livenessProbe"):
                http = container.get(probe, {}).get("httpGet")
                if http:
                    assert http["port"] in port_names | port_numbers, f"{name} {probe}"
    (api,) = of_kind("Deployment")["api"]["spec"]["template"]["spec"]["containers"]
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_autoscalers_target_existing_deployments_without_fighting() -> None:
    deployments = of_kind("Deployment")
    hpa = of_kind("HorizontalPodAutoscaler")
    scaled = of_kind("ScaledObject")
    assert hpa["api"]["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "api",
    }
    assert hpa["api"]["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    targets = [h["spec"]["scaleTargetRef"]["name"] for h in hpa.values()]
    targets += [s["spec"]["scaleTargetRef"]["name"] for s in scaled.values()]
    assert len(targets) == len(set(targets)), "two autoscalers on one Deployment"
    for target in targets:
        assert target in deployments, target
        # an autoscaled Deployment leaves the count to its autoscaler
        assert "replicas" not in deployments[target]["spec"], target


def test_keda_scales_each_worker_on_the_queues_it_consumes() -> None:
    topology_queues = {spec.name for spec in SYSTEM_TOPOLOGY.queues}
    authentications = of_kind("TriggerAuthentication")
    secrets = secret_keys()
    scaled_queues: dict[str, set[str]] = {}
    for scaled in of_kind("ScaledObject").values():
        target = scaled["spec"]["scaleTargetRef"]["name"]
        for trigger in scaled["spec"]["triggers"]:
            assert trigger["type"] == "rabbitmq"
            metadata = trigger["metadata"]
            assert metadata["queueName"] in topology_queues, metadata["queueName"]
            assert metadata["mode"] == "QueueLength"
            assert int(metadata["value"]) > 0
            authentication = authentications[trigger["authenticationRef"]["name"]]
            for ref in authentication["spec"]["secretTargetRef"]:
                assert ref["key"] in secrets[ref["name"]], ref
            scaled_queues.setdefault(target, set()).add(metadata["queueName"])
    expected = {name: queues for name, (_, _, _, queues) in WORKLOADS.items() if queues}
    assert scaled_queues == expected


def test_keda_reads_depths_as_the_service_that_consumes_them() -> None:
    deployments = of_kind("Deployment")
    for scaled in of_kind("ScaledObject").values():
        target = scaled["spec"]["scaleTargetRef"]["name"]
        (container,) = deployments[target]["spec"]["template"]["spec"]["containers"]
        (url_key,) = [
            e["valueFrom"]["secretKeyRef"]["key"]
            for e in container["env"]
            if e["name"] == "RABBITMQ_URL"
        ]
        for trigger in scaled["spec"]["triggers"]:
            name = trigger["authenticationRef"]["name"]
            (ref,) = of_kind("TriggerAuthentication")[name]["spec"]["secretTargetRef"]
            assert (ref["parameter"], ref["key"]) == ("host", url_key), target


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_services_get_only_variables_they_read_and_log_in_as_themselves(name: str) -> None:
    settings_class, broker_user, db_role, _ = WORKLOADS[name]
    template = dict(pod_templates())[name]
    (container,) = template["spec"]["containers"]
    fields = {field.upper() for field in settings_class.model_fields}
    names = {variable["name"] for variable in container.get("env", [])}
    assert not names - fields, f"{name}: {sorted(names - fields)} are not settings"
    secrets = of_kind("Secret")["admissions-secrets"]["stringData"]
    by_name = {
        v["name"]: secrets[v["valueFrom"]["secretKeyRef"]["key"]]
        for v in container.get("env", [])
        if "secretKeyRef" in v.get("valueFrom", {})
    }
    rabbitmq = next(r for r in RESOURCES if r["kind"] == "RabbitmqCluster")["metadata"]["name"]
    if broker_user is not None:
        url = urlsplit(by_name["RABBITMQ_URL"])
        assert (url.username, url.password) == (broker_user, dev_password(broker_user))
        assert (url.hostname, url.path) == (rabbitmq, "/admissions")
    if db_role is not None:
        assert f"{db_role.upper()}_DB_PASSWORD" in by_name
        other_roles = set(service_names()) - {db_role}
        assert not {f"{r.upper()}_DB_PASSWORD" for r in other_roles} & names


def test_database_and_broker_addresses_are_the_clusters_services() -> None:
    config = of_kind("ConfigMap")["admissions-config"]["data"]
    secrets = of_kind("Secret")
    postgres = next(r for r in RESOURCES if r["kind"] == "Cluster")
    rabbitmq = next(r for r in RESOURCES if r["kind"] == "RabbitmqCluster")
    # CloudNativePG's read-write Service is <cluster>-rw
    assert urlsplit(config["DATABASE_URL"]).hostname == f"{postgres['metadata']['name']}-rw"
    assert urlsplit(config["DATABASE_URL"]).password is None
    admin = urlsplit(secrets["admissions-secrets"]["stringData"]["ADMIN_DATABASE_URL"])
    superuser = secrets[postgres["spec"]["superuserSecret"]["name"]]["stringData"]
    assert (admin.username, admin.password) == (superuser["username"], superuser["password"])
    assert admin.hostname == f"{postgres['metadata']['name']}-rw"
    assert urlsplit(config["RABBITMQ_MANAGEMENT_URL"]).hostname == rabbitmq["metadata"]["name"]
    assert urlsplit(config["PSP_URL"]).hostname in of_kind("Service")
    assert config["SMTP_HOST"] in of_kind("Service")


def test_rabbitmq_imports_the_definitions_it_mounts() -> None:
    rabbitmq = next(r for r in RESOURCES if r["kind"] == "RabbitmqCluster")
    config = rabbitmq["spec"]["rabbitmq"]["additionalConfig"]
    (folder,) = re.findall(r"^load_definitions\s*=\s*(\S+)", config, flags=re.MULTILINE)
    pod = rabbitmq["spec"]["override"]["statefulSet"]["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == "rabbitmq"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == folder]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    secret = volume["secret"]["secretName"]
    assert secret_keys()[secret] == {"definitions.json"}
    generator = next(g for g in KUSTOMIZATION["secretGenerator"] if g["name"] == secret)
    # kustomize does not rewrite names inside custom resources: the name must stay as written
    assert generator["options"]["disableNameSuffixHash"] is True


def test_rabbitmq_notices_a_partition_and_resends_dead_letters_as_the_tested_cluster_does(
    tmp_path: Path,
) -> None:
    # The two settings deploy/CLUSTER.md asks of a production cluster, with the values the
    # cluster chaos runs (devtools/cluster.py) were measured with
    rabbitmq = next(r for r in RESOURCES if r["kind"] == "RabbitmqCluster")["spec"]["rabbitmq"]
    conf = dict(
        (key.strip(), value.strip())
        for key, _, value in (
            line.partition("=") for line in rabbitmq["additionalConfig"].splitlines() if line
        )
    )
    assert conf["net_ticktime"] == str(NET_TICKTIME_SECONDS)
    advanced = rabbitmq["advancedConfig"]
    (timeout,) = re.findall(r"\{dead_letter_worker_publisher_confirm_timeout,\s*(\d+)\}", advanced)
    assert int(timeout) == DEAD_LETTER_CONFIRM_MS
    erl = shutil.which("erl")
    if erl is None:
        return
    # And advanced.config is Erlang terms that RabbitMQ can read (erl comes with it)
    (tmp_path / "advanced.config").write_text(advanced)
    read = (
        '{ok, [Terms]} = file:consult("advanced.config"), '
        "Rabbit = proplists:get_value(rabbit, Terms), "
        'io:format("~p", [proplists:get_value(dead_letter_worker_publisher_confirm_timeout, '
        "Rabbit)]), halt()."
    )
    done = subprocess.run(
        [erl, "-noshell", "-eval", read],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, str(DEAD_LETTER_CONFIRM_MS)), done.stderr


def test_the_definitions_copy_matches_deploy_rabbitmq() -> None:
    copy = (K8S / "rabbitmq" / "definitions.json").read_text()
    original = (ROOT / "deploy" / "rabbitmq" / "definitions.json").read_text()
    assert copy == original, (
        "deploy/k8s/rabbitmq/definitions.json differs from deploy/rabbitmq/definitions.json: "
        "cp deploy/rabbitmq/definitions.json deploy/k8s/rabbitmq/definitions.json"
    )


def test_uploads_are_shared_by_api_and_verifier_at_blob_dir() -> None:
    blob_dir = of_kind("ConfigMap")["admissions-config"]["data"]["BLOB_DIR"]
    templates = dict(pod_templates())
    for name in ("api", "verifier"):
        spec = templates[name]["spec"]
        (container,) = spec["containers"]
        (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == blob_dir]
        (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
        assert volume["persistentVolumeClaim"]["claimName"] == "blobs", name
    assert not [
        m for m in templates["api"]["spec"]["containers"][0]["volumeMounts"] if m.get("readOnly")
    ]


# APP_ENV=production (config.yaml): each service refuses to start without the secrets its
# settings class lists; the projector is the API's ProjectorSettings (no HTTP secrets).
PRODUCTION_SETTINGS: dict[str, type[CoreSettings]] = {
    "api": ApiSettings,
    "projector": ProjectorSettings,
    "relay": RelaySettings,
    "verifier": VerifierSettings,
    "payments": PaymentsSettings,
    "mailer": MailerSettings,
}


@pytest.mark.parametrize("name", sorted(PRODUCTION_SETTINGS))
def test_each_service_is_given_every_secret_production_requires(name: str) -> None:
    settings_class = PRODUCTION_SETTINGS[name]
    required = {"RABBITMQ_URL", *(s.upper() for s in settings_class.production_secrets)}
    (container,) = dict(pod_templates())[name]["spec"]["containers"]
    config = of_kind("ConfigMap")["admissions-config"]["data"]
    given = {variable["name"] for variable in container.get("env", [])} | set(config)
    assert not required - given, f"{name} is not given {sorted(required - given)}"


def test_the_projector_sweeps_the_uploads_it_can_write() -> None:
    # The blob sweeper runs in the projector (the API's role knows which blobs rows reference)
    blob_dir = of_kind("ConfigMap")["admissions-config"]["data"]["BLOB_DIR"]
    spec = dict(pod_templates())["projector"]["spec"]
    (container,) = spec["containers"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == blob_dir]
    assert not mount.get("readOnly")
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    assert volume["persistentVolumeClaim"]["claimName"] == "blobs"

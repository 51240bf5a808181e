"""Policy checks on the deployment files: Kubernetes manifests, kustomizations, compose.

How the images are built (one template, no test tooling) is checked by test_images.py.

Every manifest is read from disk with PyYAML. The overlays are also rendered with
`kubectl kustomize` (or `kustomize build`) when one is on PATH, and the same policies are checked
on the result; without one those tests skip and the raw files are still checked.
"""

from __future__ import annotations

import base64
import importlib
import ipaddress
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[1]
REPO = DEPLOY.parent
K8S = DEPLOY / "kubernetes"
BASE = K8S / "base"
COMPONENTS = K8S / "components"
OVERLAYS = K8S / "overlays"
COMPOSE = DEPLOY / "docker-compose.yml"

SERVICES = {  # Deployment name -> (source folder, Python module)
    "gateway": ("services/gateway", "autopay_gateway"),
    "mail-ingest": ("services/mail-ingest", "autopay_mail_ingest"),
    "matcher": ("services/matcher", "autopay_matcher"),
    "notifier": ("services/notifier", "autopay_notifier"),
    "merchant-bot": ("services/merchant-bot", "autopay_merchant_bot"),
}
SINGLE_POLLER = "merchant-bot"  # Telegram long polling: one getUpdates consumer per bot token
ADMIN_PORT = 8081  # the gateway's admin API, for the merchant bot only
# https://core.telegram.org/resources/cidr.txt (network-policy-merchant-bot.yaml says more).
TELEGRAM_CIDRS = {
    "91.108.56.0/22",
    "91.108.4.0/22",
    "91.108.8.0/22",
    "91.108.16.0/22",
    "91.108.12.0/22",
    "149.154.160.0/20",
    "91.105.192.0/23",
    "91.108.20.0/22",
    "185.76.151.0/24",
    "2001:b28:f23d::/48",
    "2001:b28:f23f::/48",
    "2001:67c:4e8::/48",
    "2001:b28:f23c::/48",
    "2a0a:f280::/32",
}
API_TELEGRAM_ORG = "149.154.167.220"
PUBLIC_IPV6_ADDRESS = "2606:4700:4700::1111"
APP_NAMESPACE = "autopay"
NOT_IN_ANY_KUSTOMIZATION = {BASE / "secret.example.yaml"}
EXTRA_CONFIG_KEYS = {"AUTOPAY_STREAM_REPLICAS", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"}
PRIVATE_ADDRESSES = [
    "10.1.2.3",
    "172.16.0.1",
    "172.31.255.1",
    "192.168.1.1",
    "100.64.0.1",
    "169.254.169.254",
    "127.0.0.1",
]
PUBLIC_ADDRESS = "142.250.150.108"


# --- loading -------------------------------------------------------------------------------------


def load_docs(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def yaml_files() -> list[Path]:
    return [*sorted(p for ext in ("*.yaml", "*.yml") for p in K8S.rglob(ext)), COMPOSE]


@cache
def kustomization(folder: Path) -> dict:
    return load_docs(folder / "kustomization.yaml")[0]


def kustomization_folders() -> list[Path]:
    return sorted(p.parent for p in K8S.rglob("kustomization.yaml"))


def collect(folder: Path) -> list[dict]:
    """The objects a kustomization's resources and components declare, before any patch."""
    k = kustomization(folder)
    objects: list[dict] = []
    for entry in [*k.get("resources", []), *k.get("components", [])]:
        target = (folder / entry).resolve()
        if target.is_dir():
            objects += collect(target)
        else:
            objects += load_docs(target)
    return objects


def of_kind(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def renderer() -> list[str] | None:
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    return None


@cache
def rendered(overlay: str) -> list[dict]:
    command = renderer()
    if command is None:
        pytest.skip("neither kubectl nor kustomize is installed; raw manifests checked only")
    out = subprocess.run(
        [*command, str(OVERLAYS / overlay)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc is not None]


def base_objects() -> list[dict]:
    return collect(BASE)


def pod_spec(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def pod_labels(workload: dict) -> dict:
    return workload["spec"]["template"]["metadata"]["labels"]


def workloads(objects: list[dict]) -> Iterator[dict]:
    return (o for o in objects if o["kind"] in ("Deployment", "StatefulSet", "Job"))


# --- what the applications themselves say --------------------------------------------------------


def settings_fields(module: str) -> set[str]:
    from autopay_runtime.settings import ServiceSettings

    mod = importlib.import_module(f"{module}.settings")
    classes = [
        c
        for c in vars(mod).values()
        if isinstance(c, type) and issubclass(c, ServiceSettings) and c is not ServiceSettings
    ]
    assert len(classes) == 1, f"{module}.settings should define one settings class"
    return {f"AUTOPAY_{name.upper()}" for name in classes[0].model_fields}


def uses_secret_keys(folder: str) -> bool:
    """Every service's settings have `secret_keys` (it is on the shared `ServiceSettings`);
    a service uses the keys when its code reads `settings.secret_keys`."""
    return any("secret_keys" in path.read_text() for path in (REPO / folder / "src").rglob("*.py"))


def seconds_in(path: Path, pattern: str) -> list[float]:
    if not path.exists():
        return []
    return [float(x) for x in re.findall(pattern, path.read_text())]


def app_shutdown_seconds(service: str) -> float:
    """Worst case between SIGTERM and exit: HTTP server drain plus broker/handler drain."""
    folder, module = SERVICES[service]
    src = REPO / folder / "src" / module
    http = seconds_in(
        REPO / "libs/runtime/src/autopay_runtime/health.py", r"timeout_graceful_shutdown=([\d.]+)"
    )
    assert http, "autopay_runtime.health.serve no longer states its graceful timeout"
    drains = [
        *seconds_in(src / "bootstrap.py", r"graceful_timeout=([\d.]+)"),
        *seconds_in(src / "settings.py", r"\w*grace\w*\s*:\s*\w+\s*=\s*([\d.]+)"),
    ]
    return max(http) + max(drains, default=0.0)


# --- checks shared by raw and rendered manifests -------------------------------------------------


def containers(workload: dict) -> list[dict]:
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def secret_key_refs(objects: list[dict]) -> dict[str, dict[str, bool]]:
    """Secret name -> {key: optional} of every `secretKeyRef` in the workloads."""
    refs: dict[str, dict[str, bool]] = {}
    for w in workloads(objects):
        for c in containers(w):
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.setdefault(ref["name"], {})[ref["key"]] = ref.get("optional", False)
    return refs


def redis_acl_users(args: list[str]) -> dict[str, tuple[str, list[str], str]]:
    """`--user "<name> on ><password> ~<pattern> <rules>"` -> name: (password, patterns, rules)."""
    users = {}
    for i, arg in enumerate(args):
        if arg != "--user":
            continue
        name, state, password, *rest = args[i + 1].split()
        assert state == "on" and password.startswith(">"), args[i + 1]
        patterns = [t[1:] for t in rest if t.startswith("~")]
        rules = " ".join(t for t in rest if not t.startswith("~"))
        users[name] = (password[1:], patterns, rules)
    return users


def assert_redis_acls(args: list[str], prefix: str, password_of: dict[str, str]) -> None:
    """One user per service, each on the keys `Keys.service_keyspace` gives it (the merchant
    bot on its own `ap:bot:*`, the others on `ap:*`) with the CLI's rules."""
    from autopay_cli.credentials import REDIS_SERVICE_RULES
    from autopay_store.keys import Keys

    users = redis_acl_users(args)
    assert sorted(users) == sorted(SERVICES)
    for name, (password, patterns, rules) in users.items():
        assert password == password_of[name], name
        assert patterns == [Keys(prefix).service_keyspace(name)], name
        assert rules == REDIS_SERVICE_RULES, name
    assert prefix == "ap"
    assert users["merchant-bot"][1] == ["ap:bot:*"]
    for name in set(SERVICES) - {"merchant-bot"}:
        assert users[name][1] == ["ap:*"], name


def assert_hardened(workload: dict) -> None:
    name = workload["metadata"]["name"]
    spec = pod_spec(workload)
    pod_sc = spec.get("securityContext", {})
    assert spec.get("automountServiceAccountToken") is False, name
    assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
    for c in containers(workload):
        sc = c.get("securityContext", {})
        where = f"{name}/{c['name']}"
        assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, where
        assert sc.get("runAsUser", pod_sc.get("runAsUser", 0)) != 0, where
        assert sc.get("readOnlyRootFilesystem") is True, where
        assert sc.get("allowPrivilegeEscalation") is False, where
        assert sc.get("privileged", False) is False, where
        assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
        assert not sc.get("capabilities", {}).get("add"), where
        resources = c.get("resources", {})
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources.get(bound, {})), f"{where} {bound}"


def assert_service_deployment(deployment: dict, objects: list[dict]) -> None:
    name = deployment["metadata"]["name"]
    spec = pod_spec(deployment)
    [app] = spec["containers"]
    http_ports = {p["name"]: p["containerPort"] for p in app["ports"]}
    assert http_ports.get("http") == 8080, name

    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = app[probe]["httpGet"]
        assert get["path"] == path, f"{name} {probe}"
        assert get["port"] in ("http", 8080), f"{name} {probe}"

    account = spec.get("serviceAccountName")
    assert account not in (None, "default"), name
    assert account in of_kind(objects, "ServiceAccount"), f"{name}: no ServiceAccount {account}"
    users = [
        w["metadata"]["name"]
        for w in workloads(objects)
        if pod_spec(w).get("serviceAccountName") == account
    ]
    assert users == [name], f"ServiceAccount {account} shared by {users}"

    pre_stop = app.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    pre_stop_s = float(pre_stop[1]) if pre_stop[:1] == ["sleep"] else 0.0
    budget = spec.get("terminationGracePeriodSeconds", 30)
    needed = pre_stop_s + app_shutdown_seconds(name)
    assert budget > needed, f"{name}: terminationGracePeriodSeconds {budget} <= {needed}"

    annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
    assert annotations.get("prometheus.io/scrape") == "true", name
    # The gateway's HTTP port is public: its metrics are on their own port.
    metrics = http_ports.get("metrics", 8080) if name == "gateway" else 8080
    assert name != "gateway" or metrics != 8080, "the gateway's metrics on the public port"
    assert annotations.get("prometheus.io/port") == str(metrics), name
    assert annotations.get("prometheus.io/path") == "/metrics", name

    folder, module = SERVICES[name]
    assert app["command"] == ["python", "-m", module], name
    assert (REPO / folder / "src" / module).is_dir(), f"{module} not found in {folder}"
    assert app["image"].split("/")[-1].split(":")[0] == name, name


def assert_disruption_budgets(objects: list[dict]) -> None:
    budgets = of_kind(objects, "PodDisruptionBudget").values()
    for w in workloads(objects):
        if w["kind"] == "Job":
            continue
        labels = pod_labels(w)
        matching = [
            b
            for b in budgets
            if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
            and ("maxUnavailable" in b["spec"] or "minAvailable" in b["spec"])
        ]
        assert len(matching) == 1, f"{w['kind']} {w['metadata']['name']}: {len(matching)} PDBs"
        # A budget that forbids every eviction blocks node drains forever.
        spec = matching[0]["spec"]
        if "minAvailable" in spec:
            assert spec["minAvailable"] < w["spec"].get("replicas", 1), w["metadata"]["name"]
        else:
            assert spec["maxUnavailable"] not in (0, "0%"), w["metadata"]["name"]


def assert_single_poller(deployment: dict) -> None:
    """Exactly one pod, and a rollout that stops the old one before starting the new one."""
    name = deployment["metadata"]["name"]
    assert deployment["spec"]["replicas"] == 1, f"{name} must run exactly one replica"
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}, name
    assert not pod_spec(deployment).get("topologySpreadConstraints"), name


def assert_all_policies(objects: list[dict]) -> None:
    deployments = of_kind(objects, "Deployment")
    assert set(deployments) == set(SERVICES)
    for w in workloads(objects):
        assert_hardened(w)
    for d in deployments.values():
        assert_service_deployment(d, objects)
    assert_single_poller(deployments[SINGLE_POLLER])
    hpas = of_kind(objects, "HorizontalPodAutoscaler").values()
    assert not [h for h in hpas if h["spec"]["scaleTargetRef"]["name"] == SINGLE_POLLER]
    assert_disruption_budgets(objects)


# --- files and kustomizations --------------------------------------------------------------------


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_parses_and_objects_are_named(path: Path) -> None:
    docs = load_docs(path)
    assert docs, f"{path} is empty"
    for doc in docs:
        if isinstance(doc, list):  # a JSON 6902 patch
            assert all({"op", "path"} <= set(op) for op in doc)
            continue
        assert {"apiVersion", "kind"} <= set(doc) or path == COMPOSE, path
        if path != COMPOSE and doc["kind"] not in ("Kustomization", "Component"):
            assert doc["metadata"]["name"], path


@pytest.mark.parametrize("folder", kustomization_folders(), ids=lambda p: str(p.relative_to(K8S)))
def test_kustomization_lists_only_existing_files(folder: Path) -> None:
    k = kustomization(folder)
    for entry in [*k.get("resources", []), *k.get("components", [])]:
        target = folder / entry
        assert target.is_file() or (target / "kustomization.yaml").is_file(), f"{entry} missing"
    for patch in k.get("patches", []):
        if "path" in patch:
            assert (folder / patch["path"]).is_file(), f"patch {patch['path']} missing"
    for patch in k.get("patchesStrategicMerge", []):
        assert (folder / patch).is_file(), f"patch {patch} missing"
    for generator in [*k.get("configMapGenerator", []), *k.get("secretGenerator", [])]:
        for f in [*generator.get("files", []), *generator.get("envs", [])]:
            assert (folder / f.split("=")[-1]).is_file(), f"generator file {f} missing"


def test_every_manifest_is_used_by_a_kustomization() -> None:
    used = set()
    for folder in kustomization_folders():
        k = kustomization(folder)
        entries = [*k.get("resources", []), *k.get("patchesStrategicMerge", [])]
        entries += [p["path"] for p in k.get("patches", []) if "path" in p]
        used |= {(folder / e).resolve() for e in entries}
    manifests = {p.resolve() for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml"} - {
        p.resolve() for p in NOT_IN_ANY_KUSTOMIZATION
    }
    assert manifests - used == set()


def test_overlays_use_the_components() -> None:
    components = {Path(c).name for c in kustomization(OVERLAYS / "production")["components"]}
    assert components == {"nats-cluster", "redis", "network-policies", "high-availability"}
    dev = {Path(c).name for c in kustomization(OVERLAYS / "dev")["components"]}
    assert {"nats-cluster", "redis"} <= dev
    for overlay in ("dev", "production"):
        assert kustomization(OVERLAYS / overlay)["resources"] == ["../../base"]
    for folder in COMPONENTS.iterdir():
        assert kustomization(folder)["kind"] == "Component", folder.name


# --- base workloads ------------------------------------------------------------------------------


def test_base_deployments_follow_the_policies() -> None:
    assert_all_policies(base_objects())


def test_base_namespace_enforces_restricted_pod_security() -> None:
    namespace = of_kind(base_objects(), "Namespace")[APP_NAMESPACE]
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert kustomization(BASE)["namespace"] == APP_NAMESPACE


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_environment_names_are_settings_the_service_reads(service: str) -> None:
    objects = base_objects()
    fields = settings_fields(SERVICES[service][1])
    [app] = pod_spec(of_kind(objects, "Deployment")[service])["containers"]
    unknown = {e["name"] for e in app.get("env", [])} - fields
    assert not unknown, f"{service} does not read {sorted(unknown)}"

    sources = {next(iter(s)): next(iter(s.values()))["name"] for s in app.get("envFrom", [])}
    assert sources.get("configMapRef") == "autopay-config"
    wants_secret = uses_secret_keys(SERVICES[service][0])
    assert (sources.get("secretRef") == "autopay-secrets") is wants_secret, (
        "the Secret goes to exactly the services that use AUTOPAY_SECRET_KEYS"
    )


def test_shared_config_keys_are_read_by_someone() -> None:
    config = of_kind(base_objects(), "ConfigMap")["autopay-config"]["data"]
    known = set().union(*(settings_fields(module) for _, module in SERVICES.values()))
    unknown = set(config) - known - EXTRA_CONFIG_KEYS
    assert not unknown, f"no service reads {sorted(unknown)}"
    assert config["AUTOPAY_HTTP_HOST"] == "0.0.0.0"
    assert config["AUTOPAY_HTTP_PORT"] == "8080"
    assert not any("SECRET" in key or "PASSWORD" in key for key in config)


def test_secret_example_holds_placeholders_only() -> None:
    secrets = load_docs(BASE / "secret.example.yaml")
    assert [s["metadata"]["name"] for s in secrets] == ["autopay-secrets", "autopay-credentials"]
    for secret in secrets:
        assert secret["kind"] == "Secret"
        for key, value in secret["stringData"].items():
            assert re.fullmatch(r"<[^<>]+>", value), f"{key} must be a <placeholder>"
        assert secret["metadata"]["name"] not in of_kind(base_objects(), "Secret")


def test_every_workload_has_its_own_nats_and_redis_user() -> None:
    """No anonymous NATS or Redis in the cluster: each service (and the provisioning Job, as
    admin) authenticates with a password from the autopay-credentials Secret, and the NATS
    and Redis servers take those passwords from the same Secret."""
    objects = base_objects() + collect(COMPONENTS / "nats-cluster") + collect(COMPONENTS / "redis")
    deployments = of_kind(objects, "Deployment")
    for name in SERVICES:
        [c] = pod_spec(deployments[name])["containers"]
        env = {e["name"]: e for e in c.get("env", [])}
        assert env["AUTOPAY_NATS_USER"]["value"] == env["AUTOPAY_REDIS_USER"]["value"] == name
        variable = name.upper().replace("-", "_")
        for kind in ("NATS", "REDIS"):
            ref = env[f"AUTOPAY_{kind}_PASSWORD"]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": "autopay-credentials", "key": f"{kind}_PASSWORD_{variable}"}
    [job] = pod_spec(of_kind(objects, "Job")["autopay-provision-streams"])["containers"]
    assert {e["name"]: e.get("value") for e in job["env"]}["AUTOPAY_NATS_USER"] == "admin"
    nats = of_kind(objects, "StatefulSet")["nats"]
    conf = of_kind(objects, "ConfigMap")["nats-config"]["data"]["nats.conf"]
    assert "include ./auth.conf" in conf
    nats_env = {e["name"] for e in pod_spec(nats)["containers"][0]["env"]}
    assert {f"NATS_PASSWORD_{n.upper().replace('-', '_')}" for n in SERVICES} <= nats_env
    [redis] = pod_spec(of_kind(objects, "StatefulSet")["redis"])["containers"]
    assert redis["args"][:2] == ["--requirepass", "$(REDISCLI_AUTH)"]
    users = [redis["args"][i + 1].split()[0] for i, a in enumerate(redis["args"]) if a == "--user"]
    assert sorted(users) == sorted(SERVICES)


def test_redis_acl_users_are_limited_to_their_keyspace() -> None:
    objects = base_objects() + collect(COMPONENTS / "redis")
    [redis] = pod_spec(of_kind(objects, "StatefulSet")["redis"])["containers"]
    prefix = of_kind(objects, "ConfigMap")["autopay-config"]["data"]["AUTOPAY_REDIS_PREFIX"]
    variables = {n: f"REDIS_PASSWORD_{n.upper().replace('-', '_')}" for n in SERVICES}
    assert_redis_acls(redis["args"], prefix, {n: f"$({v})" for n, v in variables.items()})
    env = {e["name"]: e for e in redis["env"]}
    for variable in variables.values():
        ref = env[variable]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "autopay-credentials", "key": variable}


def test_credentials_in_use_are_in_the_example_and_the_dev_overlay() -> None:
    objects = base_objects() + collect(COMPONENTS / "nats-cluster") + collect(COMPONENTS / "redis")
    refs = secret_key_refs(objects)
    assert set(refs) == {"autopay-credentials"}, "secretKeyRefs name autopay-credentials only"
    used = refs["autopay-credentials"]
    examples = {
        s["metadata"]["name"]: set(s["stringData"]) for s in load_docs(BASE / "secret.example.yaml")
    }
    assert examples["autopay-credentials"] == set(used)
    dev = {
        g["name"]: {literal.split("=", 1)[0] for literal in g.get("literals", [])}
        for g in kustomization(OVERLAYS / "dev")["secretGenerator"]
    }
    required = {key for key, optional in used.items() if not optional}
    assert required <= dev["autopay-credentials"] <= set(used)
    # autopay-secrets is read whole (envFrom) by several services: no token belongs in it.
    assert examples["autopay-secrets"] == dev["autopay-secrets"] == {"AUTOPAY_SECRET_KEYS"}


TOKENS = {  # setting -> the only Deployments that get it
    "AUTOPAY_ADMIN_TOKEN": {"gateway", "merchant-bot"},
    "AUTOPAY_BOT_TOKEN": {"merchant-bot"},
    "AUTOPAY_OPERATOR_API_KEY": {"merchant-bot"},
}


def test_tokens_go_only_to_the_pods_that_use_them() -> None:
    objects = base_objects()
    config = of_kind(objects, "ConfigMap")["autopay-config"]["data"]
    assert not set(TOKENS) & set(config)
    given: dict[str, dict[str, dict]] = {token: {} for token in TOKENS}
    for w in workloads(objects):
        for c in containers(w):
            for e in c.get("env", []):
                if e["name"] in TOKENS:
                    given[e["name"]][w["metadata"]["name"]] = e["valueFrom"]["secretKeyRef"]
    for token, owners in TOKENS.items():
        assert set(given[token]) == owners, token
        assert {ref["name"] for ref in given[token].values()} == {"autopay-credentials"}, token
    admin = given["AUTOPAY_ADMIN_TOKEN"]
    assert admin["gateway"]["key"] == admin["merchant-bot"]["key"], "one admin token, shared"
    assert not admin["gateway"].get("optional") and not admin["merchant-bot"].get("optional")


def test_merchant_bot_reaches_the_gateway_through_its_service_ports() -> None:
    objects = base_objects()
    config = of_kind(objects, "ConfigMap")["autopay-config"]["data"]
    [gateway] = pod_spec(of_kind(objects, "Deployment")["gateway"])["containers"]
    ports = {p["name"]: p["containerPort"] for p in gateway["ports"]}
    env = {e["name"]: e for e in gateway["env"]}
    assert ports["admin"] == int(env["AUTOPAY_ADMIN_PORT"]["value"]) == ADMIN_PORT
    assert env["AUTOPAY_ADMIN_HOST"]["value"] == "0.0.0.0"
    service = {p["name"]: p for p in of_kind(objects, "Service")["gateway"]["spec"]["ports"]}
    assert service["admin"]["port"] == ADMIN_PORT
    for setting, port_name in (("AUTOPAY_GATEWAY_URL", "http"), ("AUTOPAY_ADMIN_URL", "admin")):
        url = urlsplit(config[setting])
        assert (url.scheme, url.hostname) == ("http", "gateway"), setting
        assert (url.port or 80) == service[port_name]["port"], setting
        assert service[port_name]["targetPort"] == port_name, setting
    assert config["AUTOPAY_TELEGRAM_API_URL"] == "https://api.telegram.org"


def test_provisioning_job_declares_streams_with_configured_replicas() -> None:
    objects = base_objects()
    job = of_kind(objects, "Job")["autopay-provision-streams"]
    [c] = pod_spec(job)["containers"]
    assert c["command"] == ["autopay"]
    args = c["args"]
    assert args[:2] == ["nats", "provision"]
    options = dict(zip(args[2::2], args[3::2], strict=True))
    assert options == {
        "--nats-url": "$(AUTOPAY_NATS_URL)",
        "--namespace": "$(AUTOPAY_NAMESPACE)",
        "--replicas": "$(AUTOPAY_STREAM_REPLICAS)",
    }
    config = of_kind(objects, "ConfigMap")["autopay-config"]["data"]
    assert {"AUTOPAY_NATS_URL", "AUTOPAY_NAMESPACE", "AUTOPAY_STREAM_REPLICAS"} <= set(config)
    assert c["envFrom"] == [{"configMapRef": {"name": "autopay-config"}}]
    assert pod_spec(job)["restartPolicy"] in ("OnFailure", "Never")
    assert pod_spec(job)["serviceAccountName"] in of_kind(objects, "ServiceAccount")


# --- components ----------------------------------------------------------------------------------


def test_nats_cluster_is_three_jetstream_nodes_with_routes() -> None:
    objects = collect(COMPONENTS / "nats-cluster")
    nats = of_kind(objects, "StatefulSet")["nats"]
    assert nats["spec"]["replicas"] == 3
    headless = of_kind(objects, "Service")[nats["spec"]["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert {p["port"] for p in headless["spec"]["ports"]} >= {4222, 6222}
    conf = of_kind(objects, "ConfigMap")["nats-config"]["data"]["nats.conf"]
    assert re.search(r"jetstream\s*\{[^}]*store_dir:\s*/data", conf)
    routes = re.findall(r"nats://(nats-\d)\.([\w-]+):6222", conf)
    assert routes == [(f"nats-{i}", nats["spec"]["serviceName"]) for i in range(3)]
    [claim] = nats["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in pod_spec(nats)["containers"][0]["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == "/data"
    patch = load_docs(COMPONENTS / "nats-cluster" / "stream-replicas.yaml")[0]
    assert patch["data"]["AUTOPAY_STREAM_REPLICAS"] == "3"
    assert_hardened(nats)
    assert_disruption_budgets(objects)


def test_redis_persists_with_aof_on_a_volume() -> None:
    objects = collect(COMPONENTS / "redis")
    redis = of_kind(objects, "StatefulSet")["redis"]
    conf = of_kind(objects, "ConfigMap")["redis-config"]["data"]["redis.conf"]
    settings = dict(
        line.split(None, 1) for line in conf.splitlines() if line and not line.startswith("#")
    )
    assert settings["appendonly"] == "yes"
    assert settings["appendfsync"] == "everysec"
    assert settings["maxmemory-policy"] == "noeviction"
    [claim] = redis["spec"]["volumeClaimTemplates"]
    [c] = pod_spec(redis)["containers"]
    assert c["command"] == ["redis-server", "/etc/redis/redis.conf"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == settings["dir"]
    assert "redis" in of_kind(objects, "Service")
    assert_hardened(redis)
    assert_disruption_budgets(objects)


def test_high_availability_scales_and_spreads_every_service() -> None:
    folder = COMPONENTS / "high-availability"
    patches = of_kind(load_docs(folder / "replicas-and-spread.yaml"), "Deployment")
    assert set(patches) == set(SERVICES)
    bot = patches.pop(SINGLE_POLLER)
    assert bot["spec"] == {"replicas": 1}, "the merchant bot stays at one replica, no spread"
    for name, patch in patches.items():
        assert 2 <= patch["spec"]["replicas"] <= 3, name
        keys = {c["topologyKey"] for c in pod_spec(patch)["topologySpreadConstraints"]}
        assert keys == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}, name
    hpas = of_kind(collect(folder), "HorizontalPodAutoscaler")
    assert set(hpas) == {"gateway", "matcher", "notifier"}
    for name, hpa in hpas.items():
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": name,
        }
        assert hpa["spec"]["minReplicas"] == patches[name]["spec"]["replicas"]
        assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]


# --- network policies ----------------------------------------------------------------------------


def matches(selector: dict, labels: dict) -> bool:
    assert "matchExpressions" not in selector, "this evaluator knows matchLabels only"
    return selector.get("matchLabels", {}).items() <= labels.items()


def peer_matches(peer: dict, target: dict) -> bool:
    """`target` is {"ip": "..."} or {"labels": {...}, "namespace": {...}} (a pod)."""
    if "ipBlock" in peer:
        if "ip" not in target:
            return False
        ip = ipaddress.ip_address(target["ip"])
        block = peer["ipBlock"]
        return ip in ipaddress.ip_network(block["cidr"]) and not any(
            ip in ipaddress.ip_network(e) for e in block.get("except", [])
        )
    if "labels" not in target:
        return False
    ns_ok = (
        matches(peer["namespaceSelector"], target["namespace"])
        if "namespaceSelector" in peer
        else target["namespace"].get("kubernetes.io/metadata.name") == APP_NAMESPACE
    )
    pod_ok = matches(peer["podSelector"], target["labels"]) if "podSelector" in peer else True
    return ns_ok and pod_ok


def allowed(policies: list[dict], pod: dict, direction: str, peer: dict, port: int) -> bool:
    """Would traffic from/to `pod` (its labels) be allowed, by NetworkPolicy semantics?"""
    kind, field, peers_key = {
        "egress": ("Egress", "egress", "to"),
        "ingress": ("Ingress", "ingress", "from"),
    }[direction]
    selecting = [
        p
        for p in policies
        if kind in p["spec"]["policyTypes"] and matches(p["spec"]["podSelector"], pod)
    ]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get(field) or []:
            peers = rule.get(peers_key)
            ports = rule.get("ports")
            peer_ok = not peers or any(peer_matches(p, peer) for p in peers)
            port_ok = not ports or any(
                p.get("protocol", "TCP") == "TCP" and p.get("port") in (None, port) for p in ports
            )
            if peer_ok and port_ok:
                return True
    return False


def app_namespace_pod(labels: dict) -> dict:
    return {"labels": labels, "namespace": {"kubernetes.io/metadata.name": APP_NAMESPACE}}


@pytest.fixture(scope="module")
def policies() -> list[dict]:
    return list(of_kind(collect(COMPONENTS / "network-policies"), "NetworkPolicy").values())


@pytest.fixture(scope="module")
def pods() -> dict[str, dict]:
    objects = base_objects() + collect(COMPONENTS / "nats-cluster") + collect(COMPONENTS / "redis")
    return {w["metadata"]["name"]: pod_labels(w) for w in workloads(objects)}


def test_default_deny_covers_every_pod(policies: list[dict]) -> None:
    deny = [
        p
        for p in policies
        if p["spec"]["podSelector"] == {}
        and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert deny, "no default-deny policy"


def test_every_pod_resolves_names(policies: list[dict], pods: dict[str, dict]) -> None:
    dns = {
        "labels": {"k8s-app": "kube-dns"},
        "namespace": {"kubernetes.io/metadata.name": "kube-system"},
    }
    for name, labels in pods.items():
        assert allowed(policies, labels, "egress", dns, 53), name


def test_workers_reach_nats_and_redis_and_they_accept_them(
    policies: list[dict], pods: dict[str, dict]
) -> None:
    nats, redis = pods["nats"], pods["redis"]
    for name in [*SERVICES, "autopay-provision-streams"]:
        me = pods[name]
        assert allowed(policies, me, "egress", app_namespace_pod(nats), 4222), name
        assert allowed(policies, me, "egress", app_namespace_pod(redis), 6379), name
        assert allowed(policies, nats, "ingress", app_namespace_pod(me), 4222), name
        assert allowed(policies, redis, "ingress", app_namespace_pod(me), 6379), name
    stranger = app_namespace_pod({"app.kubernetes.io/name": "debug-shell"})
    assert not allowed(policies, nats, "ingress", stranger, 4222)
    assert not allowed(policies, redis, "ingress", stranger, 6379)
    assert allowed(policies, nats, "egress", app_namespace_pod(nats), 6222)
    assert allowed(policies, nats, "ingress", app_namespace_pod(nats), 6222)
    assert not allowed(policies, redis, "egress", {"ip": PUBLIC_ADDRESS}, 443)


def test_notifier_egress_is_public_https_only(policies: list[dict], pods: dict[str, dict]) -> None:
    notifier = pods["notifier"]
    assert allowed(policies, notifier, "egress", {"ip": PUBLIC_ADDRESS}, 443)
    assert not allowed(policies, notifier, "egress", {"ip": PUBLIC_ADDRESS}, 80)
    for address in PRIVATE_ADDRESSES:
        assert not allowed(policies, notifier, "egress", {"ip": address}, 443), address
    other_pod = app_namespace_pod(pods["gateway"])
    assert not allowed(policies, notifier, "egress", other_pod, 8080)


def test_mail_ingest_egress_is_imaps(policies: list[dict], pods: dict[str, dict]) -> None:
    ingest = pods["mail-ingest"]
    assert allowed(policies, ingest, "egress", {"ip": PUBLIC_ADDRESS}, 993)
    assert not allowed(policies, ingest, "egress", {"ip": PUBLIC_ADDRESS}, 443)
    assert not allowed(policies, ingest, "egress", {"ip": "169.254.169.254"}, 993)


def test_matcher_has_no_external_egress(policies: list[dict], pods: dict[str, dict]) -> None:
    for port in (80, 443, 993):
        assert not allowed(policies, pods["matcher"], "egress", {"ip": PUBLIC_ADDRESS}, port)


def test_only_the_gateway_accepts_traffic(policies: list[dict], pods: dict[str, dict]) -> None:
    outside = {"labels": {"app": "ingress-nginx"}, "namespace": {"name": "ingress-nginx"}}
    assert allowed(policies, pods["gateway"], "ingress", outside, 8080)
    assert allowed(policies, pods["gateway"], "ingress", {"ip": PUBLIC_ADDRESS}, 8080)
    for name in set(SERVICES) - {"gateway"}:
        assert not allowed(policies, pods[name], "ingress", outside, 8080), name
    prometheus = {
        "labels": {"app": "prometheus"},
        "namespace": {"kubernetes.io/metadata.name": "monitoring"},
    }
    for name in SERVICES:
        assert allowed(policies, pods[name], "ingress", prometheus, 8080), name


def test_gateway_admin_port_admits_only_the_merchant_bot(
    policies: list[dict], pods: dict[str, dict]
) -> None:
    gateway, bot = pods["gateway"], pods[SINGLE_POLLER]
    assert allowed(policies, gateway, "ingress", app_namespace_pod(bot), ADMIN_PORT)
    assert allowed(policies, bot, "egress", app_namespace_pod(gateway), ADMIN_PORT)
    strangers = [
        app_namespace_pod(labels) for name, labels in pods.items() if name != SINGLE_POLLER
    ]
    strangers += [
        {"labels": {"app": "ingress-nginx"}, "namespace": {"name": "ingress-nginx"}},
        {
            "labels": {"app": "prometheus"},
            "namespace": {"kubernetes.io/metadata.name": "monitoring"},
        },
        {"labels": bot, "namespace": {"kubernetes.io/metadata.name": "elsewhere"}},
        app_namespace_pod({"app.kubernetes.io/name": "debug-shell"}),
        {"ip": PUBLIC_ADDRESS},
        *({"ip": address} for address in PRIVATE_ADDRESSES),
    ]
    for stranger in strangers:
        assert not allowed(policies, gateway, "ingress", stranger, ADMIN_PORT), stranger
    # The public port stays public.
    assert allowed(policies, gateway, "ingress", {"ip": PUBLIC_ADDRESS}, 8080)


def test_merchant_bot_egress_is_telegram_https_and_the_gateway_only(
    policies: list[dict], pods: dict[str, dict]
) -> None:
    bot = pods[SINGLE_POLLER]
    selecting = [
        p
        for p in policies
        if "Egress" in p["spec"]["policyTypes"] and matches(p["spec"]["podSelector"], bot)
    ]
    blocks = []
    for policy in selecting:
        for rule in policy["spec"].get("egress") or []:
            assert rule.get("to"), f"{policy['metadata']['name']}: egress to anywhere"
            rule_blocks = [peer["ipBlock"] for peer in rule["to"] if "ipBlock" in peer]
            if rule_blocks:
                assert rule["ports"] == [{"protocol": "TCP", "port": 443}], policy["metadata"]
            blocks += rule_blocks
    assert {b["cidr"] for b in blocks} == TELEGRAM_CIDRS
    assert all(ipaddress.ip_network(b["cidr"]).prefixlen > 0 for b in blocks), "no 0.0.0.0/0"
    for cidr in TELEGRAM_CIDRS:
        network = ipaddress.ip_network(cidr)
        for address in (network[0], network[1], network[-1]):
            telegram = {"ip": str(address)}
            assert allowed(policies, bot, "egress", telegram, 443), address
            for port in (80, 88, 8443):
                assert not allowed(policies, bot, "egress", telegram, port), (address, port)
    assert allowed(policies, bot, "egress", {"ip": API_TELEGRAM_ORG}, 443)
    for address in [PUBLIC_ADDRESS, PUBLIC_IPV6_ADDRESS, *PRIVATE_ADDRESSES]:
        for port in (80, 443, 993):
            assert not allowed(policies, bot, "egress", {"ip": address}, port), (address, port)
    gateway = app_namespace_pod(pods["gateway"])
    assert allowed(policies, bot, "egress", gateway, 8080)
    assert allowed(policies, bot, "egress", gateway, ADMIN_PORT)
    assert not allowed(policies, bot, "egress", gateway, 9090)
    for name in set(SERVICES) - {"gateway", SINGLE_POLLER}:
        assert not allowed(policies, bot, "egress", app_namespace_pod(pods[name]), 8080), name
    assert not allowed(policies, bot, "ingress", app_namespace_pod(pods["gateway"]), 8080)


# --- rendered overlays ---------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", ["dev", "production"])
def test_rendered_overlay_follows_the_policies(overlay: str) -> None:
    objects = rendered(overlay)
    assert_all_policies(objects)
    for o in objects:
        if o["kind"] != "Namespace":
            assert o["metadata"].get("namespace") == APP_NAMESPACE, o["metadata"]["name"]
    for w in workloads(objects):
        for c in containers(w):
            assert ":" in c["image"].rsplit("/", 1)[-1], f"untagged image {c['image']}"
    policies = of_kind(objects, "NetworkPolicy")
    assert "default-deny-all" in policies


def test_rendered_production_is_replicated() -> None:
    objects = rendered("production")
    config = of_kind(objects, "ConfigMap")["autopay-config"]["data"]
    assert config["AUTOPAY_STREAM_REPLICAS"] == "3"
    assert of_kind(objects, "StatefulSet")["nats"]["spec"]["replicas"] == 3
    for name, d in of_kind(objects, "Deployment").items():
        if name == SINGLE_POLLER:
            assert_single_poller(d)
            continue
        assert d["spec"]["replicas"] >= 2, name
        assert pod_spec(d).get("topologySpreadConstraints"), name
    nats_spread = pod_spec(of_kind(objects, "StatefulSet")["nats"])["topologySpreadConstraints"]
    by_key = {c["topologyKey"]: c["whenUnsatisfiable"] for c in nats_spread}
    assert by_key["kubernetes.io/hostname"] == "DoNotSchedule"
    assert set(of_kind(objects, "HorizontalPodAutoscaler")) == {"gateway", "matcher", "notifier"}
    assert "autopay-secrets" not in of_kind(objects, "Secret"), "production Secret is out of band"


def test_rendered_dev_has_a_valid_throwaway_key() -> None:
    from cryptography.fernet import Fernet

    secret = of_kind(rendered("dev"), "Secret")["autopay-secrets"]
    keys = base64.b64decode(secret["data"]["AUTOPAY_SECRET_KEYS"]).decode()
    for key in keys.split(","):
        Fernet(key)


# --- docker compose and images -------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_docs(COMPOSE)[0]


def test_compose_runs_nats_jetstream_and_redis_aof_on_volumes(compose: dict) -> None:
    services, volumes = compose["services"], compose["volumes"]
    nats = services["nats"]
    assert {"-js", "--jetstream"} & set(nats["command"])
    assert nats["command"][nats["command"].index("--store_dir") + 1] == "/data"
    assert any(v.split(":")[0] in volumes and v.endswith(":/data") for v in nats["volumes"])
    redis = services["redis"]
    flags = dict(zip(redis["command"][1::2], redis["command"][2::2], strict=True))
    assert flags["--appendonly"] == "yes"
    assert flags["--appendfsync"] == "everysec"
    assert flags["--maxmemory-policy"] == "noeviction"
    assert any(
        v.split(":")[0] in volumes and v.endswith(f":{flags['--dir']}") for v in redis["volumes"]
    )


def test_compose_gives_every_service_its_own_nats_and_redis_user(compose: dict) -> None:
    """No anonymous NATS or Redis: NATS runs the generated auth.conf (passwords from its
    environment), Redis has requirepass and an ACL user per service."""
    services = compose["services"]
    nats = services["nats"]
    config = nats["command"][nats["command"].index("-c") + 1]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in nats["volumes"]}
    assert mounted[config] == "./kubernetes/components/nats-cluster/auth.conf"
    redis = services["redis"]["command"]
    assert redis[redis.index("--requirepass") + 1].startswith("${AUTOPAY_REDIS_PASSWORD_ADMIN:?")
    acl_users = [redis[i + 1].split()[0] for i, arg in enumerate(redis) if arg == "--user"]
    assert sorted(acl_users) == sorted(SERVICES)
    passwords = {
        n: f"${{AUTOPAY_REDIS_PASSWORD_{n.upper().replace('-', '_')}:?}}" for n in SERVICES
    }
    assert_redis_acls(redis, compose["x-autopay-env"]["AUTOPAY_REDIS_PREFIX"], passwords)
    for name in SERVICES:
        env = services[name]["environment"]
        assert env["AUTOPAY_NATS_USER"] == env["AUTOPAY_REDIS_USER"] == name
        variable = name.upper().replace("-", "_")
        assert env["AUTOPAY_NATS_PASSWORD"] == f"${{AUTOPAY_NATS_PASSWORD_{variable}:?}}"
        assert env["AUTOPAY_REDIS_PASSWORD"] == f"${{AUTOPAY_REDIS_PASSWORD_{variable}:?}}"
        assert f"NATS_PASSWORD_{variable}" in nats["environment"]


def test_compose_provisions_streams_once_before_the_services(compose: dict) -> None:
    services = compose["services"]
    provision = services["provision"]
    assert provision["restart"] == "no"
    assert provision["command"][:2] == ["nats", "provision"]
    assert provision["depends_on"]["nats"]["condition"] == "service_healthy"
    for name in SERVICES:
        depends = services[name]["depends_on"]
        assert depends["provision"]["condition"] == "service_completed_successfully", name


def test_compose_runs_each_service_from_its_package(compose: dict) -> None:
    """(How the images are built, from the one template: test_images.py.)"""
    services = compose["services"]
    for name, (folder, module) in SERVICES.items():
        service = services[name]
        assert service["build"]["args"]["PACKAGE"] == folder, name
        assert (REPO / folder).is_dir(), name
        assert service["command"] == ["python", "-m", module], name
        env = service["environment"]
        assert env["AUTOPAY_HTTP_PORT"] == "8080"
        assert env["AUTOPAY_HTTP_HOST"] == "0.0.0.0"
        assert env["AUTOPAY_SECRET_KEYS"].startswith("${AUTOPAY_SECRET_KEYS:?"), "no default key"
        assert "/readyz" in " ".join(service["healthcheck"]["test"]), name
    assert services["gateway"]["ports"] == ["8080:8080"]
    assert services["notifier"]["environment"]["AUTOPAY_ALLOW_HTTP_LOOPBACK"] == "false"
    published = [n for n, s in services.items() if s.get("ports")]
    assert published == ["gateway"]


def test_compose_hardens_every_container(compose: dict) -> None:
    for name, service in compose["services"].items():
        assert service.get("read_only") is True, name
        assert service.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in service.get("security_opt", []), name


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_compose_environment_names_are_settings_the_service_reads(
    compose: dict, service: str
) -> None:
    shared = compose["x-autopay-env"]
    env = compose["services"][service]["environment"]
    own = {name for name, value in env.items() if shared.get(name) != value} - set(shared)
    unknown = own - settings_fields(SERVICES[service][1])
    assert not unknown, f"{service} does not read {sorted(unknown)}"


def test_compose_runs_one_merchant_bot_on_the_gateway_admin_api(compose: dict) -> None:
    services = compose["services"]
    gateway = services["gateway"]["environment"]
    bot = services[SINGLE_POLLER]
    env = bot["environment"]
    assert gateway["AUTOPAY_ADMIN_HOST"] == "0.0.0.0"
    assert gateway["AUTOPAY_ADMIN_PORT"] == str(ADMIN_PORT)
    assert gateway["AUTOPAY_ADMIN_TOKEN"] == env["AUTOPAY_ADMIN_TOKEN"]
    assert env["AUTOPAY_ADMIN_TOKEN"].startswith("${AUTOPAY_ADMIN_TOKEN:?"), "no default token"
    assert env["AUTOPAY_BOT_TOKEN"].startswith("${AUTOPAY_BOT_TOKEN:?"), "no default token"
    for setting, port in (
        ("AUTOPAY_GATEWAY_URL", gateway["AUTOPAY_HTTP_PORT"]),
        ("AUTOPAY_ADMIN_URL", gateway["AUTOPAY_ADMIN_PORT"]),
    ):
        url = urlsplit(env[setting])
        assert (url.scheme, url.hostname, url.port) == ("http", "gateway", int(port)), setting
    assert bot["depends_on"]["gateway"]["condition"] == "service_healthy"
    assert bot["depends_on"]["redis"]["condition"] == "service_healthy"
    assert bot.get("deploy", {}).get("replicas", 1) == 1 and "scale" not in bot
    assert not [p for p in services["gateway"]["ports"] if str(ADMIN_PORT) in p], "admin published"
    for name, service in services.items():
        names = set(service.get("environment") or {})
        for token, owners in TOKENS.items():
            assert token not in names or name in owners, f"{token} given to {name}"

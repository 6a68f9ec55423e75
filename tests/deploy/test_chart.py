"""The Helm chart, rendered offline with the Helm SDK for every ci/*-values.yaml scenario:
linted strictly, validated against the Kubernetes schemas (1.30 and the newest known) and the
CRD shapes, and held to the project's policies. Also: the generated files are fresh, the
Dockerfile is hadolint-clean, skaffold.yaml agrees with the Dockerfile."""

import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from helm_python.errors import HelmError
from kubernetes_validate.utils import all_versions, latest_version

from esteira_devtools import chart

from .crd_schemas import BY_KIND

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = chart.scenarios()
KUBERNETES = [
    max((v for v in all_versions() if v.startswith("1.30.")), key=lambda v: int(v.split(".")[2])),
    latest_version(),
]
COMPONENTS = {"api", "ruptura-worker", "scraper-worker"}


@cache
def rendered(scenario: str) -> tuple[dict, ...]:
    return tuple(chart.render(SCENARIOS[scenario]))


def _objects(kind: str | None = None):
    for scenario in SCENARIOS:
        for obj in rendered(scenario):
            if kind is None or obj["kind"] == kind:
                yield scenario, obj


def _pod_specs():
    for scenario, obj in _objects("Deployment"):
        yield scenario, obj["metadata"]["name"], obj["spec"]["template"]["spec"]


def test_the_scenarios_cover_every_mode() -> None:
    assert {"default", "keda", "hpa", "trial"} <= set(SCENARIOS)
    kinds = {obj["kind"] for _, obj in _objects()}
    assert {"ScaledObject", "ServiceMonitor", "PrometheusRule", "Ingress"} <= kinds


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_helm_lint_is_clean_in_strict_mode(scenario) -> None:
    assert chart.lint(SCENARIOS[scenario]) == []


@pytest.mark.parametrize("version", KUBERNETES)
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_object_matches_the_kubernetes_or_crd_schema(scenario, version) -> None:
    for obj in rendered(scenario):
        if obj["kind"] in BY_KIND:
            jsonschema.validate(obj, BY_KIND[obj["kind"]])
        else:
            kubernetes_validate.validate(obj, version, strict=True)


CRDS = Path(__file__).parent / "crds"


def published_crd_errors(objects: list[dict]) -> list[str | None]:
    """Each object checked against the published KEDA or Prometheus-operator CRD schema (the
    npm packages in tests/deploy/crds, which `make setup` installs): None or the complaint."""
    checked = subprocess.run(
        ["node", str(CRDS / "validate.mjs")],
        input=json.dumps(objects),
        capture_output=True,
        text=True,
        check=True,
        cwd=CRDS,
    )
    errors: list[str | None] = json.loads(checked.stdout)
    return errors


def test_every_crd_object_matches_the_published_crd_schema() -> None:
    objects = [obj for _, obj in _objects() if obj["kind"] in BY_KIND]
    kinds = {obj["kind"] for obj in objects}
    assert kinds == {"ScaledObject", "ServiceMonitor", "PrometheusRule"}
    errors = published_crd_errors(objects)
    assert [
        (o["kind"], o["metadata"]["name"], e) for o, e in zip(objects, errors, strict=True) if e
    ] == []


def test_the_published_crd_schemas_refuse_a_broken_object() -> None:
    (scaled, *_) = [obj for _, obj in _objects("ScaledObject")]
    broken = json.loads(json.dumps(scaled))
    broken["spec"]["fallback"]["replicas"] = "two"
    del broken["spec"]["scaleTargetRef"]
    (error,) = published_crd_errors([broken])
    assert error and "scaleTargetRef" in error and "replicas" in error


def test_the_crd_objects_appear_only_when_asked_or_available() -> None:
    default = {obj["kind"] for obj in rendered("default")}
    assert not default & set(BY_KIND), "offline renders cannot know the CRDs exist"
    hpa = [obj for obj in rendered("hpa") if obj["kind"] == "HorizontalPodAutoscaler"]
    external = [o for o in hpa if o["spec"]["metrics"][0]["type"] == "External"]
    assert {o["spec"]["metrics"][0]["external"]["metric"]["selector"]["matchLabels"]["pool"]
            for o in external} == {"ruptura", "scraper"}  # fmt: skip
    assert all(o["spec"]["minReplicas"] >= 1 for o in external)


def test_every_container_is_hardened_and_bounded() -> None:
    checked = 0
    for scenario, name, spec in _pod_specs():
        pod = spec.get("securityContext", {})
        assert pod.get("runAsNonRoot") is True, (scenario, name)
        assert spec.get("automountServiceAccountToken") is False, (scenario, name)
        for container in spec.get("initContainers", []) + spec["containers"]:
            where = (scenario, name, container["name"])
            security = container["securityContext"]
            assert security["runAsNonRoot"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound]), where
            checked += 1
        for container in spec["containers"]:
            assert "livenessProbe" in container and "readinessProbe" in container, name
    assert checked >= 4 * 3


def test_selectors_never_carry_the_chart_version() -> None:
    selectors = []
    for _, obj in _objects():
        spec = obj.get("spec", {})
        if obj["kind"] in ("Deployment", "PodDisruptionBudget", "ServiceMonitor"):
            selectors.append(spec["selector"]["matchLabels"])
        elif obj["kind"] == "Service":
            selectors.append(spec["selector"])
        elif obj["kind"] == "NetworkPolicy" and not obj["metadata"]["name"].endswith("-deny"):
            selectors.append(spec["podSelector"]["matchLabels"])
    assert selectors and all("helm.sh/chart" not in s for s in selectors)
    assert all("app.kubernetes.io/component" in s for s in selectors)


def _env(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env") or [] if "value" in e}


def test_the_gateway_outlives_what_it_holds_when_a_rollout_stops_it() -> None:
    """preStop sleep + the longest request (an inline scrape's hard limit, a 25 s long poll)
    < terminationGracePeriodSeconds, for every scenario's gateway."""
    checked = 0
    for scenario, name, spec in _pod_specs():
        if not name.endswith("-api"):
            continue
        (container,) = spec["containers"]
        command = container["lifecycle"]["preStop"]["exec"]["command"]
        assert command[0] == "sleep", (scenario, command)
        hard = float(_env(container)["ESTEIRA_SCRAPE_HARD_LIMIT_SECONDS"])
        assert float(command[1]) + max(hard, 25) < spec["terminationGracePeriodSeconds"]
        checked += 1
    assert checked == len(SCENARIOS)


def test_job_timeout_completion_wait_and_grace_keep_their_order() -> None:
    pools = 0
    for scenario, name, spec in _pod_specs():
        env = _env(spec["containers"][0])
        if "ESTEIRA_JOB_TIMEOUT_SECONDS" not in env:
            continue
        pools += 1
        timeout = float(env["ESTEIRA_JOB_TIMEOUT_SECONDS"])
        wait = float(env["ESTEIRA_JOB_COMPLETION_WAIT_SECONDS"])
        assert timeout < wait < spec["terminationGracePeriodSeconds"], (scenario, name)
        if "ESTEIRA_SCRAPE_HARD_LIMIT_SECONDS" in env:
            assert float(env["ESTEIRA_SCRAPE_HARD_LIMIT_SECONDS"]) < timeout
    assert pools == 2 * len(SCENARIOS)


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        (
            {"rupturaWorker": {"jobCompletionWaitSeconds": 30}},
            "must be less than jobCompletionWait",
        ),
        ({"scraperWorker": {"terminationGracePeriodSeconds": 300}}, "terminationGracePeriod"),
        ({"scraperWorker": {"hardLimitSeconds": 400}}, "hardLimitSeconds"),
        ({"autoscaling": {"mode": "magic"}}, "autoscaling"),
        ({"auth": {"apiKeys": ["vendas:not-a-digest"]}}, "apiKeys"),
        ({"auth": {"corsOrigins": ["erp.example/pedidos"]}}, "corsOrigins"),
        ({"api": {"replicaz": 3}}, "replicaz"),
        ({"api": {"workers": 2}}, "workers"),
        ({"api": {"terminationGracePeriodSeconds": 60}}, "preStopSleepSeconds"),
        ({"scraperWorker": {"hardLimitSeconds": 326}}, "terminationGracePeriodSeconds \\(330\\)"),
        ({"api": {"autoscaling": {"minReplicas": 5, "maxReplicas": 3}}}, "minReplicas"),
        ({"rupturaWorker": {"autoscaling": {"minReplicas": 4, "maxReplicas": 2}}}, "minReplicas"),
        ({"scraperWorker": {"autoscaling": {"fallbackReplicas": 9}}}, "fallbackReplicas"),
        ({"database": {"url": "postgresql://esteira:s3cret@db/esteira"}}, "database.url"),
        (
            {"rupturaSource": {"url": "postgresql://leitor:s3cret@erp/erp", "profile": "x: 1"}},
            "rupturaSource.url",
        ),
        ({"rupturaSource": {"url": "postgresql://leitor@erp/erp"}}, "a URL needs a profile"),
        ({"rupturaSource": {"profileConfigMap": "erp"}}, "a profile needs the database's URL"),
        ({"redis": {"url": "redis://:s3cret@redis:6379/0"}}, "redis.url"),
        ({"api": {"ingress": {"paths": ["metrics"]}}}, "paths"),
        ({"redis": {"sentinels": ["sentinel-0"]}}, "sentinels"),
        (
            {"redis": {"sentinels": ["sentinel-0:26379"], "inChart": {"enabled": True}}},
            "in-chart Redis has no Sentinels",
        ),
    ],
)
def test_bad_values_fail_the_render_with_a_reason(values, complaint) -> None:
    with pytest.raises(HelmError, match=complaint):
        chart.render(values)


def test_cors_origins_reach_the_gateway_only_when_given() -> None:
    def config(values: dict) -> dict[str, str]:
        (configmap,) = [
            obj
            for obj in chart.render(values)
            if obj["kind"] == "ConfigMap" and obj["metadata"]["name"].endswith("-config")
        ]
        return configmap["data"]

    assert "ESTEIRA_CORS_ORIGINS" not in config({})
    origins = ["https://erp.example", "https://erp.example:8443"]
    assert config({"auth": {"corsOrigins": origins}})["ESTEIRA_CORS_ORIGINS"] == ",".join(origins)


def test_the_gateway_caps_no_connections_per_address_behind_the_cluster_proxies() -> None:
    (api,) = [
        obj
        for obj in rendered("default")
        if obj["kind"] == "Deployment" and obj["metadata"]["name"].endswith("-api")
    ]
    env = {
        e["name"]: e.get("value") for e in api["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["ESTEIRA_API_MAX_CONNECTIONS_PER_ADDRESS"] == "0"


def test_only_the_gateway_is_exposed_and_never_its_metrics() -> None:
    ingress = [obj for _, obj in _objects("Ingress")]
    rules = [rule for obj in ingress for rule in obj["spec"]["rules"]]
    paths = {path["path"] for rule in rules for path in rule["http"]["paths"]}
    assert paths == {"/api", "/ui", "/static", "/docs", "/openapi.json", "/livez"}
    backends = {
        path["backend"]["service"]["name"]
        for obj in ingress
        for rule in obj["spec"]["rules"]
        for path in rule["http"]["paths"]
    }
    assert backends == {"esteira-api"}
    for _, obj in _objects("Service"):
        assert obj["spec"].get("type", "ClusterIP") == "ClusterIP"


def test_a_database_url_with_its_password_comes_from_a_secret() -> None:
    values = {"database": {"urlSecret": "esteira-db-url"}}
    objects = {o["kind"] + "/" + o["metadata"]["name"]: o for o in chart.render(values)}
    assert "ESTEIRA_DATABASE_URL" not in objects["ConfigMap/esteira-config"]["data"]
    api = objects["Deployment/esteira-api"]["spec"]["template"]["spec"]
    for container in api["initContainers"] + api["containers"]:
        env = {e["name"]: e for e in container["env"]}
        reference = env["ESTEIRA_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        assert reference == {"name": "esteira-db-url", "key": "database-url"}


def test_postgresql_tls_trusts_the_given_ca() -> None:
    keda = {o["kind"] + "/" + o["metadata"]["name"]: o for o in rendered("keda")}
    config = keda["ConfigMap/esteira-config"]["data"]
    assert config["PGSSLMODE"] == "verify-full"
    assert config["PGSSLROOTCERT"] == "/etc/esteira/database-ca/ca.crt"
    for name in ("esteira-api", "esteira-ruptura-worker", "esteira-scraper-worker"):
        pod = keda[f"Deployment/{name}"]["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["database-ca"]["secret"]["secretName"] == "esteira-db-ca"
        for container in pod.get("initContainers", []) + pod["containers"]:
            mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
            assert mounts["database-ca"] == "/etc/esteira/database-ca"


def test_the_portal_profile_is_mounted_where_the_setting_points() -> None:
    keda = {o["kind"] + "/" + o["metadata"]["name"]: o for o in rendered("keda")}
    profile = keda["ConfigMap/esteira-portal-profile"]["data"]["profile.yaml"]
    assert "typing: keys" in profile
    path = keda["ConfigMap/esteira-config"]["data"]["ESTEIRA_PORTAL_PROFILE"]
    assert path == "/etc/esteira/portal/profile.yaml"
    for name in ("esteira-api", "esteira-scraper-worker"):
        pod = keda[f"Deployment/{name}"]["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["portal-profile"]["configMap"]["name"] == "esteira-portal-profile"
        mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        assert path.startswith(mounts["portal-profile"] + "/")


def _env_entries(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def test_the_ruptura_source_profile_is_mounted_and_its_password_reaches_only_its_readers() -> None:
    """The carteira read from a team's database: the profile mounted where the setting points,
    the URL (no password) in the ConfigMap, the password from its Secret for the gateway and the
    ruptura workers alone (the scrapers never read the carteira)."""
    keda = {o["kind"] + "/" + o["metadata"]["name"]: o for o in rendered("keda")}
    profile = keda["ConfigMap/esteira-ruptura-source"]["data"]["source.yaml"]
    assert "carteira: SELECT * FROM carteira_aberta" in profile
    config = keda["ConfigMap/esteira-config"]["data"]
    assert config["ESTEIRA_RUPTURA_SOURCE_URL"] == (
        "postgresql+psycopg://leitor@erp.example.com:5433/erp"
    )
    path = config["ESTEIRA_RUPTURA_SOURCE_PROFILE"]
    assert path == "/etc/esteira/ruptura-source/source.yaml"
    for name, reads in (
        ("esteira-api", True),
        ("esteira-ruptura-worker", True),
        ("esteira-scraper-worker", False),
    ):
        pod = keda[f"Deployment/{name}"]["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["ruptura-source"]["configMap"]["name"] == "esteira-ruptura-source"
        container = pod["containers"][0]
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert path.startswith(mounts["ruptura-source"] + "/")
        password = _env_entries(container).get("ESTEIRA_RUPTURA_SOURCE_PASSWORD")
        assert (password is not None) == reads, name
        if reads:
            assert password["valueFrom"]["secretKeyRef"] == {
                "name": "esteira-erp",
                "key": "source-password",
            }


def test_a_ruptura_source_url_from_a_secret_stays_out_of_the_configmap() -> None:
    objects = chart.render(
        {"rupturaSource": {"urlSecret": "erp-url", "profileConfigMap": "erp-profile"}}
    )
    by_name = {o["kind"] + "/" + o["metadata"]["name"]: o for o in objects}
    assert "ConfigMap/esteira-ruptura-source" not in by_name
    config = by_name["ConfigMap/esteira-config"]["data"]
    assert "ESTEIRA_RUPTURA_SOURCE_URL" not in config
    assert config["ESTEIRA_RUPTURA_SOURCE_PROFILE"] == "/etc/esteira/ruptura-source/source.yaml"
    worker = by_name["Deployment/esteira-ruptura-worker"]["spec"]["template"]["spec"]
    assert {"name": "ruptura-source", "configMap": {"name": "erp-profile"}} in worker["volumes"]
    url = _env_entries(worker["containers"][0])["ESTEIRA_RUPTURA_SOURCE_URL"]
    assert url["valueFrom"]["secretKeyRef"] == {"name": "erp-url", "key": "source-url"}
    scraper = by_name["Deployment/esteira-scraper-worker"]["spec"]["template"]["spec"]
    assert "ESTEIRA_RUPTURA_SOURCE_URL" not in _env_entries(scraper["containers"][0])


def test_extra_volumes_are_mounted_in_every_container() -> None:
    values = {
        "extraVolumes": [{"name": "certs", "configMap": {"name": "corporate-ca"}}],
        "extraVolumeMounts": [{"name": "certs", "mountPath": "/etc/ssl/corporate"}],
    }
    for pod in (
        o["spec"]["template"]["spec"] for o in chart.render(values) if o["kind"] == "Deployment"
    ):
        assert {"name": "certs", "configMap": {"name": "corporate-ca"}} in pod["volumes"]
        for container in pod.get("initContainers", []) + pod["containers"]:
            assert {"name": "certs", "mountPath": "/etc/ssl/corporate"} in container["volumeMounts"]


def test_pods_roll_when_the_chart_managed_config_changes() -> None:
    def checksums(values: dict) -> set[str]:
        return {
            o["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            for o in chart.render(values)
            if o["kind"] == "Deployment"
        }

    before = checksums({})
    assert len(before) == 1
    assert checksums({"config": {"logLevel": "DEBUG"}}) != before
    assert checksums({"portal": {"profile": "typing: keys"}}) != before
    assert checksums({"api": {"replicas": 3}}) == before


def test_secrets_come_from_secret_references_only() -> None:
    for scenario, obj in _objects("Deployment"):
        for container in obj["spec"]["template"]["spec"]["containers"]:
            for env in container.get("env") or []:
                if env["name"].endswith(("PASSWORD", "API_KEYS")) and "valueFrom" not in env:
                    pytest.fail(f"{scenario}: {env['name']} given as a plain value")
    keda = {obj["kind"] + "/" + obj["metadata"]["name"]: obj for obj in rendered("keda")}
    api_env = {
        e["name"]: e
        for e in keda["Deployment/esteira-api"]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert api_env["ESTEIRA_API_KEYS"]["valueFrom"]["secretKeyRef"]["name"] == "esteira-api-keys"
    assert api_env["ESTEIRA_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "esteira-redis"
    config = keda["ConfigMap/esteira-config"]["data"]
    assert config["ESTEIRA_REDIS_URL"].startswith("rediss://")
    assert config["ESTEIRA_REDIS_TLS_CA_FILE"] == "/etc/esteira/redis-ca/ca.crt"


def test_the_keda_trigger_is_the_recording_rule_and_falls_back_without_metrics() -> None:
    rules = chart.rules(SCENARIOS["keda"])
    demand = {
        rule["labels"]["pool"]: " ".join(rule["expr"].split())
        for group in rules["groups"]
        for rule in group["rules"]
        if rule.get("record") == "esteira:worker_demand:ratio"
    }
    triggers = {
        obj["metadata"]["name"]: obj["spec"]["triggers"][0]["metadata"]["query"]
        for obj in rendered("keda")
        if obj["kind"] == "ScaledObject"
    }
    assert {k: " ".join(v.split()) for k, v in triggers.items()} == {
        "esteira-ruptura-worker": demand["ruptura"],
        "esteira-scraper-worker": demand["scraper"],
    }
    scaled = {
        o["metadata"]["name"]: o["spec"] for o in rendered("keda") if o["kind"] == "ScaledObject"
    }
    assert scaled["esteira-scraper-worker"]["minReplicaCount"] == 0
    assert scaled["esteira-ruptura-worker"]["minReplicaCount"] == 1
    # An empty answer (no gateway metrics) is an error, not a 0; errors hold the fallback.
    for spec in scaled.values():
        assert spec["triggers"][0]["metadata"]["ignoreNullValues"] == "false"
        assert spec["fallback"]["replicas"] >= 1 and spec["fallback"]["failureThreshold"] >= 1
        assert spec["triggers"][0]["metricType"] == "AverageValue"  # fallback needs it
    assert scaled["esteira-scraper-worker"]["fallback"]["replicas"] == 1


def test_every_query_is_scoped_to_its_namespace_and_release() -> None:
    staging = chart.rules({}, "esteira", "staging")
    for group in staging["groups"]:
        for rule in group["rules"]:
            for selector in re.findall(r"\b(?:esteira_[a-z_]+|up)\{[^}]*\}", rule["expr"]):
                assert 'namespace="staging"' in selector, (rule, selector)
                assert re.search(r'job=~?"esteira-', selector), (rule, selector)
            assert rule.get("labels", {}).get("release") == "esteira", rule
    for path in (chart.CHART / "files" / "dashboards").glob("*.json"):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                for selector in re.findall(r"\besteira[a-z_:]*\{[^}]*\}", target["expr"]):
                    assert 'namespace="$namespace"' in selector, (path.name, selector)
    hpa = [
        o
        for o in chart.render(SCENARIOS["hpa"], "esteira", "staging")
        if o["kind"] == "HorizontalPodAutoscaler"
    ]
    for obj in hpa:
        if obj["spec"]["metrics"][0]["type"] == "External":
            labels = obj["spec"]["metrics"][0]["external"]["metric"]["selector"]["matchLabels"]
            assert labels["namespace"] == "staging" and labels["release"] == "esteira"


def test_service_monitors_carry_kube_prometheus_stacks_default_selector_label() -> None:
    values = {"monitoring": {"serviceMonitor": {"force": True}, "prometheusRule": {"force": True}}}
    monitored = [
        o for o in chart.render(values) if o["kind"] in ("ServiceMonitor", "PrometheusRule")
    ]
    assert len(monitored) == 4
    assert all(o["metadata"]["labels"]["release"] == "kube-prometheus-stack" for o in monitored)


def test_the_chart_works_as_a_subchart() -> None:
    assert chart.render({"global": {"imageRegistry": "registry.example.com", "anything": {"x": 1}}})


def test_dashboards_are_configmaps_for_the_grafana_sidecar() -> None:
    maps = [
        o
        for o in rendered("default")
        if o["kind"] == "ConfigMap" and "dashboard" in o["metadata"]["name"]
    ]
    assert len(maps) == len(list((chart.CHART / "files" / "dashboards").glob("*.json"))) == 2
    assert all(m["metadata"]["labels"]["grafana_dashboard"] == "1" for m in maps)


def test_the_generated_files_are_fresh() -> None:
    assert chart.main(["manifests", "--check"]) == 0, "run make manifests"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomize_builds_both_kustomizations() -> None:
    for path in ("deploy/k8s", "deploy/skaffold"):
        built = subprocess.run(
            ["kubectl", "kustomize", path], cwd=ROOT, capture_output=True, text=True, check=False
        )
        assert built.returncode == 0, built.stderr
        assert built.stdout.count("\nkind: Deployment") == 3


def test_the_dockerfile_is_hadolint_clean() -> None:
    linted = subprocess.run(
        ["hadolint", "Dockerfile"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_skaffold_builds_each_image_from_its_own_dockerfile_target() -> None:
    config = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    assert config["apiVersion"] == "skaffold/v3"
    stages = set(re.findall(r"^FROM \S+ AS (\S+)$", (ROOT / "Dockerfile").read_text(), re.M))
    artifacts = config["build"]["artifacts"]
    assert {a["docker"]["target"] for a in artifacts} == COMPONENTS <= stages
    for artifact in artifacts:
        docker = artifact["docker"]
        assert docker["buildArgs"] == {"SERVICE": docker["target"]}
        assert artifact["image"] == f"esteira-{docker['target']}"
    assert config["build"]["tagPolicy"] == {"gitCommit": {}}
    assert {p["name"] for p in config["profiles"]} == {"dev", "kustomize"}
    templates = config["deploy"]["helm"]["releases"][0]["setValueTemplates"]
    assert set(templates) == {"api.image", "rupturaWorker.image", "scraperWorker.image"}


@pytest.mark.parametrize(("tls", "scheme"), [("esteira-tls", "https"), ("", "http")])
def test_the_notes_print_the_scheme_the_ingress_serves(tls: str, scheme: str) -> None:
    values = {"api": {"ingress": {"enabled": True, "host": "e.example", "tlsSecret": tls}}}
    notes = chart.render_files(values)["esteira/templates/NOTES.txt"]
    assert f"{scheme}://e.example" in notes
    assert ("https://e.example" in notes) == (scheme == "https")


def test_the_skaffold_dev_release_renders_with_its_values() -> None:
    """skaffold dev's values (a values file and --set pairs) pass the chart's schema: no
    password in a URL, for one."""
    config = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    (dev,) = [p for p in config["profiles"] if p["name"] == "dev"]
    (release,) = [r for r in dev["deploy"]["helm"]["releases"] if r.get("chartPath")]
    values: dict = {}
    for path in release["valuesFiles"]:
        values.update(yaml.safe_load((ROOT / path).read_text()))
    for dotted, value in release["setValues"].items():
        *parents, leaf = dotted.split(".")
        node = values
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    assert any(o["kind"] == "Deployment" for o in chart.render(values))


def test_with_sentinels_every_process_asks_them_for_the_primary() -> None:
    objects = {o["kind"] + "/" + o["metadata"]["name"]: o for o in rendered("sentinel")}
    config = objects["ConfigMap/esteira-config"]["data"]
    assert config["ESTEIRA_REDIS_SENTINELS"] == ",".join(
        f"redis-node-{n}.redis-headless:26379" for n in range(3)
    )
    assert config["ESTEIRA_REDIS_MASTER_NAME"] == "esteira"
    for component in COMPONENTS:
        spec = objects[f"Deployment/esteira-{component}"]["spec"]["template"]["spec"]
        env = {e["name"]: e for e in spec["containers"][0]["env"]}
        assert env["ESTEIRA_REDIS_SENTINEL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": "esteira-redis",
            "key": "sentinel-password",
        }
    without = {o["kind"] + "/" + o["metadata"]["name"]: o for o in rendered("default")}
    assert "ESTEIRA_REDIS_SENTINELS" not in without["ConfigMap/esteira-config"]["data"]


def test_the_in_chart_redis_keeps_an_append_only_file_on_its_volume() -> None:
    objects = {o["kind"] + "/" + o["metadata"]["name"]: o for o in rendered("trial")}
    spec = objects["Deployment/esteira-redis"]["spec"]["template"]["spec"]
    args = spec["containers"][0]["args"]
    flags = dict(zip(args[::2], args[1::2], strict=True))
    assert flags["--appendonly"] == "yes" and flags["--appendfsync"] == "everysec"
    mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
    assert mounts[flags["--dir"]] in {volume["name"] for volume in spec["volumes"]}

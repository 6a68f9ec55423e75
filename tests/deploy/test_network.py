"""The chart's NetworkPolicies read as a firewall: a small evaluator of the rendered policies
(NetworkPolicy semantics: a pod selected by a policy of a direction accepts, in that direction,
only what one of those policies' rules allows) asked about every connection to or from an
Esteira pod, in a cluster with an ingress controller, Prometheus, DNS, strangers and outside
addresses. What it allows must be exactly the list the chart README promises."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pytest

from esteira_devtools import chart

NAMESPACE = "esteira"


@dataclass(frozen=True)
class Pod:
    name: str
    namespace: str
    labels: dict[str, str] = field(hash=False)
    ports: dict[str, int] = field(hash=False)  # port name -> number


@dataclass(frozen=True)
class Address:
    name: str
    ip: str


Endpoint = tuple[str, int, str]  # destination name, port, protocol


@cache
def _objects(scenario: str, extra: str = "") -> tuple[dict[str, Any], ...]:
    values = dict(chart.scenarios()[scenario])
    if extra == "in-chart-redis":
        values["redis"] = {**values.get("redis", {}), "inChart": {"enabled": True}}
    return tuple(chart.render(values))


def cluster(objects: tuple[dict[str, Any], ...]) -> list[Pod]:
    pods = [
        Pod("ingress-controller", "ingress-nginx", {"app": "ingress-nginx"}, {"http": 80}),
        Pod("prometheus", "monitoring", {"app": "prometheus"}, {"web": 9090}),
        Pod("kube-dns", "kube-system", {"k8s-app": "kube-dns"}, {"dns": 53}),
        Pod("stranger", "other", {"app": "other"}, {"http": 8080}),
        Pod("neighbour", NAMESPACE, {"app": "neighbour"}, {"http": 8080}),
    ]
    for obj in objects:
        if obj["kind"] == "Deployment":
            template = obj["spec"]["template"]
            ports = {
                p["name"]: p["containerPort"]
                for c in template["spec"]["containers"]
                for p in c.get("ports", [])
            }
            name = obj["metadata"]["name"].removeprefix("esteira-")
            pods.append(Pod(name, NAMESPACE, template["metadata"]["labels"], ports))
    return pods


OUTSIDE = [
    Address("redis.example", "10.20.0.5"),
    Address("postgres.example", "10.20.0.6"),
    Address("portal.example", "203.0.113.10"),
    Address("other-host", "10.20.0.7"),
    Address("erp.example", "10.30.0.7"),
    Address("metadata", "169.254.169.254"),
    Address("internet", "8.8.8.8"),
]
OUTSIDE_PORTS = [80, 443, 5432, 5433, 6379, 6380, 26379]


def _matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    if selector is None:
        return True
    assert "matchExpressions" not in selector, "the evaluator reads matchLabels only"
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def _namespace_labels(namespace: str) -> dict[str, str]:
    return {"kubernetes.io/metadata.name": namespace}


def _peer_matches(peer: dict[str, Any], policy_ns: str, other: Pod | Address) -> bool:
    if "ipBlock" in peer:
        if not isinstance(other, Address):
            return False  # pods here have no addresses of their own
        block = peer["ipBlock"]
        ip = ipaddress.ip_address(other.ip)
        inside = ip in ipaddress.ip_network(block["cidr"])
        return inside and not any(ip in ipaddress.ip_network(e) for e in block.get("except", []))
    if not isinstance(other, Pod):
        return False
    if "namespaceSelector" in peer:
        in_namespace = _matches(peer["namespaceSelector"], _namespace_labels(other.namespace))
    else:
        in_namespace = other.namespace == policy_ns
    return in_namespace and _matches(peer.get("podSelector"), other.labels)


def _port_matches(rule: dict[str, Any], target: Pod | Address, port: int, protocol: str) -> bool:
    ports = rule.get("ports")
    if not ports:
        return True
    for entry in ports:
        if entry.get("protocol", "TCP") != protocol:
            continue
        number = entry.get("port")
        if isinstance(number, str):
            number = target.ports.get(number) if isinstance(target, Pod) else None
        if number is None or number == port:
            return True
    return False


def _allowed_by(
    policies: list[dict[str, Any]], direction: str, selected: Pod, other: Pod | Address,
    target: Pod | Address, port: int, protocol: str,
) -> bool:  # fmt: skip
    kind = "Ingress" if direction == "ingress" else "Egress"
    peers_key = "from" if direction == "ingress" else "to"
    mine = [
        p
        for p in policies
        if p["metadata"].get("namespace", NAMESPACE) == selected.namespace
        and kind in p["spec"]["policyTypes"]
        and _matches(p["spec"]["podSelector"], selected.labels)
    ]
    if not mine:
        return True
    for policy in mine:
        for rule in policy["spec"].get(direction) or []:
            peers = rule.get(peers_key)
            if peers and not any(_peer_matches(p, selected.namespace, other) for p in peers):
                continue
            if _port_matches(rule, target, port, protocol):
                return True
    return False


def allowed(objects: tuple[dict[str, Any], ...]) -> set[tuple[str, Endpoint]]:
    """Every (source, (destination, port, protocol)) connection allowed to or from an Esteira
    pod."""
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    pods = cluster(objects)
    esteira = {p.name for p in pods if p.labels.get("app.kubernetes.io/part-of") == "esteira"}
    esteira |= {p.name for p in pods if p.labels.get("app.kubernetes.io/name") == "esteira"}
    found = set()
    for source in pods:
        targets: list[tuple[Pod | Address, int, str]] = [
            (pod, port, protocol)
            for pod in pods
            if pod != source
            for port in pod.ports.values()
            for protocol in ("TCP", "UDP")
        ]
        targets += [(a, port, "TCP") for a in OUTSIDE for port in OUTSIDE_PORTS]
        for target, port, protocol in targets:
            if source.name not in esteira and target.name not in esteira:
                continue
            out = _allowed_by(policies, "egress", source, target, target, port, protocol)
            inside = not isinstance(target, Pod) or _allowed_by(
                policies, "ingress", target, source, target, port, protocol
            )
            if out and inside:
                found.add((source.name, (target.name, port, protocol)))
    return found


def _esteira_egress(portal: list[Endpoint], redis: list[Endpoint], database: list[Endpoint]):
    expected = set()
    for pod in ("api", "ruptura-worker", "scraper-worker"):
        expected |= {(pod, ("kube-dns", 53, "UDP")), (pod, ("kube-dns", 53, "TCP"))}
        expected |= {(pod, e) for e in redis + database}
        if pod != "ruptura-worker":
            expected |= {(pod, e) for e in portal}
    return expected


# The default portal rule: any address but link-local (the clouds' metadata), on port 80.
PORTAL_ANYWHERE = [(a.name, 80, "TCP") for a in OUTSIDE if a.name != "metadata"]


SCRAPES = {
    ("ingress-controller", ("api", 8000, "TCP")),
    ("prometheus", ("api", 8000, "TCP")),
    ("prometheus", ("ruptura-worker", 9101, "TCP")),
    ("prometheus", ("scraper-worker", 9102, "TCP")),
}


# The team's database the carteira is read from (the production scenario's rupturaSource).
ERP = {(pod, ("erp.example", 5433, "TCP")) for pod in ("api", "ruptura-worker")}


def test_the_production_scenario_allows_exactly_what_is_promised() -> None:
    expected = (
        SCRAPES
        | ERP
        | _esteira_egress(
            portal=[("portal.example", 443, "TCP")],
            redis=[("redis.example", 6380, "TCP")],
            database=[("postgres.example", 5432, "TCP")],
        )
    )
    assert allowed(_objects("keda")) == expected


def test_the_defaults_allow_any_address_on_the_service_ports_but_never_metadata() -> None:
    found = allowed(_objects("default"))
    expected = SCRAPES | _esteira_egress(
        portal=PORTAL_ANYWHERE,
        redis=[(a.name, 6379, "TCP") for a in OUTSIDE],
        database=[(a.name, 5432, "TCP") for a in OUTSIDE],
    )
    assert found == expected
    assert ("api", ("metadata", 80, "TCP")) not in found


def test_with_the_in_chart_redis_only_esteira_reaches_it() -> None:
    found = allowed(_objects("keda", "in-chart-redis"))
    expected = (
        SCRAPES
        | ERP
        | _esteira_egress(
            portal=[("portal.example", 443, "TCP")],
            redis=[("redis", 6379, "TCP")],
            database=[("postgres.example", 5432, "TCP")],
        )
    )
    assert found == expected
    assert ("neighbour", ("redis", 6379, "TCP")) not in found


def test_with_sentinels_esteira_reaches_redis_and_its_sentinels_only() -> None:
    found = allowed(_objects("sentinel"))
    expected = SCRAPES | _esteira_egress(
        portal=PORTAL_ANYWHERE,
        redis=[("redis.example", 6379, "TCP"), ("redis.example", 26379, "TCP")],
        database=[(a.name, 5432, "TCP") for a in OUTSIDE],
    )
    assert found == expected
    assert ("api", ("other-host", 26379, "TCP")) not in found


@pytest.mark.parametrize(
    ("source", "endpoint"),
    [
        ("stranger", ("api", 8000, "TCP")),
        ("neighbour", ("api", 8000, "TCP")),
        ("ingress-controller", ("ruptura-worker", 9101, "TCP")),
        ("api", ("ruptura-worker", 9101, "TCP")),
        ("api", ("metadata", 80, "TCP")),
        ("scraper-worker", ("internet", 443, "TCP")),
        ("ruptura-worker", ("portal.example", 443, "TCP")),
        ("api", ("other-host", 5432, "TCP")),
        ("scraper-worker", ("erp.example", 5433, "TCP")),
    ],
)
def test_what_is_not_listed_is_refused(source: str, endpoint: Endpoint) -> None:
    assert (source, endpoint) not in allowed(_objects("keda"))

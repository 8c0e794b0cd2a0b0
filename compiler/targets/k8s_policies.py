"""k8s/networkpolicy.yaml: least privilege on the network for every pod the bundle
creates (a part of the k8s target, as k8s_workloads.py is).

NetworkPolicies add up: a pod selected by any policy of a direction accepts only what
some policy allows. So the bundle has

* `<name>-default-deny`: every pod of the bundle (its `app.kubernetes.io/instance`),
  no ingress and no egress;
* `<name>-dns`: every pod may ask the cluster DNS (kube-system's kube-dns, port 53);
* `<name>-train` (a train block): the MPIJob's launcher and workers talk to each other
  on any port (sshd on 2222, then MPI's and Gloo's ports, which they pick at run time);
* `<name>-search` (search on Spark or MongoDB): the cluster the spec names at run time
  (LLMC_SPARK_MASTER, LLMC_MONGO_URL) is reached anywhere on its port; Spark's executors
  connect back to the driver, so the Spark search accepts them from the namespace;
* `<name>-search-trials` (search on Katib): the trials' pods (search/katib-experiment.yaml)
  reach Katib's DB manager, where the metrics collector Katib adds to each of them
  reports the objective;
* `<name>` (a serve block): the server accepts its serving ports from the namespace's
  pods and its metrics port from the monitoring namespace's (Prometheus).

compress and evaluate read and write the artifacts volume only: the default deny and
DNS are all they get. The kubelet's probes are not pod traffic and pass.
"""

from __future__ import annotations

from typing import NamedTuple

from . import BuildContext
from .k8s_common import KV, Names, ServingPlan
from .k8s_workloads import TRIAL_COMPONENT, Meta, _labels, _selector

# The namespace Prometheus scrapes from (kube-prometheus-stack's default).
MONITORING_NAMESPACE = "monitoring"
DNS = [KV("k8s-app", "kube-dns")]
SYSTEM = [KV("kubernetes.io/metadata.name", "kube-system")]
MONGO_PORT = 27017
# Where a Katib trial's metrics collector reports: Katib's default install
# (katib-db-manager.kubeflow:6789, its pods labelled katib.kubeflow.org/component=db-manager).
KATIB_NAMESPACE = "kubeflow"
KATIB_DB_MANAGER = [KV("katib.kubeflow.org/component", "db-manager")]
KATIB_DB_MANAGER_PORT = 6789


class Peer(NamedTuple):
    """One `from`/`to` entry: pods by labels (`[]`: every pod) in namespaces by labels
    (None: the policy's own namespace)."""

    pods: list[KV] | None
    namespaces: list[KV] | None = None


class Port(NamedTuple):
    port: int | str
    protocol: str = "TCP"


class Rule(NamedTuple):
    peers: list[Peer]  # []: any peer
    ports: list[Port]  # []: any port


class Direction(NamedTuple):
    name: str  # "ingress" | "egress"
    peer_key: str  # "from" | "to"
    rules: list[Rule]  # []: nothing allowed


class Policy(NamedTuple):
    meta: Meta
    why: str
    selector: list[KV]
    directions: list[Direction]

    @property
    def types(self) -> list[str]:
        return [d.name.capitalize() for d in self.directions]


def _policy(meta: Meta, why: str, selector: list[KV], ingress=None, egress=None) -> Policy:
    """A policy over `selector`'s pods; a direction left None is not restricted by it."""
    directions = []
    if ingress is not None:
        directions.append(Direction("ingress", "from", ingress))
    if egress is not None:
        directions.append(Direction("egress", "to", egress))
    return Policy(meta, why, selector, directions)


class PoliciesContext(NamedTuple):
    policies: list[Policy]


def policies(ctx: BuildContext, n: Names, plan: ServingPlan | None) -> PoliciesContext:
    ir = ctx.ir
    everyone = [KV("app.kubernetes.io/instance", n.base)]
    out = [
        _policy(
            Meta(f"{n.base}-default-deny", n.namespace, _labels(n, "network"), []),
            "Every pod of the bundle: nothing in, nothing out, but what the policies below allow.",
            everyone,
            ingress=[],
            egress=[],
        ),
        _policy(
            Meta(f"{n.base}-dns", n.namespace, _labels(n, "network"), []),
            "Every pod of the bundle may resolve names with the cluster DNS.",
            everyone,
            egress=[Rule([Peer(DNS, SYSTEM)], [Port(53, "UDP"), Port(53, "TCP")])],
        ),
    ]
    if ir.train is not None:
        team = [Peer(_selector(n, "train"))]
        out.append(
            _policy(
                Meta(f"{n.base}-train", n.namespace, _labels(n, "train"), []),
                "The MPIJob's launcher and workers: sshd on 2222, then MPI and Gloo on ports they pick.",
                _selector(n, "train"),
                ingress=[Rule(team, [])],
                egress=[Rule(team, [])],
            )
        )
    if ir.search is not None and ir.search.backend in ("spark", "mongo"):
        spark = ir.search.backend == "spark"
        out.append(
            _policy(
                Meta(f"{n.base}-search", n.namespace, _labels(n, "search"), []),
                "The search reaches the Spark cluster, whose executors connect back to the driver."
                if spark
                else "The search reaches MongoDB, whose address is set at run time.",
                _selector(n, "search"),
                ingress=[Rule([Peer([])], [])] if spark else None,
                egress=[Rule([], [] if spark else [Port(MONGO_PORT)])],
            )
        )
    if ir.search is not None and ir.search.backend == "katib":
        katib = [Peer(KATIB_DB_MANAGER, [KV("kubernetes.io/metadata.name", KATIB_NAMESPACE)])]
        out.append(
            _policy(
                Meta(f"{n.base}-search-trials", n.namespace, _labels(n, TRIAL_COMPONENT), []),
                "Katib's trials: the metrics collector in each trial's pod reports the objective to Katib's "
                f"DB manager in `{KATIB_NAMESPACE}`.",
                _selector(n, TRIAL_COMPONENT),
                egress=[Rule(katib, [Port(KATIB_DB_MANAGER_PORT)])],
            )
        )
    if plan is not None:
        serving = [Port(plan.http_port), Port(plan.grpc_port)]
        rules = [Rule([Peer([])], serving)]
        monitoring = [Peer([], [KV("kubernetes.io/metadata.name", MONITORING_NAMESPACE)])]
        rules.append(Rule(monitoring, [Port(plan.metrics_port)]))
        out.append(
            _policy(
                Meta(n.base, n.namespace, _labels(n, "server"), []),
                f"The server: its serving ports from the namespace's pods, its metrics port from "
                f"Prometheus in `{MONITORING_NAMESPACE}`.",
                _selector(n, "server"),
                ingress=rules,
            )
        )
    return PoliciesContext(out)

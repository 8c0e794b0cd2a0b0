"""Replica sizing (docs/estimates.md, "Replicas"): the replicas of an M/M/c queue
(Erlang C) whose predicted percentile latency, batching included, meets the target."""

import math
from collections.abc import Callable
from typing import NamedTuple

from .numeric import _INF, _ceil_clamp, _clean, _div, _num, _prod, format_seconds

MARGINAL_BATCH_COST = 0.1  # S(B) = S(1)(1 + (B-1) f) when no batch-aware service time is given
EXACT_ERLANG_LOAD = 1e6  # above this offered load (erlangs) Erlang C uses the Halfin-Whitt approximation


def _erlang_b_inverse(c: int, a: float) -> float:
    """1 / ErlangB(c, a) for integer c > a > 0, summed from the top so that it stops early.

    1/B = sum_{k=0..c} c! / (k! a^(c-k)) = sum_j prod_{i<j} (c - i) / a. The terms grow
    while c - i > a and then fall off like a Poisson tail, so the sum is cut when a term
    is below 1e-17 of the total (about (c - a) + 9 sqrt(a) terms), or when it passes
    1e300 (B is then 0 to double precision).
    """
    total = term = 1.0
    for i in range(c):
        term *= (c - i) / a
        total += term
        if total > 1e300:
            return _INF
        if term < 1e-17 * total:
            break
    return total


def erlang_c(servers, offered_load) -> float:
    """Probability that an arrival waits in an M/M/c queue: Erlang C(c, a), a = lambda/mu in erlangs.

    1 when a >= c (the queue grows without bound). Exact (from Erlang B,
    C = c B / (c - a (1 - B))) for offered loads up to EXACT_ERLANG_LOAD erlangs; above
    that the Halfin-Whitt approximation C = 1 / (1 + beta Phi(beta) / phi(beta)),
    beta = (c - a) / sqrt(a), which is within a few percent there. A fractional server
    count is rounded down.
    """
    c = _num(servers)
    a = _num(offered_load)
    if a != a or c != c:
        return 1.0
    if a <= 0:
        return 0.0
    if not math.isinf(c):
        c = float(math.floor(c))
    if c <= 0 or a >= c:
        return 1.0
    if math.isinf(c):
        return 0.0
    if a > EXACT_ERLANG_LOAD:
        beta = _div(c - a, math.sqrt(a))
        if beta >= 38.0:
            return 0.0
        phi = math.exp(-beta * beta / 2) / math.sqrt(2 * math.pi)
        Phi = 0.5 * (1 + math.erf(beta / math.sqrt(2)))
        return 1.0 / (1.0 + beta * Phi / phi)
    inv_b = _erlang_b_inverse(int(c), a)
    if math.isinf(inv_b):
        return 0.0
    b = 1.0 / inv_b
    return min(1.0, max(0.0, c * b / (c - a * (1 - b))))


class Sizing(NamedTuple):
    """Replicas needed to serve `arrival_rps` within the target percentile latency."""

    replicas: float  # an int when feasible; math.inf when no replica count meets the target
    feasible: bool
    arrival_rps: float
    target_s: float
    percentile: float
    batch_size: float  # the batch a request rides in at this load and replica count
    batch_service_s: float  # S(batch_size)
    replica_capacity_rps: float  # mu = max_batch_size / S(max_batch_size): a backlogged replica's rate
    utilisation: float  # lambda / (c mu)
    erlang_c: float  # probability a request finds every replica backlogged and queues
    wait_percentile_s: float  # the percentile of that queueing wait
    predicted_s: float  # predicted percentile latency: wait + batch timeout + S(batch_size)
    mean_response_s: float  # C / (c mu - lambda) + timeout + S(batch_size)
    in_system: float  # Little's law: L = lambda x mean response
    model: str
    # Why infeasible: "latency" (even unloaded a request misses the target) or
    # "replicas" (more than max_replicas would be needed); "" when feasible.
    limit: str = ""
    max_replicas: int = 2**62

    @property
    def offered_load(self) -> float:
        """lambda / mu: the replicas' worth of work the traffic brings, before any queueing."""
        return _div(self.arrival_rps, self.replica_capacity_rps)

    def explain(self) -> str:
        q = f"p{self.percentile * 100:g}"
        if not self.feasible and self.limit == "replicas":
            return (
                f"infeasible: {self.arrival_rps:.4g} req/s at {self.replica_capacity_rps:.4g} req/s per replica "
                f"(full batches) is {self.offered_load:.4g} replicas' worth of work before any queueing, "
                f"more than the {self.max_replicas} replicas that can be counted"
            )
        if not self.feasible:
            return (
                f"infeasible: even unloaded a request takes {format_seconds(self.predicted_s)} "
                f"(service {format_seconds(self.batch_service_s)} + batching window), "
                f"above the {q} target {format_seconds(self.target_s)}"
            )
        noun = "replica" if self.replicas == 1 else "replicas"
        return (
            f"{self.replicas} {noun} of {self.replica_capacity_rps:.4g} req/s each (full batches): "
            f"utilisation {self.utilisation:.1%}, P(queue) {self.erlang_c:.3f}, {q} queueing "
            f"{format_seconds(self.wait_percentile_s)} + batching window + batch of {self.batch_size:g} in "
            f"{format_seconds(self.batch_service_s)} = {q} {format_seconds(self.predicted_s)} <= "
            f"{format_seconds(self.target_s)}; {self.in_system:.3g} requests in the system on average"
        )


def replicas_needed(
    arrival_rps,
    service_time_s,
    p99_s,
    max_batch_size,
    batch_timeout_s,
    *,
    batch_service_time: Callable[[float], float] | None = None,
    marginal_batch_cost=MARGINAL_BATCH_COST,
    percentile=0.99,
    shared_queue=True,
    max_replicas: int = 2**62,
    instances: int = 1,
) -> Sizing:
    """Smallest replica count c whose predicted `percentile` latency is within `p99_s`.

    Model (docs/estimates.md, "Replicas"). S(B), the time to serve a batch of B, is
    `batch_service_time(B)` when given (e.g. the roofline `request_latency(...,
    batch=B).total_s`), else S(1) (1 + (B - 1) marginal_batch_cost), with S(1) =
    `service_time_s`.

    * Capacity: a backlogged replica's dynamic batcher takes full batches, so each of its
      `instances` model instances (batches run at once: the device's serving_instances)
      serves max_batch_size / S(max_batch_size) requests per second, and the replica
      mu = instances x that.
    * Queueing: the replicas are the c servers of an M/M/c queue (Poisson arrivals at
      lambda = `arrival_rps`, offered load a = lambda / mu; a replica of k instances
      counts as k servers of mu / k each). Erlang C gives the
      probability C(c, a) of having to queue, and P(W > t) = C exp(-(c mu - lambda) t),
      so the wait's percentile q is ln(C / (1 - q)) / (c mu - lambda) (0 when C <= 1 - q).
    * A request also waits up to the batching timeout for its batch to fill and then
      rides in a batch of B = min(max_batch_size, max(1, ceil(lambda / c (timeout +
      S(B))))) requests (those arriving within one window plus one batch service;
      the least fixed point), taking S(B).
    * Predicted latency = queueing wait percentile + timeout + S(B); Little's law gives
      the mean number of requests in the system, L = lambda x mean response.

    The prediction rises with lambda and falls with c, so the smallest c is found by
    bisection and replicas never fall as throughput grows. Infeasible (replicas = inf)
    when S(1) + timeout already exceeds the target: no number of replicas helps
    (limit "latency"); or when more than `max_replicas` would be needed (limit
    "replicas": a Deployment counts its replicas in an int32).

    M/M/c assumes one shared queue: a request goes to whichever replica frees up first
    (least-outstanding-requests load balancing approximates it). `shared_queue=False`
    models independent per-replica queues (random or round-robin routing, e.g. a plain
    Kubernetes Service): c separate M/M/1 queues at lambda / c, where C = lambda / (c mu)
    and the decay rate is mu - lambda / c; it needs more replicas at high utilisation.
    """
    lam = max(0.0, _num(arrival_rps))
    s1 = _num(service_time_s)
    target = _num(p99_s)
    max_b = max(1.0, _num(max_batch_size))
    if not math.isinf(max_b):
        max_b = float(math.floor(max_b))
    T = max(0.0, _num(batch_timeout_s))
    q = min(max(_num(percentile), 0.0), 1.0 - 1e-12)
    f = max(0.0, _num(marginal_batch_cost))

    def S(bs: float) -> float:
        if batch_service_time is not None:
            v = _num(batch_service_time(bs if math.isinf(bs) else int(bs)))
        else:
            v = s1 * (1.0 + _prod(bs - 1.0, f))
        return _INF if v != v else max(v, 0.0)

    queue = "M/M/c (Erlang C, one shared queue)" if shared_queue else "c x M/M/1 (independent per-replica queues)"
    model = (
        f"{queue}; a backlogged replica serves full batches of {max_b:g}; a request waits "
        f"p{q * 100:g} of the Erlang C queueing wait + the {format_seconds(T)} batching window + "
        f"its batch's service time, its batch holding the requests that arrive within one window "
        f"plus one batch service; L = lambda W (Little's law)"
    )

    s_full = S(max_b)
    k = max(1, int(instances))
    mu_instance = _div(max_b, s_full)
    mu = _prod(k, mu_instance)

    def own_batch(c: float) -> float:
        lam_r = _div(lam, c)
        bs = 1.0
        for _ in range(64):
            nb = _ceil_clamp(lam_r * (T + S(bs)), 1, max_b)
            if nb <= bs:
                return bs
            bs = nb
        # Not settled after 64 rounds: bisect for the least B with g(B) <= B (g(max_b) <= max_b always).
        lo, hi = int(bs), (int(max_b) if not math.isinf(max_b) else 2**62)
        for _ in range(200):
            if hi - lo <= 1:
                break
            mid = (lo + hi) // 2
            if _ceil_clamp(lam_r * (T + S(mid)), 1, max_b) <= mid:
                hi = mid
            else:
                lo = mid
        return float(hi)

    def evaluate(c: float) -> dict:
        # The queueing model's servers are the model instances: k per replica.
        n = _prod(c, k)
        bs = own_batch(n)
        sb = S(bs)
        a = _div(lam, mu_instance)
        util = _div(a, n)
        if lam == 0:
            base = _clean(T + sb)
            return {"c": c, "bs": bs, "sb": sb, "util": 0.0, "C": 0.0, "w": 0.0, "pred": base, "mean": base, "L": 0.0}
        if not (a < n) or math.isinf(sb):
            return {
                "c": c,
                "bs": bs,
                "sb": sb,
                "util": util,
                "C": 1.0,
                "w": _INF,
                "pred": _INF,
                "mean": _INF,
                "L": _INF,
            }
        if shared_queue:
            C = erlang_c(n, a)
            gap = _clean(n * mu_instance - lam)
        else:
            C = min(1.0, util)
            gap = _clean(mu_instance - _div(lam, n))
        if gap <= 0:
            w = mean_w = _INF
        else:
            w = _clean(math.log(C / (1 - q)) / gap) if (1 - q) < C else 0.0
            mean_w = _div(C, gap)
        pred = _clean(w + T + sb)
        mean = _clean(mean_w + T + sb)
        return {
            "c": c,
            "bs": bs,
            "sb": sb,
            "util": util,
            "C": C,
            "w": w,
            "pred": pred,
            "mean": mean,
            "L": _prod(lam, mean),
        }

    cap = max(1, int(max_replicas))

    def result(ev: dict, feasible: bool, limit: str = "") -> Sizing:
        c = ev["c"]
        return Sizing(
            replicas=(int(c) if feasible and not math.isinf(c) else _INF),
            feasible=feasible,
            arrival_rps=lam,
            target_s=target,
            percentile=q,
            batch_size=ev["bs"],
            batch_service_s=ev["sb"],
            replica_capacity_rps=mu,
            utilisation=ev["util"],
            erlang_c=ev["C"],
            wait_percentile_s=ev["w"],
            predicted_s=ev["pred"],
            mean_response_s=ev["mean"],
            in_system=ev["L"],
            model=model,
            limit=limit,
            max_replicas=cap,
        )

    # The floor: with enough replicas, batches shrink to 1 and nobody queues.
    floor = _clean(S(1.0) + T)
    if not (floor <= target):
        return result(
            {
                "c": _INF,
                "bs": 1.0,
                "sb": S(1.0),
                "util": 0.0,
                "C": 0.0,
                "w": 0.0,
                "pred": floor,
                "mean": floor,
                "L": _prod(lam, floor),
            },
            False,
            "latency",
        )

    # Stability needs c > a = lambda / mu; then double until the target holds, then bisect
    # (the prediction falls monotonically as c grows).
    a = _div(lam, mu)
    if not (a < cap):
        return result(evaluate(_INF), False, "replicas")
    lo = math.floor(a)  # lo replicas do not meet the target (unstable, or lo = 0)
    hi = max(1, lo + 1)
    ev = evaluate(hi)
    step = 1
    while not (ev["pred"] <= target):
        if hi >= cap:
            return result(ev, False, "replicas")
        lo = hi
        hi = min(cap, hi + step)
        step *= 2
        ev = evaluate(hi)
    best = ev
    for _ in range(200):
        if hi - lo <= 1:
            break
        mid = (lo + hi) // 2
        e = evaluate(mid)
        if e["pred"] <= target:
            hi, best = mid, e
        else:
            lo = mid
    return result(best, True)

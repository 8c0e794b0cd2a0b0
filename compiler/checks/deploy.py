"""Deployment: E801 values Kubernetes would reject, E802 numbers outside the
Kubernetes fields' ranges, W801 no deploy block."""

import re

from ..limits import INT32_MAX, MILLICORES_MAX, QUANTITY_MAX, millicores
from ..plan import bounded, pod_cores, pod_memory_bytes, replica_plan, storage_bytes
from .context import CheckContext

# Kubernetes' own rules (k8s.io/apimachinery/pkg/util/validation).
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")  # at most 63
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")  # at most 253
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")  # at most 63
# An image reference: [registry[:port]/]path[:tag][@digest], lower-case path components.
IMAGE = re.compile(
    r"([a-zA-Z0-9.-]+(:[0-9]+)?/)?[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?"
)

# deploy.secret_env: a C identifier (what a shell and Python read), a Secret's name and key.
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]+")  # at most 253
# The variables llmc sets in the stages' pods (k8s_workloads.py; a test holds them equal):
# deploy.secret_env may not replace one.
LLMC_ENV = frozenset(
    {
        "LLMC_OUTPUT",
        "XDG_CACHE_HOME",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONUNBUFFERED",
        "HOROVOD_HOSTFILE",
        "HOROVOD_NP",
        "LLMC_SPARK_MASTER",
    }
)

# A link in an alert's annotations: absolute, and no `{{` (Prometheus expands annotations as Go templates).
LINK_URL = re.compile(r"https?://(?!.*\{\{)[^\s/\\]+[^\s\\]*")


def check(ctx: CheckContext) -> None:
    _ranges(ctx)
    deploy, spans = ctx.ir.deploy, ctx.spans
    if deploy is None:
        if ctx.ir.serve is not None:
            name = ctx.ir.model.name
            ctx.diags.warning(
                "W801",
                spans.key("serve"),
                f"no deploy block: manifests use namespace `default` and image `{name}:latest`",
                label="served without a deploy block",
                help=f'add a `deploy` block with `namespace = "..."` and `image = "registry/{name}:TAG"`, each on its own line',
            )
            if not IMAGE.fullmatch(f"{name}:latest"):
                _reject(
                    ctx,
                    "model.name",
                    f"the default image `{name}:latest` is not a valid image reference",
                    "image names are lower-case letters, digits and . _ - /",
                    "add a deploy block with an explicit `image`",
                )
        return
    if not (DNS_LABEL.fullmatch(deploy.namespace) and len(deploy.namespace) <= 63):
        _reject(
            ctx,
            "deploy.namespace",
            f"namespace `{deploy.namespace}` is not a valid Kubernetes namespace",
            "a namespace is a DNS label: lower-case letters, digits and `-`, at most 63, starting and ending alphanumeric",
        )
    sa = deploy.service_account
    if sa is not None and not (DNS_SUBDOMAIN.fullmatch(sa) and len(sa) <= 253):
        _reject(
            ctx,
            "deploy.service_account",
            f"service account `{sa}` is not a valid Kubernetes name",
            "a service account name is a DNS subdomain: lower-case letters, digits, `-` and `.`",
        )
    if deploy.image is not None and not IMAGE.fullmatch(deploy.image):
        _reject(
            ctx,
            "deploy.image",
            f"`{deploy.image}` is not a valid image reference",
            "write `registry/path:tag`: no spaces; the path in lower case",
        )
    elif deploy.image is not None and "@sha256:" not in deploy.image:
        ctx.diags.warning(
            "W802",
            ctx.spans.value("deploy.image"),
            f"image `{deploy.image}` is referenced by tag: a pushed tag can change under the cluster",
            label="by tag, not by digest",
            help=f'pin it by digest: image = "{deploy.image}@sha256:<digest>" (docker buildx imagetools inspect '
            f"{deploy.image} prints it); until then pods pull it Always",
        )
    for entry in deploy.node_selector:
        key, sep, value = entry.partition("=")
        prefix, slash, name = key.rpartition("/")
        valid_key = bool(name) and len(name) <= 63 and bool(LABEL_VALUE.fullmatch(name))
        valid_key = valid_key and (not slash or (DNS_SUBDOMAIN.fullmatch(prefix) is not None and len(prefix) <= 253))
        if not (sep and valid_key and LABEL_VALUE.fullmatch(value) and len(value) <= 63):
            _reject(
                ctx,
                "deploy.node_selector",
                f"`{entry}` is not a node label selector `name=value`",
                "write `[prefix/]name=value`: a Kubernetes label name (an optional DNS-subdomain prefix) and value",
            )
    for field in ("bundle_url", "grafana_url"):
        url = getattr(deploy, field)
        if url is not None and not LINK_URL.fullmatch(url):
            ctx.diags.error(
                "E801",
                ctx.spans.value(f"deploy.{field}"),
                f"`{url}` is not an http(s) URL an alert can link to",
                label="not a link",
                help='write an absolute URL without spaces or `{{`, e.g. "https://git.example.com/ml/bundles/translator"',
            )
    for name, ref in deploy.secret_env.items():
        secret, slash, key = ref.partition("/")
        if name in LLMC_ENV:
            ctx.diags.error(
                "E801",
                spans.key(f"deploy.secret_env.{name}"),
                f"`{name}` is set by llmc in every stage: a Secret cannot replace it",
                label="llmc's own variable",
                help="name the variable your code reads; llmc's own are " + ", ".join(sorted(LLMC_ENV)),
            )
        elif not ENV_NAME.fullmatch(name):
            _reject(
                ctx,
                f"deploy.secret_env.{name}",
                f"`{name}` is not an environment variable name",
                "a name is letters, digits and `_`, not starting with a digit",
                key_span=True,
            )
        if not (
            slash
            and DNS_SUBDOMAIN.fullmatch(secret)
            and len(secret) <= 253
            and SECRET_KEY.fullmatch(key)
            and len(key) <= 253
        ):
            _reject(
                ctx,
                f"deploy.secret_env.{name}",
                f"`{ref}` is not `secret/key`",
                'write the Secret\'s name and one of its keys, e.g. "s3-credentials/access-key-id"',
            )
    for key, value in deploy.labels.items():
        if not (LABEL_VALUE.fullmatch(key) and key and len(key) <= 63):
            _reject(
                ctx,
                f"deploy.labels.{key}",
                f"label key `{key}` is not a valid Kubernetes label name",
                "a label name is at most 63 letters, digits, `-`, `_` or `.`, starting and ending alphanumeric",
                key_span=True,
            )
        if not (LABEL_VALUE.fullmatch(value) and len(value) <= 63):
            _reject(
                ctx,
                f"deploy.labels.{key}",
                f"label value `{value}` is not a valid Kubernetes label value",
                "a label value is empty or at most 63 letters, digits, `-`, `_` or `.`, starting and ending alphanumeric",
            )


def _reject(ctx: CheckContext, path: str, message: str, rule: str, help: str = "", key_span: bool = False) -> None:
    span = ctx.spans.key(path) if key_span else ctx.spans.value(path)
    ctx.diags.error("E801", span, message, label="Kubernetes would reject this", help=help or rule)


# --- E802: the numbers k8s/ would hold -------------------------------------------------


def _ranges(ctx: CheckContext) -> None:
    """Each number of k8s/ (and of search/katib-experiment.yaml) that a spec value
    drives, against its field's range (limits.py).

    The sizes are the planned facts k8s/ writes (plan.py), so the check and the
    manifests cannot disagree; the target then only asserts the ranges.
    """
    ir, facts = ctx.ir, ctx.facts
    too_large: dict[str, list[str]] = {}  # the model's span -> what it makes too large: said once
    if all(getattr(ir, block) is None for block in ("train", "compress", "evaluate", "search", "serve")):
        return  # no k8s/ at all
    serve = ir.serve
    if serve is not None:
        for end in ("min", "max"):
            count = getattr(serve.replicas, end)
            if count is not None and count > INT32_MAX:
                # What llmc derives when the spec leaves both out: it holds the SLA and fits an int32.
                derived = getattr(replica_plan(_without_replicas(ir), facts), end)
                _too_large(
                    ctx,
                    f"serve.replicas.{end}",
                    f"replicas.{end} is more than a HorizontalPodAutoscaler counts",
                    f"{'minReplicas' if end == 'min' else 'maxReplicas'} = {count}, above {INT32_MAX} (int32)",
                    f"set replicas.{end} = {derived} (what llmc derives from the SLA when it is left out)",
                )
        cpu = serve.resources.cpu
        if cpu is not None and bounded(lambda: millicores(cpu)) > MILLICORES_MAX:
            _too_large(
                ctx,
                "serve.resources.cpu",
                "resources.cpu is more than a Kubernetes quantity holds",
                f"{serve.resources.cpu:.4g} cores is above {MILLICORES_MAX} millicores",
                "set resources.cpu to the cores of one node, e.g. resources.cpu = 16",
            )
        # A size written in the spec is at most 2^63-1 bytes (the parser's limit, E105):
        # only a derived one can be larger.
        resources = facts.serving_resources
        assert resources is not None  # planned for every serve block
        memory = resources.memory_bytes
        if memory > QUANTITY_MAX:
            _model_too_large(ctx, too_large, f"each serving replica would request {memory:.4g} bytes of memory")
        volume = resources.models_volume_bytes
        if volume > QUANTITY_MAX:
            _model_too_large(ctx, too_large, f"the serving pod's /models volume would be {volume:.4g} bytes")
    train = ir.train
    if train is not None:
        cluster = train.cluster
        if cluster.hosts > INT32_MAX:
            _too_large(
                ctx,
                "train.cluster.hosts",
                "cluster.hosts is more than Kubernetes counts",
                f"the MPIJob's worker replicas = {cluster.hosts}, above {INT32_MAX} (int32)",
                f"set hosts = {INT32_MAX} or less",
            )
        slots = cluster.slots_per_host

        def fits(n: int) -> bool:  # int32 slots, and the resources of a pod with n of them (MPI worker, search Job)
            return (
                n <= INT32_MAX
                and bounded(lambda: pod_memory_bytes(facts.memory, cluster.device, n)) <= QUANTITY_MAX
                and 1000 * pod_cores(cluster.device, n) <= MILLICORES_MAX
            )

        if not fits(slots):
            worker = facts.stage_pods["train"]
            memory = worker.memory_bytes
            if not fits(1):
                _model_too_large(
                    ctx, too_large, f"one training process would request {memory:.4g} bytes of memory", served=False
                )
            elif slots > INT32_MAX:
                _too_large(
                    ctx,
                    "train.cluster.slots_per_host",
                    "cluster.slots_per_host is more than Kubernetes counts",
                    f"slotsPerWorker = {slots}, above {INT32_MAX} (int32)",
                    f"set slots_per_host = {_most_slots(fits, slots)} or less",
                )
            else:
                asks = f"{memory:.4g} bytes of memory" if memory > QUANTITY_MAX else f"{1000 * worker.cores} millicores"
                _too_large(
                    ctx,
                    "train.cluster.slots_per_host",
                    "a training host's resources are more than a Kubernetes quantity holds",
                    f"{slots} slots ask one worker pod for {asks}, above {QUANTITY_MAX}",
                    f"set slots_per_host = {_most_slots(fits, slots)} or less (a worker pod runs all "
                    "of a host's slots)",
                )
    search = ir.search
    if search is not None and search.backend == "katib" and train is not None and search.max_evals > INT32_MAX:
        _too_large(
            ctx,
            "search.max_evals",
            "max_evals is more than Katib counts",
            f"the Experiment's maxTrialCount = {search.max_evals}, above {INT32_MAX} (int32)",
            f"set max_evals = {INT32_MAX} or less",
        )
    storage = facts.storage_bytes
    if storage > QUANTITY_MAX:
        keep = train is not None and ctx.spans.has("train.checkpoint.keep")
        if keep and bounded(lambda: storage_bytes(_with_keep(ir, 1), facts)) <= QUANTITY_MAX:
            _too_large(
                ctx,
                "train.checkpoint.keep",
                "the checkpoints kept need more storage than a quantity holds",
                f"the artifacts volume would be {storage:.4g} bytes, above {QUANTITY_MAX}",
                "set keep = 1",
            )
        else:
            _model_too_large(ctx, too_large, f"the artifacts volume would be {storage:.4g} bytes", served=False)
    for path, what in too_large.items():
        ctx.diags.error(
            "E802",
            ctx.spans.key(path),
            "the model is too large for a Kubernetes quantity",
            label=f"{'; '.join(what)}: above {QUANTITY_MAX}",
            help="a model this size does not fit one machine: make it smaller (layers, d_model, vocab, hidden)",
        )


def _most_slots(fits, slots: int) -> int:
    """The most slots that fit, by bisection: fits(1) holds, fits(slots) does not."""
    low, high = 1, slots
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return low


def _without_replicas(ir):
    serve = ir.serve
    return ir.model_copy(
        update={
            "serve": serve.model_copy(update={"replicas": serve.replicas.model_copy(update={"min": None, "max": None})})
        }
    )


def _with_keep(ir, keep: int):
    train = ir.train
    return ir.model_copy(
        update={"train": train.model_copy(update={"checkpoint": train.checkpoint.model_copy(update={"keep": keep})})}
    )


def _too_large(ctx: CheckContext, path: str, message: str, label: str, help: str) -> None:
    span = ctx.spans.attribute(path) if ctx.spans.has(path) else ctx.spans.key(path)
    ctx.diags.error("E802", span, message, label=label, help=help)


def _model_too_large(ctx: CheckContext, too_large: dict[str, list[str]], what: str, served: bool = True) -> None:
    ir, facts = ctx.ir, ctx.facts
    if not served and facts.memory is not None and not facts.memory.fits:
        return  # E306 says the model does not fit training at all
    distilled = served and facts.served is not None and facts.served.what == "student"
    path = (
        "compress.distill.student"
        if distilled
        else "model.transformer"
        if ir.model.transformer is not None
        else "model.mlp"
    )
    too_large.setdefault(path, []).append(what)

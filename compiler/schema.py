"""The typed IR: one pydantic model per block of the language (docs/language.md), with its defaults.

These models are the single source of truth for what a spec may say: the type
checker (`typecheck.py`) walks them to report E201-E209 at the right spans,
`llmc schema` prints their JSON Schema, and checks and targets read the validated
instance. Quantity fields carry a `Kind` marker so that a duration field rejects a
bare number (E207). Derived defaults (d_ff = 4 * d_model, data parallelism filling
the cluster, ...) are filled in by `complete()` after validation.
"""

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from . import catalog


def _device(description: str):
    """A field naming a device: `llmc schema` lists the catalog's names as an enum, for
    editors. The model keeps it a plain string so that a wrong name is E309, with its
    "did you mean", rather than a generic E206."""
    return Field(description=description, json_schema_extra={"enum": [*catalog.names()]})


class Kind:
    """Marks a float/int field as a quantity of one unit kind (docs/language.md, "Quantities")."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name  # "duration" | "size" | "fraction" | "rate" | "metric-bound"

    def __repr__(self) -> str:
        return f"Kind({self.name!r})"


class PathLike:
    """Marks a string field as a file path, resolved relative to the spec that sets it."""

    __slots__ = ()


Duration = Annotated[float, Kind("duration")]
Size = Annotated[int, Kind("size")]
Fraction = Annotated[float, Kind("fraction")]
Rate = Annotated[float, Kind("rate")]
# A metric bound's kind depends on the metric (BLEU a number, latency a duration): see checks/metrics.py.
MetricBound = Annotated[float, Kind("metric-bound")]
FilePath = Annotated[str, PathLike()]

PosInt = Annotated[int, Field(ge=1)]
NonNegInt = Annotated[int, Field(ge=0)]
PosFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
Probability = Annotated[float, Field(ge=0, lt=1)]

Task = Literal["translation", "summarization", "classification", "language-modeling"]
Framework = Literal["torch", "tensorflow"]
Precision = Literal["fp32", "fp16", "bf16"]


class Block(BaseModel):
    """A block of the language. Subclasses say how their label is used."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    # The field a block's label fills (`model translator` -> name); None: no label allowed.
    label_field: ClassVar[str | None] = None
    label_required: ClassVar[bool] = False
    # Pairs of fields of which exactly one must be given (E209).
    one_of: ClassVar[tuple[tuple[str, ...], ...]] = ()
    doc: ClassVar[str] = ""


# --- model -------------------------------------------------------------------------


class Transformer(Block):
    doc: ClassVar[str] = "A Transformer: encoder-decoder, encoder-only or decoder-only."
    layers: PosInt = Field(description="layers per stack")
    d_model: PosInt
    heads: PosInt
    vocab: PosInt
    d_ff: PosInt | None = Field(None, description="default 4 * d_model")
    max_len: PosInt = 512
    dropout: Probability = 0.1
    kind: Literal["encoder-decoder", "encoder", "decoder"] | None = Field(None, description="default by task")
    classes: PosInt | None = Field(None, description='required for classification (kind "encoder"); no default')
    # Today's decoder options (docs/language.md, "Architecture options"); the defaults are
    # the 2018 Transformer every spec meant before they existed.
    ffn: Literal["gelu", "swiglu", "geglu"] = Field(
        "gelu", description="feed-forward block: GELU with two matrices, or a gated unit with three"
    )
    positions: Literal["learned", "rope", "none"] = Field(
        "learned", description="learned positional embeddings, rotary (RoPE) or none"
    )
    rope_base: PosFloat = Field(10000.0, description="RoPE's base (theta), with positions = rope")
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    norm_position: Literal["pre", "post"] = Field("pre", description="normalize each sub-block's input or output")
    kv_heads: PosInt | None = Field(None, description="key/value heads (grouped-query attention); default heads")
    qkv_bias: bool = Field(True, description="biases on the query, key and value projections")
    out_bias: bool = Field(True, description="bias on the attention output projection")
    ffn_bias: bool = Field(True, description="biases on the feed-forward projections")
    tie_embeddings: bool = Field(True, description="the output projection is the token embedding")


class Mlp(Block):
    doc: ClassVar[str] = "A multi-layer perceptron classifier."
    inputs: PosInt
    hidden: list[PosInt]
    classes: PosInt
    activation: Literal["relu", "gelu", "tanh"] = "relu"
    dropout: Probability = 0.0


TOKENIZER_NAMES = ("bytes",)  # tokenizers named rather than read from a file (runtime/tokenizer.py NAMES)


class Data(Block):
    doc: ClassVar[str] = "Where the data lives and how to read it."
    train: FilePath
    valid: FilePath
    test: FilePath
    format: Literal["tsv", "jsonl", "csv"] | None = Field(None, description="default by extension")
    source: str | None = Field(None, description="source column (translation, summarization); default 'source'")
    target: str | None = Field(None, description="target column; default 'target'")
    text: str | None = Field(None, description="text column (classification, language modeling); default 'text'")
    label: str | None = Field(None, description="label column (classification); default 'label'")
    tokenizer: FilePath = Field(
        "bytes",
        description='"bytes" (256 byte ids + 4 specials: vocab = 260) or a SentencePiece model file (vocab = its pieces + 4)',
    )


class Model(Block):
    doc: ClassVar[str] = "The model: task, framework, architecture and data."
    label_field: ClassVar[str | None] = "name"
    label_required: ClassVar[bool] = True
    one_of: ClassVar[tuple[tuple[str, ...], ...]] = (("transformer", "mlp"),)
    name: str
    task: Task
    framework: Framework = "torch"
    transformer: Transformer | None = None
    mlp: Mlp | None = None
    data: Data


# --- train -------------------------------------------------------------------------


class Cluster(Block):
    hosts: PosInt = 1
    slots_per_host: PosInt = 1
    device: str = _device("the training devices, from the catalog (docs/devices.md)")


class Parallel(Block):
    data: PosInt | None = Field(None, description="default: fills the cluster")
    tensor: PosInt = 1
    pipeline: PosInt = 1


class Optimizer(Block):
    label_field: ClassVar[str | None] = "name"
    label_required: ClassVar[bool] = True
    name: Literal["adam", "adamw", "sgd"]
    lr: PosFloat
    weight_decay: NonNegFloat = 0.0
    betas: Annotated[list[Probability], Field(min_length=2, max_length=2)] = [0.9, 0.999]
    momentum: Probability = 0.0


class Schedule(Block):
    label_field: ClassVar[str | None] = "name"
    label_required: ClassVar[bool] = True
    name: Literal["constant", "linear", "cosine", "inverse-sqrt"]
    warmup: NonNegInt = Field(0, description="steps")
    min_lr: NonNegFloat = 0.0


class Checkpoint(Block):
    every: Duration | PosInt = Field(1800.0, description="a duration, or an int number of steps")
    keep: PosInt = 3
    dir: FilePath = "checkpoints"


class Train(Block):
    doc: ClassVar[str] = "Distributed training: cluster, layout, precision, optimizer."
    one_of: ClassVar[tuple[tuple[str, ...], ...]] = (("epochs", "steps"),)
    backend: Literal["horovod"] = "horovod"
    cluster: Cluster
    parallel: Parallel = Field(default_factory=lambda: Parallel.model_construct())
    precision: Precision = "fp32"
    batch_size: PosInt = Field(description="global batch size")
    micro_batch: PosInt | None = Field(None, description="per data-parallel replica per step")
    epochs: PosInt | None = None
    steps: PosInt | None = None
    optimizer: Optimizer
    schedule: Schedule = Field(default_factory=lambda: Schedule.model_construct(name="constant"))
    gradient_compression: Literal["none", "fp16"] = "none"
    activation_checkpointing: bool = False
    fused_attention: bool = Field(
        False, description="a fused (flash) attention kernel: no s x s scores kept for the backward pass"
    )
    checkpoint: Checkpoint = Field(default_factory=lambda: Checkpoint.model_construct())
    seed: NonNegInt = 0


# --- compress ----------------------------------------------------------------------


class Student(Block):
    doc: ClassVar[str] = "Architecture fields of the distilled student; the rest come from the teacher."
    layers: PosInt | None = None
    d_model: PosInt | None = None
    heads: PosInt | None = None
    d_ff: PosInt | None = None
    hidden: list[PosInt] | None = None


class Distill(Block):
    student: Student
    temperature: PosFloat = 2.0
    alpha: Annotated[Fraction, Field(ge=0, le=1)] = 0.5
    epochs: PosInt = 1


class Prune(Block):
    method: Literal["magnitude", "structured"] = "magnitude"
    # (0, 1) is checked as E404, not here, so the message can say what sparsity means.
    sparsity: Fraction
    finetune_epochs: NonNegInt = 0


class Quantize(Block):
    precision: Literal["int8", "fp16"] = "int8"
    method: Literal["static", "dynamic"] = "static"
    calibration: FilePath | None = None
    samples: PosInt = 512


class Compress(Block):
    doc: ClassVar[str] = "Compression stages, run in the order distill, prune, quantize."
    distill: Distill | None = None
    prune: Prune | None = None
    quantize: Quantize | None = None
    engine: Literal["tensorrt", "onnxruntime"] = "tensorrt"


# --- evaluate ----------------------------------------------------------------------

MetricName = Literal[
    "bleu",
    "chrf",
    "ter",
    "rouge1",
    "rouge2",
    "rougeL",
    "accuracy",
    "f1",
    "perplexity",
    "latency_p50",
    "latency_p99",
    "model_size",
]


class Metric(Block):
    label_field: ClassVar[str | None] = "name"
    label_required: ClassVar[bool] = True
    name: MetricName
    min: MetricBound | None = None
    max: MetricBound | None = None
    max_drop: MetricBound | None = Field(
        None, description="largest loss of the compressed model against the uncompressed one"
    )


class Evaluate(Block):
    doc: ClassVar[str] = "Metrics and the gates the model must pass."
    split: Literal["train", "valid", "test"] = "test"
    metric: dict[str, Metric] = Field(default_factory=dict, description="repeatable: metric NAME { ... }")


# --- search ------------------------------------------------------------------------


class Distribution(BaseModel):
    """A search distribution as written: `loguniform(1e-5, 1e-3)`. Bounds are values, not logs."""

    model_config = ConfigDict(frozen=True, defer_build=True)
    kind: Literal["uniform", "loguniform", "quniform", "randint", "normal", "choice"]
    args: list[bool | int | float | str]


DISTRIBUTION_ARITY = {"uniform": 2, "loguniform": 2, "quniform": 3, "randint": 2, "normal": 2, "choice": None}


class Search(Block):
    doc: ClassVar[str] = "Hyperparameter search with Hyperopt."
    algorithm: Literal["tpe", "random", "anneal"] = "tpe"
    max_evals: PosInt = 20
    parallel: PosInt = 1
    objective: str = "valid_loss"
    direction: Literal["minimize", "maximize"] | None = Field(
        None,
        description="default by objective: maximize a score (bleu, chrf, rouge, accuracy, f1), "
        "minimize anything else (valid_loss, perplexity, ter, latency, size)",
    )
    backend: Literal["local", "mongo", "spark", "katib"] = Field(
        "local", description="where trials run: this process, MongoDB workers, a Spark cluster, or a Katib Experiment"
    )
    early_stop: PosInt | None = Field(None, description="stop after N evaluations without improvement")
    space: dict[str, Distribution] = Field(default_factory=dict, description="field path = distribution")


# --- serve and deploy --------------------------------------------------------------


class Sla(Block):
    p99_latency: Annotated[Duration, Field(gt=0)]
    throughput: Annotated[Rate, Field(gt=0)]
    availability: Annotated[Fraction, Field(gt=0, lt=1)] = 0.999
    error_rate: Annotated[Fraction, Field(ge=0, lt=1)] | None = Field(None, description="default 1 - availability")


class Batching(Block):
    max_batch_size: PosInt = 8
    timeout: Annotated[Duration, Field(ge=0)] = 0.002


class Request(Block):
    doc: ClassVar[str] = "The request the p99 is planned for: its length in tokens."
    input_tokens: PosInt | None = Field(None, description="default: the longest the model accepts")
    output_tokens: PosInt | None = Field(None, description="default: the longest the model generates")


class Replicas(Block):
    min: PosInt | None = Field(None, description="default derived from the SLA")
    max: PosInt | None = Field(None, description="default derived from the SLA")
    scale_on: Literal["requests", "cpu"] = Field(
        "requests", description="the autoscaler's signal: requests/s per pod (Prometheus Adapter) or CPU"
    )


class Resources(Block):
    cpu: PosFloat | None = Field(None, description="cores; default derived")
    memory: Annotated[Size, Field(gt=0)] | None = Field(None, description="default derived")


class Serve(Block):
    doc: ClassVar[str] = "Serving platform, device, SLA, batching and replicas."
    platform: Literal["tf-serving", "triton"] | None = Field(None, description="default by framework")
    device: str = _device("the serving device, from the catalog (docs/devices.md)")
    sla: Sla
    batching: Batching = Field(default_factory=lambda: Batching.model_construct())
    request: Request = Field(default_factory=lambda: Request.model_construct())
    replicas: Replicas = Field(default_factory=lambda: Replicas.model_construct())
    resources: Resources = Field(default_factory=lambda: Resources.model_construct())


class Deploy(Block):
    doc: ClassVar[str] = "Where and how the workloads run on Kubernetes."
    namespace: str = "default"
    image: str | None = Field(None, description="default: named after the model")
    service_account: str | None = None
    labels: dict[str, str] = Field(default_factory=dict, description='free-form: name = "value"')
    node_selector: list[str] = Field(
        default_factory=list, description='"label=value" of the GPU nodes, instead of nvidia.com/gpu.product'
    )
    secret_env: dict[str, str] = Field(
        default_factory=dict, description='free-form: NAME = "secret/key", an environment variable of every stage'
    )
    bundle_url: str | None = Field(None, description="where the built bundle is browsed; alerts link to its runbook")
    grafana_url: str | None = Field(None, description="the Grafana holding the dashboard; alerts link to it")


class Spec(Block):
    doc: ClassVar[str] = "A whole .llm spec."
    model: Model
    train: Train | None = None
    compress: Compress | None = None
    evaluate: Evaluate | None = None
    search: Search | None = None
    serve: Serve | None = None
    deploy: Deploy | None = None


def json_schema() -> dict:
    schema = Spec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "llmc spec (.llm), version 1"
    return schema


_KIND_BY_TASK = {
    "translation": "encoder-decoder",
    "summarization": "encoder-decoder",
    "classification": "encoder",
    "language-modeling": "decoder",
}
COLUMNS_BY_TASK = {
    "translation": ("source", "target"),
    "summarization": ("source", "target"),
    "classification": ("text", "label"),
    "language-modeling": ("text",),
}
FORMAT_BY_EXTENSION = {".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv"}


# The blocks whose derived defaults read another block: a change in `model` can change
# the serving platform (its framework) and the deploy image (its name). Every other
# derived default reads only its own block. (driver._variant_errors rebuilds a changed
# block and the blocks listed here; tests/unit/test_schema.py checks them.)
DERIVED_FROM_OTHER_BLOCKS = {"model": ("serve", "deploy")}


def derive_defaults(data: dict) -> dict:
    """Fill the derived defaults (docs/language.md), in a checked spec's data.

    A default that cannot be derived (the data parallelism of a cluster that the
    tensor size does not divide) is left unset for the checks to report.
    """
    model = data.get("model", {})
    task = model.get("task")
    arch = model.get("transformer")
    if arch is not None and "d_model" in arch:  # (a rejected d_model is left out of the data)
        arch.setdefault("d_ff", 4 * arch["d_model"])
    if arch is not None:
        arch.setdefault("kind", _KIND_BY_TASK.get(task, "encoder"))
    files = model.get("data", {})
    if files and "format" not in files:
        ext = "." + files.get("train", "").rpartition(".")[2].lower()
        if ext in FORMAT_BY_EXTENSION:
            files["format"] = FORMAT_BY_EXTENSION[ext]
    if files is not None:
        for column in COLUMNS_BY_TASK.get(task, ()):
            files.setdefault(column, column)
    train = data.get("train")
    if train is not None:
        cluster = train.get("cluster", {})
        parallel = train.setdefault("parallel", {})
        slots = cluster.get("hosts", 1) * cluster.get("slots_per_host", 1)
        model_parallel = parallel.get("tensor", 1) * parallel.get("pipeline", 1)
        if "data" not in parallel and slots % model_parallel == 0:
            parallel["data"] = slots // model_parallel
        dp = parallel.get("data")
        if "micro_batch" not in train and dp and "batch_size" in train and train["batch_size"] % dp == 0:
            train["micro_batch"] = train["batch_size"] // dp
    serve = data.get("serve")
    if serve is not None:
        serve.setdefault("platform", "tf-serving" if model.get("framework") == "tensorflow" else "triton")
        sla = serve.get("sla", {})
        if "error_rate" not in sla:
            availability = sla.get("availability", Sla.model_fields["availability"].default)
            sla["error_rate"] = round(1 - availability, 12)
    search = data.get("search")
    if search is not None and "direction" not in search:
        from .metric_names import direction_of

        search["direction"] = direction_of(search.get("objective", Search.model_fields["objective"].default))
    deploy = data.get("deploy")
    if deploy is not None and model.get("name"):
        deploy.setdefault("image", f"{model['name']}:latest")
    return data


# What each derived default is derived from (derive_defaults above): when the type checker
# rejected a source, the default derived from it is not what the user meant either, so it
# is rejected too (reads.py). tests/unit/test_independent_errors.py checks the table.
DERIVED_DEFAULT_SOURCES: dict[str, tuple[str, ...]] = {
    "model.transformer.d_ff": ("model.transformer.d_model",),
    "model.transformer.kind": ("model.task",),
    "model.data.format": ("model.data.train",),
    **{f"model.data.{c}": ("model.task",) for c in ("source", "target", "text", "label")},
    "train.parallel.data": (
        "train.cluster.hosts",
        "train.cluster.slots_per_host",
        "train.parallel.tensor",
        "train.parallel.pipeline",
    ),
    "train.micro_batch": ("train.batch_size", "train.parallel.data"),
    "serve.platform": ("model.framework",),
    "serve.sla.error_rate": ("serve.sla.availability",),
    "search.direction": ("search.objective",),
    "deploy.image": ("model.name",),
}


def rejected_defaults(data: dict, rejected: set[str]) -> set[str]:
    """The derived defaults (not written in `data`, the checked data before derive_defaults)
    that derive from a rejected field, directly or through another such default."""
    from .reads import covers

    out: set[str] = set()
    grown = True
    while grown:
        grown = False
        for derived, sources in DERIVED_DEFAULT_SOURCES.items():
            if derived in out or _written(data, derived):
                continue
            if any(covers(src, bad) for src in sources for bad in rejected | out):
                out.add(derived)
                grown = True
    return out


def _written(data: dict, path: str) -> bool:
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True

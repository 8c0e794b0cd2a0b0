"""Compression: E401-E404."""

from __future__ import annotations

from ..catalog import is_gpu
from ..estimate import format_count
from .context import CheckContext


def check(ctx: CheckContext) -> None:
    comp, spans, diags = ctx.ir.compress, ctx.spans, ctx.diags
    if comp is None:
        return
    q = comp.quantize
    if q is not None and q.precision == "int8" and q.method == "static" and not q.calibration:
        diags.error(
            "E401",
            spans.key("compress.quantize"),
            "static int8 quantization needs calibration data",
            label="no `calibration` file given",
            help='add `calibration = "path/to/calib.tsv"`, or use method = "dynamic" (onnxruntime only)',
        )
    if q is not None and q.method == "dynamic" and comp.engine != "onnxruntime":
        diags.error(
            "E403",
            spans.attribute("compress.quantize.method"),
            "dynamic quantization is an onnxruntime feature",
            label=f'engine = "{comp.engine}" calibrates statically',
            help='set compress.engine = "onnxruntime", or method = "static" with a calibration file',
        )
    if comp.prune is not None:
        s = comp.prune.sparsity
        if not 0 < s < 1:
            diags.error(
                "E404",
                spans.value("compress.prune.sparsity"),
                "sparsity must lie strictly between 0 and 1",
                label=f"sparsity = {s:g} prunes {'nothing' if s <= 0 else 'every weight'}",
                help="sparsity is the fraction of weights removed, e.g. `30%`",
            )
    if comp.distill is not None:
        _student(ctx)
    serve = ctx.ir.serve
    if comp.engine == "tensorrt" and serve is not None and not is_gpu(serve.device):
        diags.error(
            "E403",
            spans.attribute("compress.engine"),
            "TensorRT needs an NVIDIA GPU to serve",
            label=f'serve.device = "cpu" (line {spans.value("serve.device").line})',
            help='use engine = "onnxruntime" to serve on CPU, or serve on a GPU such as T4',
        )


def _student(ctx: CheckContext) -> None:
    comp = ctx.ir.compress
    assert comp is not None and comp.distill is not None  # check() calls this only for a distill block
    student = comp.distill.student
    arch, mlp, facts = ctx.ir.model.transformer, ctx.ir.model.mlp, ctx.facts
    span = ctx.spans.key("compress.distill.student")
    if arch is not None and student.hidden is not None:
        ctx.diags.error(
            "E202",
            ctx.spans.key("compress.distill.student.hidden"),
            "`hidden` is an mlp field, but the teacher is a Transformer",
            label="not a field of a Transformer student",
            help="set layers, d_model, heads or d_ff",
        )
        return
    if mlp is not None:
        for name in ("layers", "d_model", "heads", "d_ff"):
            if getattr(student, name) is not None:
                ctx.diags.error(
                    "E202",
                    ctx.spans.key(f"compress.distill.student.{name}"),
                    f"`{name}` is a Transformer field, but the teacher is an mlp",
                    label="not a field of an mlp student",
                    help="the student of an mlp sets `hidden`",
                )
        if any(getattr(student, n) is not None for n in ("layers", "d_model", "heads", "d_ff")):
            return
        if student.hidden is None:
            ctx.diags.error(
                "E402",
                span,
                "the student changes nothing",
                label="no `hidden` given",
                help="set a smaller `hidden`, e.g. half the teacher's widths",
            )
            return
    if facts.student_params is None or facts.params is None:
        return
    if facts.student_params >= facts.params:
        ctx.diags.error(
            "E402",
            span,
            "the student is not smaller than the teacher",
            label=f"student {format_count(facts.student_params)} parameters ≥ teacher {format_count(facts.params)}",
            help="shrink the student's " + ("layers, d_model or d_ff" if arch is not None else "hidden widths"),
        )
    if arch is not None:
        d = student.d_model or arch.d_model
        h = student.heads or arch.heads
        if d % h:
            ctx.diags.error(
                "E304",
                ctx.spans.key("compress.distill.student"),
                "student d_model not divisible by heads",
                label=f"student d_model = {d} is not a multiple of heads = {h}",
                help="heads must divide d_model",
            )

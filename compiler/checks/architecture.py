"""The transformer's architecture options (docs/language.md, "Architecture options"):
E310 (RoPE needs an even head dimension), E311 (kv_heads must divide heads), W303
(key/value heads replicated over the tensor-parallel group) and W304 (rope_base without
rotary positions). The torch and TensorFlow zoos build every option. The distilled
student inherits the teacher's options, so its heads are checked too."""

from __future__ import annotations

from ..diagnostics import Changes
from .context import CheckContext, part


def check(ctx: CheckContext) -> None:
    for each in (_rope, _kv_heads, _replicated, _rope_base):
        part(ctx, each, ctx)


def _rope(ctx: CheckContext) -> None:
    arch = ctx.ir.model.transformer
    if arch is None or arch.positions != "rope" or arch.d_model % arch.heads:
        return  # (a d_model that heads does not divide is E304)
    for heads, what, path in _head_counts(ctx):
        head_dim = arch.d_model // heads if what == "model" else _student_d_model(ctx) // heads
        if head_dim % 2:
            ctx.diags.error(
                "E310",
                ctx.spans.attribute(path),
                "rotary positions need an even head dimension",
                label=f"d_model / heads = {head_dim}: RoPE rotates pairs of channels",
                help='choose heads so that d_model / heads is even, or positions = "learned"',
                proposals=[(("model.transformer.heads", h),) for h in _even_head_options(arch.d_model, heads)]
                if what == "model"
                else [],
            )


def _kv_heads(ctx: CheckContext) -> None:
    arch = ctx.ir.model.transformer
    if arch is None or arch.kv_heads is None:
        return
    for heads, what, path in _head_counts(ctx):
        if arch.kv_heads > heads or heads % arch.kv_heads:
            fits = [k for k in range(arch.kv_heads, 0, -1) if heads % k == 0]
            proposals: list[Changes] = [(("model.transformer.kv_heads", fits[0]),)] if fits else []
            ctx.diags.error(
                "E311",
                ctx.spans.attribute("model.transformer.kv_heads"),
                f"{'the student' + chr(39) + 's ' if what == 'student' else ''}heads not divisible by kv_heads",
                label=f"{heads} query heads cannot share {arch.kv_heads} key/value heads evenly"
                + (f" (the student's heads, line {ctx.spans.value(path).line})" if what == "student" else ""),
                help="kv_heads must divide heads: 1 is multi-query attention, heads is full multi-head attention",
                proposals=proposals if what == "model" else [],
            )


def _replicated(ctx: CheckContext) -> None:
    arch, train = ctx.ir.model.transformer, ctx.ir.train
    if arch is None or train is None or arch.kv_heads is None:
        return
    tensor = train.parallel.tensor
    if tensor > 1 and arch.kv_heads % tensor and arch.heads % arch.kv_heads == 0:
        ctx.diags.warning(
            "W303",
            ctx.spans.attribute("model.transformer.kv_heads"),
            "key/value heads replicated over the tensor-parallel group",
            label=f"kv_heads = {arch.kv_heads} does not divide by tensor = {tensor}: "
            "every tensor rank computes all key/value heads",
            notes=("the memory estimate holds the whole K and V projections on each rank",),
            help=f"kv_heads a multiple of tensor = {tensor} splits them; a smaller tensor group also does",
            proposals=[
                (("model.transformer.kv_heads", k),)
                for k in range(tensor, arch.heads + 1, tensor)
                if arch.heads % k == 0 and k >= arch.kv_heads
            ][:2],
        )


def _rope_base(ctx: CheckContext) -> None:
    arch = ctx.ir.model.transformer
    if arch is not None and arch.positions != "rope" and ctx.spans.has("model.transformer.rope_base"):
        ctx.diags.warning(
            "W304",
            ctx.spans.attribute("model.transformer.rope_base"),
            "rope_base has no effect without rotary positions",
            label=f'positions = "{arch.positions}"',
            help='set positions = "rope", or remove rope_base',
            proposals=[(("model.transformer.positions", "rope"),)],
        )


def _head_counts(ctx: CheckContext) -> list[tuple[int, str, str]]:
    """(heads, "model" | "student", where they are written) of the teacher and the student."""
    arch = ctx.ir.model.transformer
    assert arch is not None  # callers return early without a transformer
    out = [(arch.heads, "model", "model.transformer.heads")]
    comp = ctx.ir.compress
    student = comp.distill.student if comp is not None and comp.distill is not None else None
    if student is not None and student.heads is not None:
        out.append((student.heads, "student", "compress.distill.student.heads"))
    return out


def _student_d_model(ctx: CheckContext) -> int:
    comp = ctx.ir.compress
    student = comp.distill.student if comp is not None and comp.distill is not None else None
    arch = ctx.ir.model.transformer
    assert arch is not None
    return student.d_model if student is not None and student.d_model is not None else arch.d_model


def _even_head_options(d_model: int, heads: int) -> list[int]:
    options = [h for h in range(1, min(d_model, 256) + 1) if d_model % h == 0 and (d_model // h) % 2 == 0]
    return sorted(options, key=lambda h: (abs(h - heads), h))[:4]

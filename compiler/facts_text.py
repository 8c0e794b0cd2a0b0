"""The derived facts as text: `llmc check` prints them and report.md (targets/report.py) shows them."""

from __future__ import annotations

from .estimate import format_count
from .expressions import format_quantity


def fact_lines(result) -> list[tuple[str, str]]:
    """(name, text) pairs: model, parameters, layout, memory, serving, replicas."""
    ir, facts = result.ir, result.facts
    model = ir.model
    lines: list[tuple[str, str]] = []
    if model.transformer is not None:
        t = model.transformer
        arch = f"Transformer {t.kind}, {t.layers} layers, d_model {t.d_model}, {t.heads} heads, d_ff {t.d_ff}, vocab {t.vocab}"
        arch += "".join(f", {option}" for option in _options(t))
    else:
        arch = f"MLP {model.mlp.inputs} → {' → '.join(map(str, model.mlp.hidden))} → {model.mlp.classes}"
    lines.append(("model", f"{model.name}: {model.task}, {model.framework}, {arch}"))
    if facts is None:
        return lines
    exact = f" = {facts.params:,}" if facts.params >= 1000 else ""  # every digit, beside the rounded count
    lines.append(("parameters", f"{format_count(facts.params)}{exact} ({facts.param_count.explain()})"))
    if facts.student_params is not None:
        ratio = facts.student_params / facts.params if facts.params else 0
        lines.append(("student", f"{format_count(facts.student_params)} parameters ({ratio:.0%} of the teacher)"))
    if facts.layout is not None:
        lines.append(("layout", facts.layout))
    if facts.memory is not None:
        m = facts.memory
        lines.append(("memory", f"{m.breakdown()} per device ({m.headroom:.0%} free)"))
    if facts.served is not None and facts.latency is not None:
        s = facts.served
        lines.append(
            (
                "serving",
                f"{s.what} ({format_count(s.params)}, {s.precision}) on {ir.serve.device}: "
                f"one request ≈ {format_quantity('duration', facts.latency.total_s)}",
            )
        )
        lines.append(("latency", facts.latency.explain()))
    if facts.serving_memory is not None and facts.serving_memory.kv_cache:
        lines.append(("kv cache", facts.serving_memory.explain()))
    if facts.sizing is not None:
        sizing = facts.sizing
        if sizing.feasible:
            lines.append(
                (
                    "replicas",
                    f"{int(sizing.replicas)} for {format_quantity('rate', ir.serve.sla.throughput)} at p99 "
                    f"{format_quantity('duration', ir.serve.sla.p99_latency)}: {sizing.explain()}",
                )
            )
        else:
            lines.append(("replicas", f"none suffice: {sizing.explain()}"))
    return lines


def _status(result) -> str:
    warnings = sum(d.severity == "warning" for d in result.diagnostics)
    return "ok" + (f", {warnings} warning{'s' if warnings != 1 else ''}" if warnings else "")


def facts_text(result) -> str:
    profile = f" (profile {result.profile})" if result.profile else ""
    out = [f"{result.path}{profile}: {_status(result)}"]
    for name, text in fact_lines(result):
        out.append(f"  {name:<11}{text}")
    return "\n".join(out) + "\n"


def profile_lines(results) -> str:
    """One line per profile checked beside the base spec (`llmc check` checks them all)."""
    return "".join(f"  {'profile':<11}{r.profile}: {_status(r)}\n" for r in results)


def _options(t) -> list[str]:
    """The architecture options a transformer block sets away from the 2018 defaults."""
    out = []
    if t.ffn != "gelu":
        out.append({"swiglu": "SwiGLU", "geglu": "GeGLU"}[t.ffn])
    if t.positions == "rope":
        out.append(f"RoPE (base {t.rope_base:g})")
    elif t.positions == "none":
        out.append("no positional embedding")
    if t.norm == "rmsnorm":
        out.append("RMSNorm")
    if t.norm_position == "post":
        out.append("post-norm")
    if t.kv_heads is not None and t.kv_heads != t.heads:
        out.append(f"{t.kv_heads} key/value heads")
    biases = [name for name in ("qkv", "out", "ffn") if not getattr(t, f"{name}_bias")]
    if biases:
        out.append("no " + "/".join(biases) + " bias" + ("es" if len(biases) > 1 else ""))
    if not t.tie_embeddings:
        out.append("untied embeddings")
    return out

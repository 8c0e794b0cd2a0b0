"""The metrics each task has, the kind of value their bounds take, and which way is better.

Read by the schema (a search's default direction), the checks (E501, E601) and the
evaluate target; its own module so that none of them imports another for it.
"""

GENERATION = ("bleu", "chrf", "ter", "rouge1", "rouge2", "rougeL", "perplexity")
COMMON = ("latency_p50", "latency_p99", "model_size")
METRICS_BY_TASK = {
    "translation": GENERATION + COMMON,
    "summarization": GENERATION + COMMON,
    "classification": ("accuracy", "f1") + COMMON,
    "language-modeling": ("perplexity",) + COMMON,
}
# The kind of value each metric's bounds take, and the range of its reference scale.
BOUND_KIND = {
    "bleu": ("number", 0, 100),
    "chrf": ("number", 0, 100),
    "ter": ("number", 0, None),
    "rouge1": ("fraction", 0, 1),
    "rouge2": ("fraction", 0, 1),
    "rougeL": ("fraction", 0, 1),
    "accuracy": ("fraction", 0, 1),
    "f1": ("fraction", 0, 1),
    "perplexity": ("number", 1, None),
    "latency_p50": ("duration", 0, None),
    "latency_p99": ("duration", 0, None),
    "model_size": ("size", 0, None),
}
# Metrics where a larger value is better; max_drop bounds a fall for these and a rise for the rest,
# and a search maximizes these and minimizes the rest (losses, perplexity, TER, latency, size).
# The one list the compiler keeps; runtime/metrics.py has its copy (tests/unit/test_stated_meaning.py
# keeps them equal).
HIGHER_IS_BETTER = ("bleu", "chrf", "rouge1", "rouge2", "rougeL", "accuracy", "f1")


def direction_of(objective: str) -> str:
    """The search direction an objective is optimised in: scores up, losses and costs down."""
    return "maximize" if objective in HIGHER_IS_BETTER else "minimize"

"""Code generation targets: one module here and one template folder each.

A target looks at the checked IR and the derived facts and returns the artifacts it
generates: each an output path, a template under templates/<target>/, and a small
typed context that the template only loops over and fills in. All the thinking
(naming, sizing, escaping decisions) happens in the target's context builder.

A target reads the IR, the facts (plan.py) and the artifacts of the targets listed
before it (`BuildContext.earlier`), never another target's module: k8s/ finds serve/'s
files and the compress scripts there. What several targets share lives in a module
TARGETS does not list (serving_names.py, k8s_common.py, gates.py, slo_rules.py), and
so do a large target's parts (k8s_workloads.py and k8s_policies.py, k8s's pods,
workloads and NetworkPolicies).

To add a target: write `compiler/targets/<name>.py` with
`def artifacts(ctx: BuildContext) -> list[Artifact]`, put its templates in
`templates/<name>/`, and add the module name to TARGETS below.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:  # pragma: no cover - types only
    from ..plan import Facts
    from ..schema import Spec

# In the order their artifacts are listed in the lock file and report.
TARGETS = (
    "horovod",
    "compress",
    "evaluate",
    "hyperopt",
    "katib",
    "tfserving",
    "triton",
    "serving",
    "image",
    "k8s",
    "pipeline",
    "monitoring",
    "report",
)


class BuildContext(NamedTuple):
    """What every target may read: the IR, its facts, and where it came from."""

    ir: Spec
    facts: Facts
    spec_path: str  # the spec as given on the command line
    profile: str | None
    spec_sha256: str  # of the spec file and every file it extends, in order
    compiler_version: str
    earlier: tuple[Artifact, ...] = ()  # what the targets before this one in TARGETS generate (collect fills it)


class Artifact(NamedTuple):
    path: str  # relative to the bundle's root, with forward slashes
    template: str  # relative to templates/, e.g. "k8s/deployment.yaml.j2"
    context: Any  # a NamedTuple/dataclass or mapping the template reads
    executable: bool = False


def target_modules() -> list[ModuleType]:
    return [importlib.import_module(f"{__name__}.{name}") for name in TARGETS]


def collect(ctx: BuildContext) -> list[Artifact]:
    """Every artifact of every target, in a fixed order."""
    out: list[Artifact] = []
    for module in target_modules():
        out.extend(module.artifacts(ctx._replace(earlier=tuple(out))))
    paths = [a.path for a in out]
    duplicates = sorted({p for p in paths if paths.count(p) > 1})
    if duplicates:
        raise AssertionError(f"two targets generate the same file: {duplicates}")
    return out

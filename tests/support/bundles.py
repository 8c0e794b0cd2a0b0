"""The real specs built at each of their profiles, and a YAML reader for their files:
shared by the k8s and monitoring tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from helpers import ROOT
from helpers import build_spec as build

BUILDS = [("translator", None), ("translator", "local"), ("classifier", None), ("classifier", "local")]
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load(path: Path):
    return yaml.load(path.read_text(encoding="utf-8"), Loader=LOADER)


@pytest.fixture(scope="module", params=BUILDS, ids=lambda b: f"{b[0]}-{b[1] or 'default'}")
def built(request, tmp_path_factory):
    """(spec, profile, bundle) for each real spec and profile, built once per module."""
    name, profile = request.param
    spec = ROOT / "specs" / f"{name}.llm"
    out = build(spec, tmp_path_factory.mktemp(f"{name}-{profile or 'default'}") / "bundle", profile)
    return spec, profile, out


def rules(bundle: Path) -> dict[str, dict]:
    """monitoring/alerts.yaml's rules by record or alert name."""
    groups = load(bundle / "monitoring" / "alerts.yaml")["groups"]
    return {r.get("record") or r["alert"]: r for g in groups for r in g["rules"]}

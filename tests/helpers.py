"""Helpers for running the CLI in-process and comparing against expected files."""

from __future__ import annotations

import contextlib
import functools
import io
import os
from pathlib import Path

from llmc.compiler.cli import main

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, cwd: Path | None = None) -> tuple[int, str, str]:
    """Run `llmc ARGS` in this process; returns (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse exits on misuse
                code = exc.code if isinstance(exc.code, int) else 2
    finally:
        os.chdir(old)
    return code, out.getvalue(), err.getvalue()


def build_spec(spec: str | Path, out: Path, profile: str | None = None) -> Path:
    """`llmc build SPEC -o OUT [--profile P]` in this process; returns OUT."""
    args = ["build", str(spec), "-o", str(out), "-q"] + (["--profile", profile] if profile else [])
    code, stdout, stderr = run_cli(*args, cwd=ROOT)
    assert code == 0, stdout + stderr
    return Path(out)


def checked(spec: str | Path, profile: str | None = None):
    """The check result of a spec that must be clean (cached: tests only read it)."""
    return _checked(str(spec), profile)


@functools.cache
def _checked(spec: str, profile: str | None):
    from llmc.compiler.driver import check_spec

    result = check_spec(spec, profile=profile)
    assert result.ok, [d.message for d in result.diagnostics]
    return result


class BundleCache:
    """Bundles of the checked-in specs, each built once (a module fixture holds one)."""

    def __init__(self, tmp_path_factory):
        self._factory = tmp_path_factory
        self._bundles: dict[tuple[str, str | None], Path] = {}

    def __call__(self, name: str, profile: str | None = None) -> Path:
        if (name, profile) not in self._bundles:
            out = self._factory.mktemp(f"{name}-{profile or 'default'}") / "bundle"
            self._bundles[name, profile] = build_spec(ROOT / "specs" / f"{name}.llm", out, profile)
        return self._bundles[name, profile]


def spec_variant(tmp_path: Path, name: str, edit) -> Path:
    """specs/NAME.llm with `edit(text)` applied, written to tmp_path/NAME.llm (the edit
    must change something)."""
    text = (ROOT / "specs" / f"{name}.llm").read_text(encoding="utf-8")
    new = edit(text)
    assert new != text
    path = tmp_path / f"{name}.llm"
    path.write_text(new, encoding="utf-8")
    return path


def train_translator(cfg: dict, steps: int = 40):
    """The dates translator of `cfg` (a model.json model block) after `steps` Adam steps
    on one thread (the cores are shared): it writes date-like strings, far from BLEU 40."""
    import torch

    from llmc.runtime import zoo_torch
    from llmc.runtime.data import batches, epoch_order, load_split

    train = load_split(cfg, str(ROOT / "examples" / "data" / "dates" / "train.tsv"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = zoo_torch.build_model(cfg, seed=0)
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        for i, batch in enumerate(batches(train, epoch_order(len(train), 0, 0), 32)):
            loss, count, _ = zoo_torch.batch_loss(model, zoo_torch.to_tensors(batch))
            (loss / count).backward()
            opt.step()
            opt.zero_grad()
            if i + 1 == steps:
                break
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def compare_or_update(path: Path, actual: str, update: bool) -> None:
    if update:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != actual:
            path.write_text(actual, encoding="utf-8")
        return
    assert path.exists(), f"missing expected file {path.relative_to(ROOT)}: run pytest --update-golden and review it"
    expected = path.read_text(encoding="utf-8")
    assert actual == expected, f"{path.relative_to(ROOT)} differs (pytest --update-golden rewrites it)"

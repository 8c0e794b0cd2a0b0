"""The generated promtool tests catch wrong rules: every generated alert rule is broken
on purpose, one mistake at a time, and `promtool test rules` must fail for at least 90%
of these mutants, for both specs.

The mistakes (mutants), in alerts.yaml as generated:
* every threshold of an alert (a number a comparison holds against, not 0) x4 and /4;
* every `and` / `or` of an alert swapped;
* every range window changed to the next of 5m, 30m, 1h, 2h, 6h, 1d, 3d (3d to 1d): the
  `[w]` of each recording rule, and each recorded window an alert reads;
* every `for:` zeroed.

Each mutant runs the generated cases one by one, quickest first, and is killed by the
first that fails (a mutant none fails has survived). The score is printed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml
from helpers import ROOT
from helpers import build_spec as build

PROMTOOL = shutil.which("promtool")
WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
NEXT_WINDOW = {w: WINDOWS[i + 1] if i + 1 < len(WINDOWS) else WINDOWS[i - 1] for i, w in enumerate(WINDOWS)}
THRESHOLD = re.compile(r"(?<=[>=<] )(\d+(?:\.\d+)?(?:e-?\d+)?)(?=[ )]|$)")
BOOLEAN = re.compile(r" (and|or) ")
RANGE = re.compile(r"\[(5m|30m|1h|2h|6h|1d|3d)\]")
RECORDED_WINDOW = re.compile(r"(?<=:rate)(5m|30m|1h|2h|6h|1d|3d)(?=\{)|(?<=:ratio_rate)(5m|30m|1h|2h|6h|1d|3d)(?=\{)")


class Mutant(NamedTuple):
    what: str
    rule: str
    groups: list
    hints: tuple[str, ...] = ()  # words in the names of the cases likeliest to kill it


def hints(rule: dict, expr: str, at: int) -> tuple[str, ...]:
    """What the cases that exercise a mutation at `at` in `rule` say in their names: the
    SLO, and the windows of the burn-rate term or the recording's window."""
    name = str(rule.get("alert") or rule.get("record"))
    words = {
        "LlmcErrorBudget": "availability",
        "request_errors": "availability",
        "llmc_requests:": "availability",
        "LlmcLatencyBudget": "latency",
        "requests_answered": "latency",
        "requests_slow": "latency",
        "LlmcServerDown": "server",
        "LlmcNoTraffic": "traffic",
        "P99": "p99",
        "latency_seconds": "pod",
    }
    found = [word for key, word in words.items() if key in name]
    if "alert" in rule:
        start = expr.rfind("(", 0, at)
        found += re.findall(r"ratio_rate(\w+)\{", expr[start : expr.find(")", at) + 1])
    else:
        found += re.findall(r"rate(\w+)$", name)
    return tuple(found)


def _replace_at(text: str, match: re.Match, new: str) -> str:
    return text[: match.start()] + new + text[match.end() :]


def mutants(groups: list) -> list[Mutant]:
    out: list[Mutant] = []

    def mutate(gi: int, ri: int, key: str, value, what: str, at: int = 0) -> None:
        copy = yaml.safe_load(yaml.safe_dump(groups))
        copy[gi]["rules"][ri][key] = value
        rule = groups[gi]["rules"][ri]
        out.append(Mutant(what, rule.get("alert") or rule.get("record"), copy, hints(rule, rule["expr"], at)))

    for gi, group in enumerate(groups):
        for ri, rule in enumerate(group["rules"]):
            expr = rule["expr"]
            if "alert" in rule:
                for m in THRESHOLD.finditer(expr):
                    value = float(m.group(1))
                    if value == 0:
                        continue  # x4 and /4 of 0 is 0: the same rule
                    for factor, name in ((4, "x4"), (0.25, "/4")):
                        mutate(
                            gi,
                            ri,
                            "expr",
                            _replace_at(expr, m, repr(value * factor)),
                            f"threshold {m.group(1)} {name}",
                            m.start(),
                        )
                for m in BOOLEAN.finditer(expr):
                    swapped = " or " if m.group(1) == "and" else " and "
                    mutate(gi, ri, "expr", _replace_at(expr, m, swapped), f"{m.group(1)} swapped", m.start())
                for m in RECORDED_WINDOW.finditer(expr):
                    mutate(
                        gi,
                        ri,
                        "expr",
                        _replace_at(expr, m, NEXT_WINDOW[m.group()]),
                        f"window {m.group()} read",
                        m.start(),
                    )
                if "for" in rule:
                    mutate(gi, ri, "for", "0s", f"for {rule['for']} zeroed")
            else:
                for m in RANGE.finditer(expr):
                    mutate(gi, ri, "expr", _replace_at(expr, m, f"[{NEXT_WINDOW[m.group(1)]}]"), f"range {m.group()}")
    return out


def split_cases(monitoring: Path, folder: Path) -> list[tuple[Path, str]]:
    """One promtool test file per generated case (and its name), the shortest cases first."""
    files: list[tuple[int, Path, str]] = []
    for name in ("alerts.test.yaml", "alerts.slow.test.yaml"):
        suite = yaml.safe_load((monitoring / name).read_text(encoding="utf-8"))
        for case in suite["tests"]:
            last = max(_minutes(c["eval_time"]) for c in case["alert_rule_test"] + case.get("promql_expr_test", []))
            eval_minutes = _minutes(suite["evaluation_interval"])
            one = dict(suite, tests=[case])
            path = folder / f"case{len(files):03d}.yaml"
            path.write_text(yaml.safe_dump(one, sort_keys=False), encoding="utf-8")
            files.append((last // eval_minutes, path, case["name"]))
    return [(path, name) for _, path, name in sorted(files)]


def _minutes(text: str) -> int:
    total = 0
    for amount, unit in re.findall(r"(\d+)([mhd])", text):
        total += int(amount) * {"m": 1, "h": 60, "d": 1440}[unit]
    return total


class Cases:
    """The case files, in the order a mutant tries them: those whose names share most of
    its hints first; among equals, the last case that killed a mutant first (mutants of
    one rule die on the same case), the rest shortest first."""

    def __init__(self, files: list[tuple[Path, str]]):
        self.names = dict(files)
        self.order = [path for path, _ in files]
        self.lock = threading.Lock()

    def killed(self, mutant: Mutant, folder: Path) -> bool:
        folder.mkdir()
        rules = yaml.safe_dump({"groups": mutant.groups}, sort_keys=False)
        (folder / "alerts.yaml").write_text(rules, encoding="utf-8")
        with self.lock:
            order = sorted(self.order, key=lambda c: -sum(h in self.names[c] for h in mutant.hints))
        for case in order:
            shutil.copy(case, folder / case.name)
            proc = subprocess.run(
                [str(PROMTOOL), "test", "rules", case.name], cwd=folder, capture_output=True, timeout=300
            )
            if proc.returncode != 0:
                with self.lock:
                    self.order.remove(case)
                    self.order.insert(0, case)
                return True
        return False


@pytest.mark.parametrize("spec", ["translator", "classifier"])
def test_the_generated_rule_tests_kill_90_percent_of_broken_rules(tmp_path, spec):
    assert PROMTOOL, "promtool is not on PATH (apt-get install prometheus)"
    bundle = build(ROOT / "specs" / f"{spec}.llm", tmp_path / "bundle")
    monitoring = bundle / "monitoring"
    cases_dir = tmp_path / "cases"
    cases_dir.mkdir()
    cases = Cases(split_cases(monitoring, cases_dir))
    groups = yaml.safe_load((monitoring / "alerts.yaml").read_text(encoding="utf-8"))["groups"]
    # The unmutated rules pass every case (else every mutant would count as killed).
    assert not cases.killed(Mutant("none", "", groups), tmp_path / "original")
    all_mutants = mutants(groups)
    kinds = {m.what.split()[0] for m in all_mutants}
    assert kinds == {"threshold", "and", "or", "window", "range", "for"}, kinds
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda im: cases.killed(im[1], tmp_path / f"m{im[0]}"), enumerate(all_mutants)))
    survivors = [f"{m.rule}: {m.what}" for m, dead in zip(all_mutants, results) if not dead]
    score = sum(results) / len(results)
    print(f"{spec}: {sum(results)} of {len(results)} mutants killed ({score:.1%}); survivors: {survivors}")
    assert score >= 0.9, survivors

"""`llmc plan` opens with what changes: the derived facts (facts.json, old -> new) and
each object's fields, then the diff of only the files those lines do not spell out;
`--format json` keeps everything. In process: the CLI's `main` and plan_summary's
functions on texts.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import ROOT, run_cli

from llmc.compiler.plan_summary import as_json, human, summarize

SPEC = (ROOT / "specs" / "translator.llm").read_text(encoding="utf-8")
HASH_LINE = re.compile(r'^[-+]\s*"[^"]+": "[0-9a-f]{64}",?$', re.M)


def _built(tmp_path: Path) -> tuple[Path, Path]:
    """specs/translator.llm copied to tmp_path and built there: (spec, bundle)."""
    spec, out = tmp_path / "translator.llm", tmp_path / "bundle"
    spec.write_text(SPEC, encoding="utf-8")
    code, _, err = run_cli("build", str(spec), "-o", str(out), "-q")
    assert code == 0, err
    return spec, out


def _edit(spec: Path, *changes: tuple[str, str]) -> None:
    text = spec.read_text(encoding="utf-8")
    for pattern, replacement in changes:
        text, n = re.subn(pattern, replacement, text, count=1, flags=re.M)
        assert n == 1, pattern
    spec.write_text(text, encoding="utf-8")


def _docs_example() -> str:
    """The plan docs/bundle.md shows under "Reviewing a change"."""
    text = (ROOT / "docs" / "bundle.md").read_text(encoding="utf-8")
    m = re.search(r"^## Reviewing a change.*?^```\n(.*?)^```$", text, re.S | re.M)
    assert m, "docs/bundle.md has no plan example"
    return m.group(1)


def _diff_start(lines: list[str]) -> int:
    return next((i for i, line in enumerate(lines) if line.startswith(("--- ", "+++ "))), len(lines))


def test_more_hosts_reads_as_facts_and_fields_first_in_under_40_lines(tmp_path):
    spec, out = _built(tmp_path)
    _edit(spec, (r"^(\s*hosts\s*=\s*)2$", r"\g<1>4"), (r"^(\s*data\s*=\s*)4$", r"\g<1>8"))
    assert run_cli("check", str(spec), "-q")[0] == 0  # data 8 x tensor 2 = 4 hosts x 4 slots
    code, stdout, err = run_cli("plan", str(spec), "-o", str(out))
    assert code == 3, err
    lines = stdout.splitlines()
    assert len(lines) < 40, stdout
    assert lines[0] == "facts (previous build → this one):"
    assert "  devices    2 hosts × 4 slots = 8 × A100-80GB → 4 hosts × 4 slots = 16 × A100-80GB" in lines
    assert "  layout     data 4 × tensor 2 × pipeline 1 → data 8 × tensor 2 × pipeline 1" in lines
    mpijob = "  k8s/mpijob.yaml: MPIJob translator-train: spec.mpiReplicaSpecs.Worker.replicas 2 → 4"
    assert mpijob in lines
    assert "  model.json: train.cluster.hosts 2 → 4" in lines and "  train/launch.sh: SPEC_NP 8 → 16" in lines
    assert "  facts.json: the facts above" in lines
    assert re.search(r"^  llmc\.lock\.json: \d+ hashes changed$", stdout, re.M)
    # The summary comes first; the diff then holds only what it does not spell out.
    start = _diff_start(lines)
    assert lines.index(mpijob) < start < len(lines) - 1
    shown = {line[6:] for line in lines if line.startswith("+++ b/")}
    assert shown == {"report.md"}, shown
    assert not re.search(r"[0-9a-f]{64}", stdout)  # no lock hash lines
    assert lines[-1] == f"{out}: 7 files would change"
    assert stdout.replace(str(out), "build/translator") == _docs_example()  # docs/bundle.md shows this plan

    code, stdout, err = run_cli("plan", str(spec), "-o", str(out), "--format", "json")
    assert code == 3, err
    found = json.loads(stdout)
    plan = found[-1]["plan"]
    assert plan["changes"] and plan["previous_build"] == "bundle" and plan["output"] == str(out)
    assert {"fact": "layout", "old": "data 4 × tensor 2 × pipeline 1", "new": "data 8 × tensor 2 × pipeline 1"} in (
        plan["facts"]
    )
    files = {f["path"]: f for f in plan["files"]}
    assert files["k8s/mpijob.yaml"]["objects"] == [
        {
            "object": "MPIJob translator-train",
            "status": "changed",
            "fields": [{"path": "spec.mpiReplicaSpecs.Worker.replicas", "status": "changed", "old": 2, "new": 4}],
        }
    ]
    assert files["llmc.lock.json"]["hashes_changed"] == 7
    assert len(HASH_LINE.findall(plan["diff"])) == 2 * 7  # the whole diff: the lock's lines too
    # The pipeline's cache keys follow model.json: counted, each stage's, not listed.
    assert files["pipeline/pipeline.yaml"]["hashes_changed"] == 4 and files["pipeline/pipeline.yaml"]["objects"] == []
    assert "+++ b/k8s/mpijob.yaml" in plan["diff"] and "+      replicas: 4" in plan["diff"]
    assert stdout.count("{") > 1 and "facts (previous build" not in stdout  # no human text in the JSON


@pytest.mark.parametrize(
    "change, facts, field",
    [
        (
            (r"^(\s*p99_latency\s*=\s*)80ms$", r"\g<1>20ms"),
            r"^  replicas   1 for 400rps at p99 80ms \(.*\) → 2 for 400rps at p99 20ms \(.*\)$",
            "  serving.json: sla.p99_latency_s 0.08 → 0.02",
        ),
        (
            (r"^(\s*min\s*=\s*)2$", r"\g<1>3"),
            r"^facts: unchanged$",
            "  k8s/hpa.yaml: HorizontalPodAutoscaler translator: spec.minReplicas 2 → 3",
        ),
    ],
    ids=["sla-latency", "serve-replicas"],
)
def test_a_one_field_change_shows_its_facts_and_objects_first(tmp_path, change, facts, field):
    spec, out = _built(tmp_path)
    _edit(spec, change)
    code, stdout, err = run_cli("plan", str(spec), "-o", str(out))
    assert code == 3, err
    lines = stdout.splitlines()
    start = _diff_start(lines)
    assert re.search(facts, "\n".join(lines[:start]), re.M), stdout
    assert field in lines[:start], stdout
    assert not re.search(r"[0-9a-f]{64}", stdout)
    code, quiet, _ = run_cli("plan", str(spec), "-o", str(out), "-q")
    assert code == 3 and quiet.startswith("changes:\n") and field in quiet.splitlines()


def test_no_changes_stays_as_it_was(tmp_path):
    from llmc.compiler.driver import check_spec
    from llmc.compiler.facts_text import facts_text

    spec, out = _built(tmp_path)
    code, stdout, _ = run_cli("plan", str(spec), "-o", str(out))
    assert code == 0
    assert stdout == facts_text(check_spec(str(spec))) + f"{out}: no changes\n"
    assert run_cli("plan", str(spec), "-o", str(out), "-q")[1:] == (f"{out}: no changes\n", "")
    assert run_cli("plan", str(spec), "-o", str(out), "--diff") == (0, "", "")
    code, stdout, _ = run_cli("plan", str(spec), "-o", str(out), "--format", "json")
    plan = json.loads(stdout)[-1]["plan"]
    assert code == 0 and not plan["changes"] and plan["facts"] == plan["files"] == [] and plan["diff"] == ""


def test_diff_prints_the_whole_diff_lock_included(tmp_path):
    spec, out = _built(tmp_path)
    _edit(spec, (r"^(\s*min\s*=\s*)2$", r"\g<1>3"))
    code, stdout, _ = run_cli("plan", str(spec), "-o", str(out), "--diff")
    assert code == 3 and stdout.startswith("--- a/") and HASH_LINE.search(stdout)
    assert "-  minReplicas: 2\n+  minReplicas: 3\n" in stdout


def test_a_bundle_without_facts_and_no_bundle_at_all_are_said_so(tmp_path):
    spec, out = _built(tmp_path)
    (out / "facts.json").unlink()  # as an llmc before facts.json wrote it
    lock = json.loads((out / "llmc.lock.json").read_text())
    del lock["artifacts"]["facts.json"]
    (out / "llmc.lock.json").write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n")
    code, stdout, err = run_cli("plan", str(spec), "-o", str(out))
    assert code == 3, err
    lines = stdout.splitlines()
    assert lines[0].startswith("facts: the previous build's are unknown (its bundle has no facts.json")
    assert "  devices    2 hosts × 4 slots = 8 × A100-80GB" in lines
    assert "  facts.json: added, 22 lines" in lines and "  llmc.lock.json: 1 hash changed" in lines
    code, stdout, _ = run_cli("plan", str(spec), "-o", str(tmp_path / "new"))
    assert code == 3 and stdout.startswith(f"facts: no previous build in {tmp_path / 'new'}; this build's:\n")
    assert "  k8s/mpijob.yaml: added, " in stdout and "lines (MPIJob translator-train)" in stdout


# --- the summary of files, on texts ---------------------------------------------------------

DEPLOYMENT = """\
# Generated by llmc: do not edit.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  template:
    spec:
      containers:
        - name: server
          image: "server:1"
          env:
            - name: MODE
              value: "fast"
            - name: LEVEL
              value: "1"
        - name: sidecar
          image: "sidecar:1"
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  ports:
    - name: http
      port: 80
"""


def _summary(old: dict[str, str], new: dict[str, str]):
    return summarize(old, new, "out")


def test_objects_match_by_kind_and_name_and_list_items_by_name():
    new = (
        DEPLOYMENT.replace('value: "1"', 'value: "2"')
        .replace("        - name: sidecar\n", "        - name: proxy\n")
        .replace("  replicas: 2", "  replicas: 3")
        + "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\n"
    )
    [f] = _summary({"k8s/app.yaml": DEPLOYMENT}, {"k8s/app.yaml": new}).files
    lines = human(_summary({"k8s/app.yaml": DEPLOYMENT}, {"k8s/app.yaml": new}), facts=False).splitlines()
    assert lines[:6] == [
        "changes:",
        "  k8s/app.yaml: Deployment web: spec.replicas 2 → 3",
        '  k8s/app.yaml: Deployment web: spec.template.spec.containers[server].env[LEVEL].value "1" → "2"',
        '  k8s/app.yaml: Deployment web: spec.template.spec.containers[proxy] (none) → {"image": "sidecar:1", '
        '"name": "proxy"}',
        '  k8s/app.yaml: Deployment web: spec.template.spec.containers[sidecar] {"image": "sidecar:1", '
        '"name": "sidecar"} → (none)',
        "  k8s/app.yaml: ConfigMap extra added",
    ]
    assert lines[6].startswith("diff of the files not spelled out above") and "+++ b/k8s/app.yaml" in lines
    fields = as_json(_summary({"k8s/app.yaml": DEPLOYMENT}, {"k8s/app.yaml": new}))["files"][0]["objects"][0]
    assert fields["fields"][2] == {
        "path": "spec.template.spec.containers[proxy]",
        "status": "added",
        "old": None,
        "new": {"name": "proxy", "image": "sidecar:1"},
    }
    assert f.status == "changed" and [o.name for o in f.objects] == ["Deployment web", "ConfigMap extra"]


def test_a_change_the_fields_state_exactly_needs_no_diff_and_comments_count_as_lines():
    new = DEPLOYMENT.replace("replicas: 2", "replicas: 4")
    text = human(_summary({"app.yaml": DEPLOYMENT}, {"app.yaml": new}), facts=False)
    assert text == "changes:\n  app.yaml: Deployment web: spec.replicas 2 → 4\nout: 1 file would change\n"
    new = new.replace("# Generated by llmc: do not edit.", "# Generated by llmc 2: do not edit.")
    text = human(_summary({"app.yaml": DEPLOYMENT}, {"app.yaml": new}), facts=False)
    assert "  app.yaml: 1 line changed\n" in text and "+# Generated by llmc 2: do not edit.\n" in text
    relaid = DEPLOYMENT.replace("port: 80", "port:   80")  # the same objects: compared as text
    text = human(_summary({"app.yaml": DEPLOYMENT}, {"app.yaml": relaid}), facts=False)
    assert "  app.yaml: 1 line changed\n" in text


def test_json_files_walk_to_dotted_fields_and_long_values_are_cut_around_the_difference():
    note = "the p99 " + "request latency " * 6 + "is 80ms at 400 req/s."
    old = {"sla": {"p99_latency_s": 0.08}, "note": note}
    new = {"sla": {"p99_latency_s": 0.02}, "note": note.replace("80ms", "20ms")}
    summary = _summary({"serving.json": json.dumps(old)}, {"serving.json": json.dumps(new)})
    assert human(summary, facts=False).splitlines()[1:3] == [
        "  serving.json: sla.p99_latency_s 0.08 → 0.02",
        '  serving.json: note … latency is 80ms at 400 req/s." → … latency is 20ms at 400 req/s."',
    ]
    assert "diff of the files" not in human(summary)  # the cut parts are the same on both sides
    assert as_json(summary)["files"][0]["objects"][0]["fields"][1]["new"] == new["note"]


def test_text_files_show_changed_assignments_and_count_other_lines():
    old = "#!/bin/bash\nSPEC_NP=8\nSLOTS=4\necho start\nMAX_BATCH = 16\n"
    new = "#!/bin/bash\nSPEC_NP=16\nSLOTS=4\necho begin\nMAX_BATCH = 32\n"
    text = human(_summary({"train/launch.sh": old}, {"train/launch.sh": new}), facts=False)
    assert text.splitlines()[1:5] == [
        "  train/launch.sh: SPEC_NP 8 → 16",
        "  train/launch.sh: MAX_BATCH 16 → 32",
        "  train/launch.sh: 1 line changed",
        "diff of the files not spelled out above (`--format json` has every file's):",
    ]
    # A key on two lines is not a field: which one changed would be lost.
    old, new = "dims: [1]\ndims: [2]\n", "dims: [1]\ndims: [3]\n"
    assert "  model.pbtxt: 1 line changed\n" in human(_summary({"model.pbtxt": old}, {"model.pbtxt": new}))


def test_the_lock_file_counts_its_hashes_and_lists_its_other_fields():
    def lock(digest: str, train: str) -> str:
        document = {"artifacts": {"a.py": digest * 64}, "inputs": {"train": train}, "spec_sha256": "0" * 64}
        return json.dumps(document, indent=2) + "\n"

    summary = _summary({"llmc.lock.json": lock("a", "x.tsv")}, {"llmc.lock.json": lock("b", "y.tsv")})
    assert human(summary, facts=False) == (
        'changes:\n  llmc.lock.json: inputs.train "x.tsv" → "y.tsv"\n  llmc.lock.json: 1 hash changed\n'
        "out: 1 file would change\n"
    )
    assert HASH_LINE.search(as_json(summary)["diff"])


def test_values_cannot_drive_the_terminal():
    old = DEPLOYMENT
    new = DEPLOYMENT.replace('"server:1"', '"server:\\u202e1\\u001b[2J"')
    text = human(_summary({"app.yaml": old}, {"app.yaml": new}), facts=False)
    assert "\u202e" not in text.split("diff of")[0] and "\x1b" not in text
    assert '\\u{202E}1\\u001b[2J"' in text

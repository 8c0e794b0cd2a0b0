"""The `llmc` command line: a thin layer over the driver.

Exit status: 0 clean (warnings allowed), 1 the spec has errors, 2 the command was
misused (no such file, bad flag, unknown profile) or the compiler failed
internally. A user's mistake never ends in a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

EXIT_OK, EXIT_ERRORS, EXIT_USAGE = 0, 1, 2
EXIT_CHANGES = 3  # `llmc plan`: the bundle on disk is not what a build would write

COMMANDS_HELP = """commands:
  check SPEC...        validate specs, each with every profile, and print their derived facts
  build SPEC           generate the bundle: training, compression, evaluation, search,
                       serving, Kubernetes and monitoring artifacts
  plan SPEC            show what `build` would change in the output directory
  run SPEC             build, then run the bundle's stages (train, compress, evaluate, serve)
  runs [SPEC]          list the records of earlier runs
  search apply SPEC    write the best values of the last search back into the spec
  deploy SPEC          build, then apply the serving objects to the current kube context
                       and follow the rollout (no training)
  serve SPEC           serve the model the last successful run gated, on a local Triton server
  loadtest SPEC        serve it, then measure it under open-loop load against the SLA
  fmt [--check] SPEC.. rewrite specs in the canonical layout (or check they are)
  explain CODE         explain a diagnostic code, e.g. `llmc explain E306`
  schema               print the JSON Schema of the language
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's default is fine, but say how to get help
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\n  (see `{self.prog.split()[0]} --help`)\n")
        if _JSON_REQUESTED:  # argparse fails before `args.format` exists, so the command line decides
            from .diagnostic_output import render_usage_json

            sys.stdout.write(render_usage_json(message))
        sys.exit(EXIT_USAGE)


_JSON_REQUESTED = False  # `--format json` is on the command line being parsed


def _asks_for_json(argv: list[str]) -> bool:
    """Whether the command line says `--format json`, read before argparse (which may fail first)."""
    for i, arg in enumerate(argv):
        if arg == "--":
            return False
        if arg == "--format=json" or (arg == "--format" and argv[i + 1 : i + 2] == ["json"]):
            return True
    return False


def add_server_flags(p: argparse.ArgumentParser, http_port: int, metrics_port: int) -> None:
    """The flags of the commands that start a local Triton (serve, loadtest); port 0: a free one."""

    def port_help(what: str, default: int) -> str:
        return f"Triton's {what} port (default {default if default else 'a free one'})"

    p.add_argument("--http-port", type=int, default=http_port, metavar="PORT", help=port_help("HTTP", http_port))
    p.add_argument(
        "--metrics-port", type=int, default=metrics_port, metavar="PORT", help=port_help("metrics", metrics_port)
    )
    p.add_argument(
        "--ready-timeout",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="give up when the server is not ready after this long (default 120)",
    )
    p.add_argument(
        "--runs-dir", default="runs", metavar="DIR", help="where `llmc run` recorded its runs (default runs/)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="llmc",
        description="llmc: a compiler for ML engineering. One .llm spec in; checked training, "
        "compression, evaluation, search, serving and monitoring artifacts out.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=COMMANDS_HELP + "\nexit status: 0 ok (warnings allowed), 1 the spec has errors, 2 misuse",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add_output_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--format",
            choices=("human", "json"),
            default="human",
            help="diagnostics for people (default) or, for tools, one JSON array on stdout whatever "
            "the outcome (everything else goes to stderr)",
        )
        p.add_argument("--color", choices=("auto", "always", "never"), default="auto", help="colour diagnostics")

    p = sub.add_parser(
        "check",
        help="validate specs and print their derived facts",
        description="Validate specs completely, each on its own and with each of its profiles "
        "applied, and print their derived facts.",
    )
    p.add_argument("specs", nargs="+", metavar="SPEC")
    p.add_argument(
        "--profile", help="check only the spec with this profile applied (default: the spec and every profile)"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print diagnostics only, not the derived facts")
    p.add_argument(
        "--data",
        action="store_true",
        help="also read every local data file the spec names (train, valid, test) as the runtime will, "
        "and report each problem in them at its file and line",
    )
    add_output_flags(p)

    for name, text in (
        ("build", "generate the bundle of artifacts (written atomically, with llmc.lock.json)"),
        (
            "plan",
            "show what `build` would change: the derived facts and the objects' fields that change "
            "(old → new), then the diff of the files those lines do not spell out; "
            "exit 0 when nothing changes, 3 when something would",
        ),
    ):
        p = sub.add_parser(name, help=text.split(":")[0].split(" (")[0], description=text[0].upper() + text[1:] + ".")
        p.add_argument("spec", metavar="SPEC")
        p.add_argument("--profile", help="apply the named profile's overrides")
        p.add_argument(
            "-o", "--output", metavar="DIR", help="the bundle's directory (default build/<spec>[-<profile>])"
        )
        p.add_argument("-q", "--quiet", action="store_true", help="print diagnostics only, not the derived facts")
        if name == "plan":
            p.add_argument(
                "--diff",
                action="store_true",
                help="print only the unified diff of every changed file, the lock file's included",
            )
        add_output_flags(p)

    p = sub.add_parser(
        "run",
        help="build, then run the bundle's stages",
        description="Build the bundle, then run its stages in order (train, compress, evaluate, "
        "serve: the gated model load-tested against the SLA on a local Triton; search with --stage "
        "search). A stage whose inputs are unchanged since its last success is skipped. Every run "
        "is recorded under runs/. Exit status: 0 every stage passed, 1 a stage failed (a failed gate, "
        "a missed SLA), 2 the run could not start, 130 interrupted.",
    )
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--profile", help="apply the named profile's overrides")
    p.add_argument("-o", "--output", metavar="DIR", help="the bundle's directory (default build/<spec>[-<profile>])")
    p.add_argument("--stage", choices=("train", "compress", "evaluate", "serve", "search"), help="run only this stage")
    p.add_argument(
        "--target",
        choices=("local", "k8s", "kfp"),
        default="local",
        help="local: this machine, Horovod over Gloo (default); k8s: the current kube context; kfp: submit "
        "pipeline/pipeline.yaml to Kubeflow Pipelines (--endpoint) and print the run's URL",
    )
    p.add_argument(
        "--endpoint",
        metavar="URL",
        help="--target kfp: the Kubeflow Pipelines API (default $KF_PIPELINES_ENDPOINT)",
    )
    p.add_argument("--np", type=int, metavar="N", help="training processes (default: the spec's layout)")
    p.add_argument("--force", action="store_true", help="rerun stages even when their inputs are unchanged")
    p.add_argument(
        "--runs-dir", default="runs", metavar="DIR", help="where run records and work files go (default runs/)"
    )
    add_output_flags(p)

    p = sub.add_parser(
        "deploy",
        help="build, then apply the serving objects to the current kube context and follow the rollout",
        description="Build the bundle, then apply its serving objects (ServiceAccount, ConfigMap, Service, "
        "PodDisruptionBudget, NetworkPolicy, monitoring, then the Deployment and its autoscaler; never the "
        "training workloads) to the current kube context with server-side apply, print what each apply "
        "changed, and follow the Deployment's rollout. docs/runtime.md has the details. Exit status: 0 "
        "deployed (or the dry run accepted), 1 the spec has errors, the cluster refused an object or the "
        "rollout failed, 2 it could not start (no cluster, no serving objects; nothing applied), 130 "
        "interrupted (the rollout continues in the cluster).",
    )
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--profile", help="apply the named profile's overrides")
    p.add_argument("-o", "--output", metavar="DIR", help="the bundle's directory (default build/<spec>[-<profile>])")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="the API server's dry run of each apply: validated and compared, nothing changed",
    )
    p.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="give up following the rollout when it makes no progress for this long "
        "(default: the Deployment's progressDeadlineSeconds, 600 unless it sets one)",
    )
    add_output_flags(p)

    p = sub.add_parser(
        "serve",
        help="serve the model the last successful run gated, on a local Triton server",
        description="Serve the model that the last successful `llmc run SPEC [--profile P]` produced and "
        "evaluate passed, on a local Triton server (127.0.0.1) with the bundle's dynamic batching and a "
        "queue bounded by the SLA, until Ctrl-C or SIGTERM. docs/serving.md has the requests. Exit status: "
        "0 stopped by Ctrl-C or SIGTERM, 1 nothing to serve, a port in use or a server that failed, 2 misuse.",
    )
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--profile", help="serve the run of the spec with this profile applied")
    add_server_flags(p, http_port=8000, metrics_port=8002)

    p = sub.add_parser(
        "loadtest",
        help="serve the gated model, then measure it under open-loop load against the SLA",
        description="Serve the model `llmc serve` would serve, on free local ports, then measure it: the "
        "median of single requests, open-loop Poisson load at --rate for --duration judged against the SLA "
        "of the bundle's serving.json, and a short capacity sweep. The report goes to "
        "runs/<spec>[-<profile>]/loadtests/<UTC timestamp>/. Exit status: 0 the SLA held, 3 it was missed, "
        "1 nothing to serve or a server that failed, 2 misuse.",
    )
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--profile", help="load-test the run of the spec with this profile applied")
    p.add_argument("--rate", type=float, metavar="RPS", help="arrivals per second (default: the SLA's throughput_rps)")
    p.add_argument(
        "--duration", type=float, default=20.0, metavar="SECONDS", help="seconds of load (default 20, at most 600)"
    )
    p.add_argument("--no-sweep", action="store_true", help="skip the capacity sweep")
    p.add_argument("--seed", type=int, default=0, help="seed of the arrival times (default 0)")
    add_server_flags(p, http_port=0, metrics_port=0)

    p = sub.add_parser(
        "search",
        help="act on the results of a hyperparameter search",
        description="Act on the results of `llmc run SPEC --stage search`.",
    )
    search_sub = p.add_subparsers(dest="search_command", metavar="ACTION", parser_class=_Parser, required=True)
    p = search_sub.add_parser(
        "apply",
        help="write the best values of a search back into the spec",
        description="Write the best point of a finished search into the spec as a minimal edit: into the "
        "searched profile when there is one (its override lines), else into the blocks that set the fields; "
        "comments and layout kept, values in the spec's own units and notation. The edited spec must check "
        "clean, or nothing is written. The diff is printed on stdout. Exit status: 0 written (or nothing to "
        "change), 1 no results to apply or the edit would not check clean, 2 misuse.",
    )
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--profile", help="the profile that was searched (its overrides get the values)")
    p.add_argument(
        "--from",
        dest="source",
        metavar="RUN",
        help="a run record (runs/<spec>[-<profile>]/<timestamp>), a search folder or its results.json "
        "(default: the newest run record of the spec and profile that holds a search)",
    )
    p.add_argument(
        "--runs-dir", default="runs", metavar="DIR", help="where run records are (default runs/, as for `llmc run`)"
    )
    p.add_argument("--dry-run", action="store_true", help="print the diff, write nothing")

    p = sub.add_parser("runs", help="list the records of earlier runs", description="List the records under runs/.")
    p.add_argument("spec", nargs="?", metavar="SPEC", help="only this spec's runs")
    p.add_argument("--runs-dir", default="runs", metavar="DIR")

    p = sub.add_parser(
        "fmt",
        help="rewrite specs in the canonical layout",
        description="Rewrite specs in the one canonical layout (idempotent; comments kept).",
    )
    p.add_argument("specs", nargs="+", metavar="SPEC", help="spec files or folders holding them")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file is not formatted")
    p.add_argument("--diff", action="store_true", help="with --check, show what would change")
    add_output_flags(p)

    p = sub.add_parser(
        "fix",
        help="apply the fixes the diagnostics propose",
        description="Apply every fix the diagnostics of a spec (and of each of its profiles) carry: "
        "exact edits, each checked against the whole spec before it is offered; comments and "
        "layout are kept. Prints the diff, writes the file atomically, then checks it again; "
        "exit 0 when the result checks clean, 1 when errors remain.",
    )
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--dry-run", action="store_true", help="print the diff and what would remain; write nothing")
    add_output_flags(p)

    p = sub.add_parser("explain", help="explain a diagnostic code", description="Print the long explanation of a code.")
    p.add_argument("code", metavar="CODE")

    sub.add_parser(
        "schema",
        help="print the JSON Schema of the language",
        description="Print the JSON Schema of .llm specs (as the typed IR sees them), for editors.",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    if words[:1] == ["check"] and "--data" not in words:
        from . import check_cache

        if check_cache.enabled():
            return _cached_check(words, check_cache)
    return _main(argv)


def _cached_check(words: list[str], check_cache) -> int:
    """`llmc check` answered from the cache when nothing it read has changed; else
    checked, its answer kept (check_cache.py)."""
    color = _color_of(words)
    kept = check_cache.lookup(words, color)
    if kept is not None:
        out, err, status = kept
        sys.stdout.write(out)
        sys.stderr.write(err)
        return status
    stdout, stderr = sys.stdout, sys.stderr
    out_tee, err_tee = _Tee(stdout), _Tee(stderr)
    files: set[str] = set()
    sys.stdout, sys.stderr = out_tee, err_tee
    try:
        status = _main(words, read=files)
    finally:
        sys.stdout, sys.stderr = stdout, stderr
    if status in (EXIT_OK, EXIT_ERRORS) and files:  # a misuse is not kept: the fix may be a new file
        check_cache.store(words, color, sorted(files), out_tee.text(), err_tee.text(), status)
    return status


class _Tee:
    """A stream that keeps a copy of what is written through it."""

    def __init__(self, stream):
        self.stream, self.parts = stream, []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return self.stream.write(text)

    def text(self) -> str:
        return "".join(self.parts)

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


def _color_of(words: list[str]) -> bool:
    """Whether `llmc check WORDS` colours its diagnostics (as _use_color decides)."""
    choice = "auto"
    for i, word in enumerate(words):
        if word == "--color" and i + 1 < len(words):
            choice = words[i + 1]
        elif word.startswith("--color="):
            choice = word.partition("=")[2]
    if choice == "always":
        return True
    if choice == "never" or os.environ.get("NO_COLOR"):
        return False
    return sys.stderr.isatty()


def _main(argv: list[str] | None = None, read: set[str] | None = None) -> int:
    global _JSON_REQUESTED
    parser = build_parser()
    _JSON_REQUESTED = _asks_for_json(sys.argv[1:] if argv is None else list(argv))
    args = parser.parse_args(argv)
    args.spec_files_read = read  # `llmc check` notes the files it read here, for its cache
    if args.version:
        from . import __version__

        print(f"llmc {__version__}")
        return EXIT_OK
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    if getattr(args, "format", None) != "json":
        return _run_command(args)
    # With --format json, stdout holds exactly one JSON array, written when the command
    # ends whatever the outcome; anything else the command prints (facts, diffs, the
    # runtime's progress) goes to stderr.
    args.json_findings = []
    stdout = sys.stdout
    try:
        with contextlib.redirect_stdout(sys.stderr):
            return _run_command(args)
    finally:
        try:
            stdout.write(json.dumps(args.json_findings, indent=2, ensure_ascii=False) + "\n")
            stdout.flush()
        except BrokenPipeError:
            pass


def _run_command(args) -> int:
    try:
        return _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # a compiler bug (InternalError included): say so plainly, without a traceback
        if os.environ.get("LLMC_DEBUG"):
            raise
        message = f"internal compiler error: {type(exc).__name__}: {exc}"
        sys.stderr.write(
            f"error: {message}\n"
            "  = note: this is a bug in llmc, not in your spec; rerun with LLMC_DEBUG=1 for a traceback\n"
        )
        if getattr(args, "json_findings", None) is not None:
            from .diagnostic_output import usage_json

            args.json_findings.append(usage_json(message, code="internal"))
        return EXIT_USAGE


def _usage_error(args, message: str) -> int:
    """Report a misused command: `error: message` on stderr and, with --format json,
    a finding with code "usage" in the JSON array on stdout. Returns EXIT_USAGE."""
    from .diagnostic_output import render_usage_json, usage_json

    sys.stderr.write(f"error: {message}\n")
    findings = getattr(args, "json_findings", None)
    if findings is not None:
        findings.append(usage_json(message))
    elif getattr(args, "format", "human") == "json":  # called outside main(): nothing else will print
        sys.stdout.write(render_usage_json(message))
    return EXIT_USAGE


def _use_color(args) -> bool:
    if args.color == "always":
        return True
    if args.color == "never" or os.environ.get("NO_COLOR"):
        return False
    return sys.stderr.isatty()


def _checked(spec: str, args, every_profile: bool = False, text: str | None = None):
    """Check one spec, printing its diagnostics (stderr; with --format json, into the
    findings). With `every_profile`, the base spec and each of its profiles (just
    `--profile` when given): returns a driver.SpecCheck. Otherwise the selected profile
    or the base: returns a driver.CheckResult. A misuse returns an exit status."""
    from .compose import UnknownProfile
    from .diagnostic_output import finding_json, render_human, summary_line
    from .driver import SpecCheck, check_every_profile, check_spec
    from .source import SourceError

    try:
        if every_profile:
            checked = check_every_profile(spec, text=text, only=args.profile)
        else:
            result = check_spec(spec, profile=args.profile, text=text)
            checked = SpecCheck(result, [], [(args.profile, d) for d in result.diagnostics])
    except SourceError as exc:
        return _usage_error(args, str(exc))
    except UnknownProfile as exc:
        known = ", ".join(exc.known) or "none"
        return _usage_error(args, f"{spec} has no profile `{exc.name}` (profiles: {known})")
    sources = checked.base.sources
    if args.format == "json":
        if getattr(args, "json_findings", None) is None:  # called outside main()
            args.json_findings = []
        args.json_findings.extend(finding_json(d, profile) for profile, d in checked.findings)
    else:
        shown = [
            _with_profile_note(d, profile) if profile and not args.profile else d for profile, d in checked.findings
        ]
        sys.stderr.write(render_human(shown, sources, _use_color(args)))
        if not checked.ok:
            sys.stderr.write(f"{spec}: {summary_line(shown)}\n")
    return checked if every_profile else checked.base


def _with_profile_note(d, profile: str):
    """A finding that only checking `profile` made, so marked (the base spec's are not)."""
    return d._replace(notes=(f"with profile `{profile}` applied",) + d.notes)


def cmd_check(args) -> int:
    status = EXIT_OK
    for spec in args.specs:
        checked = _checked(spec, args, every_profile=True)
        if isinstance(checked, int):
            return checked
        if args.spec_files_read is not None:
            for result in (checked.base, *checked.profiles):
                args.spec_files_read.update(result.sources)
        data_ok = True
        if args.data:
            results = [(checked.base.profile, checked.base)] + [(r.profile, r) for r in checked.profiles]
            data_ok = _data_checked(spec, args, results, checked.base.sources)
        if not checked.ok or not data_ok:
            status = EXIT_ERRORS
        elif args.format == "human" and not args.quiet:
            from .facts_text import facts_text, profile_lines

            sys.stdout.write(facts_text(checked.base) + profile_lines(checked.profiles))
    return status


def _data_checked(spec: str, args, results, sources) -> bool:
    """Read the data files of each checked spec in `results` ([(profile, CheckResult)]),
    printing their findings as _checked prints a spec's; False when there are errors."""
    from .data_check import check_data
    from .diagnostic_output import finding_json, render_human, summary_line

    report = check_data(results)
    if args.format == "json":
        if getattr(args, "json_findings", None) is None:  # called outside main()
            args.json_findings = []
        args.json_findings.extend(finding_json(d, profile) for profile, d in report.findings)
        return report.ok
    shown = [_with_profile_note(d, profile) if profile and not args.profile else d for profile, d in report.findings]
    sys.stderr.write(render_human(shown, {**sources, **report.sources}, _use_color(args)))
    if not report.ok:
        sys.stderr.write(f"{spec}: {summary_line(shown)} in its data files\n")
    return report.ok


def _bundle_of(args):
    """Check and render the spec's bundle in memory: (result, bundle, output dir) or an exit status."""
    from . import pipeline_yaml
    from .bundle import build_files, default_output

    pipeline_yaml.start()  # kfp's import (about 0.7 s) overlaps the check and the rendering
    result = _checked(args.spec, args)
    if isinstance(result, int):
        return result
    if not result.ok:
        return EXIT_ERRORS
    bundle = build_files(result)
    # `-o ""` is the current directory, which the output guard refuses; it is not "no -o"
    return (result, bundle, args.output if args.output is not None else default_output(args.spec, args.profile))


def _write_bundle(args, result, bundle, out: str) -> int | None:
    """Write the bundle (build, run); None on success, else the exit status, reported."""
    from .bundle import OutputRefused, files_read, write_bundle

    try:
        write_bundle(bundle, out, files_read(result))
    except OutputRefused as exc:
        return _output_refused(args, result, exc)
    except OSError as exc:
        return _usage_error(args, f"cannot write {out}: {exc.strerror or exc}")
    return None


def _output_refused(args, result, exc) -> int:
    """A refused output directory: the reason, and a directory the build would accept."""
    status = _usage_error(args, str(exc))
    fresh = _fresh_output(args, result)
    if fresh is not None:
        sys.stderr.write(f"  = help: build into a new directory, e.g. `-o {fresh}`\n")
    return status


def _fresh_output(args, result) -> str | None:
    """The default output directory, or the first `<default>-N` the build would accept."""
    from .bundle import OutputRefused, check_output, default_output, files_read

    default = default_output(args.spec, args.profile)
    reads = files_read(result)
    for n in range(1, 100):
        candidate = default if n == 1 else f"{default}-{n}"
        if candidate == args.output or os.path.lexists(candidate):
            continue
        try:
            check_output(candidate, reads)
        except OutputRefused:
            continue
        return candidate
    return None


def cmd_build(args) -> int:
    made = _bundle_of(args)
    if isinstance(made, int):
        return made
    result, bundle, out = made
    status = _write_bundle(args, result, bundle, out)
    if status is not None:
        return status
    if args.format == "human" and not args.quiet:
        from .facts_text import facts_text

        sys.stdout.write(facts_text(result))
        sys.stdout.write(f"wrote {len(bundle.files)} files to {out}\n")
    for note in bundle.notes:
        sys.stderr.write(f"note: {note}\n")
    return EXIT_OK


def cmd_plan(args) -> int:
    from .bundle import OutputRefused, check_output, files_read, plan
    from .plan_summary import as_json, full_diff, human

    made = _bundle_of(args)
    if isinstance(made, int):
        return made
    result, bundle, out = made
    try:  # the preview refuses what the build would refuse
        check_output(out, files_read(result))
    except OutputRefused as exc:
        return _output_refused(args, result, exc)
    summary = plan(bundle, out)
    if args.format == "json":  # one more record in the JSON array: the whole plan
        args.json_findings.append({"plan": as_json(summary)})
    elif args.diff:
        sys.stdout.write(full_diff(summary))
    elif summary.changed:
        sys.stdout.write(human(summary, facts=not args.quiet))
    else:
        if not args.quiet:
            from .facts_text import facts_text

            sys.stdout.write(facts_text(result))
        sys.stdout.write(f"{out}: no changes\n")
    return EXIT_CHANGES if summary.changed else EXIT_OK


def cmd_run(args) -> int:
    from pathlib import Path

    if args.np is not None and args.np < 1:
        return _usage_error(args, "--np must be at least 1")
    if args.stage == "serve" and args.target == "k8s":
        return _usage_error(args, "--stage serve runs on this machine only (a local Triton): drop --target k8s")
    endpoint = args.endpoint or os.environ.get("KF_PIPELINES_ENDPOINT")
    if args.target == "kfp":
        if not endpoint:
            return _usage_error(
                args, "--target kfp needs a Kubeflow Pipelines endpoint: --endpoint URL or $KF_PIPELINES_ENDPOINT"
            )
        if args.stage not in (None, "search"):
            return _usage_error(
                args, "--target kfp runs the whole pipeline (--stage search adds the search); drop --stage"
            )
    elif args.endpoint:
        return _usage_error(args, "--endpoint is for --target kfp")
    made = _bundle_of(args)
    if isinstance(made, int):
        return made
    result, bundle, out = made
    # The data, read as the stages will read it, before anything is written or started. The
    # serve stage reads valid and test rows only as sample requests (and skips those it cannot
    # use); on a cluster the stages read the cluster's copy of the data.
    if args.target == "local" and args.stage != "serve":
        if not _data_checked(args.spec, args, [(args.profile, result)], result.sources):
            return EXIT_ERRORS
    name = Path(args.spec).stem + (f"-{args.profile}" if args.profile else "")
    from llmc.runtime.records import RunsFolderRefused, check_runs_folder

    try:  # before the bundle is written: a refused run changes nothing
        check_runs_folder(Path(args.runs_dir), name)
    except RunsFolderRefused as exc:
        return _usage_error(args, str(exc))
    status = _write_bundle(args, result, bundle, out)
    if status is not None:
        return status
    data_root = Path(args.spec).resolve().parent
    from llmc.runtime import local

    return local.run(
        out,
        name=name,
        data_root=data_root,
        runs_root=Path(args.runs_dir),
        stage=args.stage,
        target=args.target,
        np=args.np,
        force=args.force,
        profile=args.profile,
        endpoint=endpoint,
    )


def cmd_deploy(args) -> int:
    import math

    if args.timeout is not None and not (math.isfinite(args.timeout) and args.timeout > 0):
        return _usage_error(args, f"--timeout must be a positive number of seconds, not {args.timeout:g}")
    made = _bundle_of(args)
    if isinstance(made, int):
        return made
    result, bundle, out = made
    status = _write_bundle(args, result, bundle, out)
    if status is not None:
        return status
    from llmc.runtime import deploy

    return deploy.deploy(out, dry_run=args.dry_run, timeout=args.timeout)


def cmd_runs(args) -> int:
    from pathlib import Path

    from llmc.runtime.records import format_records, list_records

    name = Path(args.spec).stem if args.spec else None
    sys.stdout.write(format_records(list_records(Path(args.runs_dir), name)))
    return EXIT_OK


def cmd_serve(args) -> int:
    from pathlib import Path

    misuse = _server_flags_misuse(args, free_allowed=False)
    if misuse:
        return _usage_error(args, misuse)
    target = _serve_target(args)
    if isinstance(target, int):
        return target
    name, rerun = target
    from llmc.runtime.serving import command

    return command.serve(
        name=name,
        runs_root=Path(args.runs_dir),
        rerun=rerun,
        http_port=args.http_port,
        metrics_port=args.metrics_port,
        ready_timeout=args.ready_timeout,
    )


def _server_flags_misuse(args, free_allowed: bool) -> str | None:
    """What is wrong with add_server_flags' values, or None."""
    lowest = 0 if free_allowed else 1
    for flag, port in (("--http-port", args.http_port), ("--metrics-port", args.metrics_port)):
        if not lowest <= port <= 65535:
            free = " (0: a free one)" if free_allowed else ""
            return f"{flag} must be a port number from 1 to 65535{free}, not {port}"
    if args.http_port and args.http_port == args.metrics_port:
        return f"--http-port and --metrics-port are both {args.http_port}: give them different ports"
    if not args.ready_timeout > 0:
        return "--ready-timeout must be a positive number of seconds"
    return None


def _serve_target(args) -> tuple[str, str] | int:
    """(the runs' name, the `llmc run` that makes one) of a serve-like command, or an exit
    status when the spec has errors (reported)."""
    import shlex
    from pathlib import Path

    args.format, args.color = "human", "auto"  # what _checked reads: these print diagnostics for people
    result = _checked(args.spec, args)
    if isinstance(result, int):
        return result
    if not result.ok:
        return EXIT_ERRORS
    name = Path(args.spec).stem + (f"-{args.profile}" if args.profile else "")
    rerun = ["llmc", "run", args.spec] + (["--profile", args.profile] if args.profile else [])
    if args.runs_dir != "runs":
        rerun += ["--runs-dir", args.runs_dir]
    return name, shlex.join(rerun)


def cmd_loadtest(args) -> int:
    from pathlib import Path

    from llmc.runtime.serving import loadtest

    misuse = _server_flags_misuse(args, free_allowed=True) or loadtest.load_misuse(args.rate, args.duration)
    if misuse:
        return _usage_error(args, misuse)
    target = _serve_target(args)
    if isinstance(target, int):
        return target
    name, rerun = target

    return loadtest.loadtest(
        name=name,
        runs_root=Path(args.runs_dir),
        rerun=rerun,
        data_root=Path(args.spec).resolve().parent,
        rate=args.rate,
        duration=args.duration,
        sweep=not args.no_sweep,
        seed=args.seed,
        http_port=args.http_port,
        metrics_port=args.metrics_port,
        ready_timeout=args.ready_timeout,
    )


def cmd_explain(args) -> int:
    from .codes import lookup
    from .docs import explanation

    code = lookup(args.code)
    if code is None:
        sys.stderr.write(f"error: unknown code `{args.code}`; codes look like E306 or W801\n")
        return EXIT_USAGE
    sys.stdout.write(explanation(code.code))
    return EXIT_OK


def cmd_schema(args) -> int:
    import json

    from .schema import json_schema

    sys.stdout.write(json.dumps(json_schema(), indent=2, sort_keys=True) + "\n")
    return EXIT_OK


def cmd_search(args) -> int:
    from .search_apply import run_apply

    return run_apply(args)


def cmd_fix(args) -> int:
    from .fix import diff, fix_spec
    from .fmt import write_text_atomically
    from .source import SourceError, read_source

    try:
        source = read_source(args.spec)
    except SourceError as exc:
        return _usage_error(args, str(exc))
    args.profile = None  # the fixes of the base spec and of every profile
    if source.bad_byte_offset is not None:  # not text: `llmc check` says where
        checked = _checked(args.spec, args, every_profile=True)
        return checked if isinstance(checked, int) else EXIT_ERRORS
    text, before = fix_spec(args.spec, source.text)
    if args.format == "human":
        sys.stdout.write(diff(args.spec, source.text, text))
    if text != source.text and not args.dry_run:
        try:
            write_text_atomically(args.spec, text)
        except OSError as exc:
            return _usage_error(args, f"cannot write {args.spec}: {exc.strerror or exc}")
    # What remains, as `llmc check` says it (with --dry-run: of the text the fixes would write).
    checked = _checked(args.spec, args, every_profile=True, text=text)
    if isinstance(checked, int):
        return checked
    fixed, left = before - len(checked.findings), len(checked.findings)
    verb = "would fix" if args.dry_run else "fixed"
    sys.stderr.write(f"{args.spec}: {verb} {fixed} of {before} finding{'' if before == 1 else 's'}; {left} left\n")
    return EXIT_OK if checked.ok else EXIT_ERRORS


def cmd_fmt(args) -> int:
    from .fmt import run_fmt

    return run_fmt(args)


_COMMANDS = {
    "check": cmd_check,
    "build": cmd_build,
    "plan": cmd_plan,
    "run": cmd_run,
    "runs": cmd_runs,
    "deploy": cmd_deploy,
    "serve": cmd_serve,
    "loadtest": cmd_loadtest,
    "explain": cmd_explain,
    "schema": cmd_schema,
    "fmt": cmd_fmt,
    "fix": cmd_fix,
    "search": cmd_search,
}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

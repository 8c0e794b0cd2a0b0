"""The `llmc` command line: a thin layer over the driver.

Exit status: 0 clean (warnings allowed), 1 the spec has errors, 2 the command was
misused (no such file, bad flag, unknown profile) or the compiler failed
internally. A user's mistake never ends in a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

EXIT_OK, EXIT_ERRORS, EXIT_USAGE = 0, 1, 2
EXIT_CHANGES = 3  # `llmc plan`: the bundle on disk is not what a build would write

COMMANDS_HELP = """commands:
  check SPEC...        validate specs and print their derived facts
  build SPEC           generate the bundle: training, compression, evaluation, search,
                       serving, Kubernetes and monitoring artifacts
  plan SPEC            show what `build` would change in the output directory
  run SPEC             build, then run the bundle's stages (train, compress, evaluate)
  runs [SPEC]          list the records of earlier runs
  fmt [--check] SPEC.. rewrite specs in the canonical layout (or check they are)
  explain CODE         explain a diagnostic code, e.g. `llmc explain E306`
  schema               print the JSON Schema of the language
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's default is fine, but say how to get help
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\n  (see `{self.prog.split()[0]} --help`)\n")
        sys.exit(EXIT_USAGE)


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
        p.add_argument("--format", choices=("human", "json"), default="human",
                       help="diagnostics for people (default) or a JSON array on stdout for tools")
        p.add_argument("--color", choices=("auto", "always", "never"), default="auto", help="colour diagnostics")

    p = sub.add_parser("check", help="validate specs and print their derived facts",
                       description="Validate specs completely and print their derived facts.")
    p.add_argument("specs", nargs="+", metavar="SPEC")
    p.add_argument("--profile", help="apply the named profile's overrides")
    p.add_argument("-q", "--quiet", action="store_true", help="print diagnostics only, not the derived facts")
    add_output_flags(p)

    for name, text in (("build", "generate the bundle of artifacts (written atomically, with llmc.lock.json)"),
                       ("plan", "show what `build` would change: a unified diff and the derived facts; "
                                "exit 0 when nothing changes, 3 when something would")):
        p = sub.add_parser(name, help=text.split(":")[0].split(" (")[0], description=text[0].upper() + text[1:] + ".")
        p.add_argument("spec", metavar="SPEC")
        p.add_argument("--profile", help="apply the named profile's overrides")
        p.add_argument("-o", "--output", metavar="DIR", help="the bundle's directory (default build/<spec>[-<profile>])")
        p.add_argument("-q", "--quiet", action="store_true", help="print diagnostics only, not the derived facts")
        add_output_flags(p)

    p = sub.add_parser("run", help="build, then run the bundle's stages",
                       description="Build the bundle, then run its stages in order (train, compress, evaluate; "
                                   "search with --stage search). A stage whose inputs are unchanged since its last "
                                   "success is skipped. Every run is recorded under runs/.")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--profile", help="apply the named profile's overrides")
    p.add_argument("-o", "--output", metavar="DIR", help="the bundle's directory (default build/<spec>[-<profile>])")
    p.add_argument("--stage", choices=("train", "compress", "evaluate", "search"), help="run only this stage")
    p.add_argument("--target", choices=("local", "k8s"), default="local",
                   help="local: this machine, Horovod over Gloo (default); k8s: the current kube context")
    p.add_argument("--np", type=int, metavar="N", help="training processes (default: the spec's layout)")
    p.add_argument("--force", action="store_true", help="rerun stages even when their inputs are unchanged")
    p.add_argument("--runs-dir", default="runs", metavar="DIR", help="where run records and work files go (default runs/)")
    add_output_flags(p)

    p = sub.add_parser("runs", help="list the records of earlier runs", description="List the records under runs/.")
    p.add_argument("spec", nargs="?", metavar="SPEC", help="only this spec's runs")
    p.add_argument("--runs-dir", default="runs", metavar="DIR")

    p = sub.add_parser("fmt", help="rewrite specs in the canonical layout",
                       description="Rewrite specs in the one canonical layout (idempotent; comments kept).")
    p.add_argument("specs", nargs="+", metavar="SPEC", help="spec files or folders holding them")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file is not formatted")
    p.add_argument("--diff", action="store_true", help="with --check, show what would change")
    add_output_flags(p)

    p = sub.add_parser("explain", help="explain a diagnostic code", description="Print the long explanation of a code.")
    p.add_argument("code", metavar="CODE")

    sub.add_parser("schema", help="print the JSON Schema of the language",
                   description="Print the JSON Schema of .llm specs (as the typed IR sees them), for editors.")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__

        print(f"llmc {__version__}")
        return EXIT_OK
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
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
        sys.stderr.write(
            f"error: internal compiler error: {type(exc).__name__}: {exc}\n"
            "  = note: this is a bug in llmc, not in your spec; rerun with LLMC_DEBUG=1 for a traceback\n"
        )
        return EXIT_USAGE


def _use_color(args) -> bool:
    if args.color == "always":
        return True
    if args.color == "never" or os.environ.get("NO_COLOR"):
        return False
    return sys.stderr.isatty()


def _checked(spec: str, args):
    """Check one spec, printing its diagnostics; returns the result, or an exit status."""
    from .compose import UnknownProfile
    from .diagnostic_output import render_human, summary_line
    from .driver import check_spec
    from .source import SourceError

    try:
        result = check_spec(spec, profile=args.profile)
    except SourceError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_USAGE
    except UnknownProfile as exc:
        known = ", ".join(exc.known) or "none"
        sys.stderr.write(f"error: {spec} has no profile `{exc.name}` (profiles: {known})\n")
        return EXIT_USAGE
    if args.format == "human":
        sys.stderr.write(render_human(result.diagnostics, result.sources, _use_color(args)))
        if not result.ok:
            sys.stderr.write(f"{spec}: {summary_line(result.diagnostics)}\n")
    return result


def cmd_check(args) -> int:
    from .diagnostic_output import render_json

    status = EXIT_OK
    all_diags = []
    for spec in args.specs:
        result = _checked(spec, args)
        if isinstance(result, int):
            return result
        all_diags.extend(result.diagnostics)
        if not result.ok:
            status = EXIT_ERRORS
        elif args.format == "human" and not args.quiet:
            from .report import facts_text

            sys.stdout.write(facts_text(result))
    if args.format == "json":
        sys.stdout.write(render_json(all_diags))
    return status


def _bundle_of(args):
    """Check and render the spec's bundle in memory: (result, bundle, output dir) or an exit status."""
    from .bundle import build_files, default_output
    from .diagnostic_output import render_json

    result = _checked(args.spec, args)
    if isinstance(result, int):
        return result
    if args.format == "json":
        sys.stdout.write(render_json(result.diagnostics))
    if not result.ok:
        return EXIT_ERRORS
    bundle = build_files(result)
    return result, bundle, args.output or default_output(args.spec, args.profile)


def cmd_build(args) -> int:
    from .bundle import write_bundle

    made = _bundle_of(args)
    if isinstance(made, int):
        return made
    result, bundle, out = made
    try:
        write_bundle(bundle, out)
    except OSError as exc:
        sys.stderr.write(f"error: cannot write {out}: {exc.strerror or exc}\n")
        return EXIT_USAGE
    if args.format == "human" and not args.quiet:
        from .report import facts_text

        sys.stdout.write(facts_text(result))
        sys.stdout.write(f"wrote {len(bundle.files)} files to {out}\n")
    return EXIT_OK


def cmd_plan(args) -> int:
    from .bundle import plan_diff

    made = _bundle_of(args)
    if isinstance(made, int):
        return made
    result, bundle, out = made
    diff = plan_diff(bundle, out)
    if args.format == "human":
        sys.stdout.write(diff)
        if not args.quiet:
            from .report import facts_text

            sys.stdout.write(facts_text(result))
        changed = sum(1 for line in diff.splitlines() if line.startswith("+++ "))
        sys.stdout.write(f"{out}: {'no changes' if not diff else f'{changed} file(s) would change'}\n")
    return EXIT_CHANGES if diff else EXIT_OK


def cmd_run(args) -> int:
    from pathlib import Path

    from .bundle import write_bundle

    if args.np is not None and args.np < 1:
        sys.stderr.write("error: --np must be at least 1\n")
        return EXIT_USAGE
    made = _bundle_of(args)
    if isinstance(made, int):
        return made
    result, bundle, out = made
    write_bundle(bundle, out)
    name = Path(args.spec).stem + (f"-{args.profile}" if args.profile else "")
    data_root = Path(args.spec).resolve().parent
    from llmc.runtime import local

    return local.run(out, name=name, data_root=data_root, runs_root=Path(args.runs_dir), stage=args.stage,
                     target=args.target, np=args.np, force=args.force, profile=args.profile)


def cmd_runs(args) -> int:
    from pathlib import Path

    from llmc.runtime.records import format_records, list_records

    name = Path(args.spec).stem if args.spec else None
    sys.stdout.write(format_records(list_records(Path(args.runs_dir), name)))
    return EXIT_OK


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


def cmd_fmt(args) -> int:
    from .fmt import run_fmt

    return run_fmt(args)


_COMMANDS = {"check": cmd_check, "build": cmd_build, "plan": cmd_plan, "run": cmd_run, "runs": cmd_runs,
             "explain": cmd_explain,
             "schema": cmd_schema, "fmt": cmd_fmt}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

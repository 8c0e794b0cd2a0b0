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

COMMANDS_HELP = """commands:
  check SPEC...        validate specs and print their derived facts
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
    except Exception as exc:  # a compiler bug: say so plainly, without a traceback
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


def cmd_check(args) -> int:
    from .compose import UnknownProfile
    from .driver import check_spec
    from .render import render_human, render_json, summary_line
    from .source import SourceError

    status = EXIT_OK
    all_diags = []
    color = _use_color(args)
    for spec in args.specs:
        try:
            result = check_spec(spec, profile=args.profile)
        except SourceError as exc:
            sys.stderr.write(f"error: {exc}\n")
            return EXIT_USAGE
        except UnknownProfile as exc:
            known = ", ".join(exc.known) or "none"
            sys.stderr.write(f"error: {spec} has no profile `{exc.name}` (profiles: {known})\n")
            return EXIT_USAGE
        all_diags.extend(result.diagnostics)
        if args.format == "human":
            sys.stderr.write(render_human(result.diagnostics, result.sources, color))
        if not result.ok:
            status = EXIT_ERRORS
            if args.format == "human":
                sys.stderr.write(f"{spec}: {summary_line(result.diagnostics)}\n")
        elif args.format == "human" and not args.quiet:
            from .report import facts_text

            sys.stdout.write(facts_text(result))
    if args.format == "json":
        sys.stdout.write(render_json(all_diags))
    return status


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


_COMMANDS = {"check": cmd_check, "explain": cmd_explain, "schema": cmd_schema, "fmt": cmd_fmt}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The `diffvq` command.

    diffvq run RECIPE [key.sub=value ...]       train, sample and evaluate (resumable)
    diffvq compare RECIPE [key.sub=value ...]   run, evaluate every prior, write report.html
    diffvq compare RUN_DIR RUN_DIR ...          one report for finished runs on the same tokens
    diffvq validate RECIPE [key.sub=value ...]  check a recipe without doing any work
    diffvq plugins                              what each plugin registered, and failures
    diffvq ls [KIND [NAME]]                     registered components, or one's recipe keys

User errors print one line (`error: ...`) and exit with status 2; `--debug` shows tracebacks.
A recipe's local plugin files run only with consent: `-p FILE` or `--allow-plugins`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Sequence

from .errors import UserError, explain, save_traceback

KIND_ALIASES = {"modalities": "modality", "datasets": "dataset", "data": "dataset",
                "tokenizers": "tokenizer", "priors": "prior", "decoders": "decoder"}


def _run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs-dir", default="runs", help="where run folders go (default: runs)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads for torch (the recipe's `threads`; default: "
                        "$DIFFVQ_THREADS, else half the physical cores: see bench/threads.py)")
    p.add_argument("--replace-stale", action="store_true",
                   help="delete the results a changed recipe makes stale (default: move them "
                        "to RUN/superseded/<time>/)")


def _parser() -> argparse.ArgumentParser:
    def options(sub: bool) -> argparse.ArgumentParser:
        # options work before or after the command; in sub-commands they must not reset the
        # value given before it, hence SUPPRESS as their default there
        p = argparse.ArgumentParser(add_help=False)
        p.add_argument("--debug", action="store_true",
                       default=argparse.SUPPRESS if sub else False, help="show tracebacks")
        p.add_argument("-p", "--plugin", action="append", metavar="FILE",
                       default=argparse.SUPPRESS if sub else [],
                       help="load a local plugin file (repeatable); this is your consent "
                            "to run its code")
        p.add_argument("--allow-plugins", action="store_true",
                       default=argparse.SUPPRESS if sub else False,
                       help="consent to run the local plugin files the recipe names (a "
                            "recipe's plugin files are Python code; see README 'Security')")
        return p

    common = options(sub=True)
    parser = argparse.ArgumentParser(prog="diffvq", parents=[options(sub=False)],
                                     description="Discrete generative modelling: VQ tokenizers, "
                                                 "autoregressive and diffusion priors.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_ in (("run", "run a recipe: train, sample and evaluate (resumes)"),
                        ("validate", "check a recipe and print it resolved, doing no work")):
        p = sub.add_parser(name, parents=[common], help=help_)
        p.add_argument("recipe", help="recipe YAML file")
        p.add_argument("overrides", nargs="*", metavar="key.sub=value",
                       help="override recipe keys (values parsed as YAML)")
        if name == "run":
            _run_options(p)
    p = sub.add_parser("compare", parents=[common],
                       help="compare priors: run a recipe (or take finished runs), evaluate, "
                            "write report.html")
    p.add_argument("targets", nargs="+", metavar="RECIPE|RUN_DIR",
                   help="a recipe and overrides, or run directories to compare")
    _run_options(p)
    p.add_argument("--out", help="report folder when comparing run directories "
                                 "(default: RUNS_DIR/compare-<run>-<run>...)")
    sub.add_parser("plugins", parents=[common], help="list plugins, what they registered, failures")
    p = sub.add_parser("ls", parents=[common], help="list registered components, or a component's keys")
    p.add_argument("kind", nargs="?", help="modality, dataset, tokenizer, prior or decoder")
    p.add_argument("name", nargs="?", help="a component name: show its recipe keys")
    return parser


def cmd_validate(args: argparse.Namespace) -> int:
    import yaml

    from . import recipe as recipe_mod

    r, _ = recipe_mod.load(args.recipe, args.overrides, args.plugin,
                           allow_plugins=args.allow_plugins)
    print(yaml.safe_dump(r.to_dict(), sort_keys=False), end="")
    print(f"# {args.recipe}: valid ({len(r.priors)} prior(s): {', '.join(r.priors)})",
          file=sys.stderr)
    return 0


def _with_threads(args: argparse.Namespace, overrides: list[str]) -> list[str]:
    """`--threads N` is the override `threads=N`."""
    if args.threads is None:
        return list(overrides)
    if args.threads < 1:
        raise UserError(f"--threads {args.threads}: a positive whole number of threads, please")
    return [*overrides, f"threads={args.threads}"]


def cmd_run(args: argparse.Namespace) -> int:
    from . import recipe as recipe_mod
    from .pipeline import Run
    from .summary import format_summary

    r, plugins = recipe_mod.load(args.recipe, _with_threads(args, args.overrides), args.plugin,
                                   allow_plugins=args.allow_plugins)
    run = Run(r, plugins, runs_dir=Path(args.runs_dir), progress=not args.quiet,
              replace_stale=args.replace_stale)
    metrics = run.execute()
    print(format_summary(metrics, run.run_dir))
    if "study" in metrics:  # a map is read in the report
        from .compare import report_for_run

        print(f"\nreport: {report_for_run(run.run_dir, metrics)}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare_runs, report_for_run
    from .summary import format_summary

    first = Path(args.targets[0])
    if first.is_dir():
        dirs = [Path(t) for t in args.targets]
        for d in dirs:
            if not d.is_dir():
                raise UserError(f"compare: {d} is not a run directory (give a recipe, or only "
                                f"run directories)")
        out = Path(args.out) if args.out else Path(args.runs_dir) / (
            "compare-" + "-".join(d.resolve().name for d in dirs))
        metrics, report = compare_runs(dirs, out)
        run_dir = out
    else:
        from . import recipe as recipe_mod
        from .pipeline import Run

        r, plugins = recipe_mod.load(args.targets[0], _with_threads(args, args.targets[1:]),
                                     args.plugin, allow_plugins=args.allow_plugins)
        run = Run(r, plugins, runs_dir=Path(args.runs_dir), progress=not args.quiet,
              replace_stale=args.replace_stale)
        metrics = run.execute()
        run_dir = run.run_dir
        report = report_for_run(run_dir, metrics)
    print(format_summary(metrics, run_dir))  # with the finding
    print(f"\nreport: {report}")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from .plugins import load_plugins

    plugins = load_plugins(args.plugin)
    if not plugins.records:
        print("no plugins found (is diffvq installed with `pip install -e .`?)")
    for rec in plugins.records:
        origin = (f"{rec.distribution} {rec.version}" if rec.distribution else rec.source)
        status = "FAILED" if rec.error else "ok"
        print(f"{rec.name}  [{origin}, {rec.source}]  {status}")
        for kind, names in rec.registered.items():
            print(f"    {kind}: {', '.join(names)}")
        if rec.error:
            print(f"    error: {rec.error}")
    for (kind, name), owners in plugins.registry.conflicts.items():
        print(f"conflict: {kind} {name!r} is registered by {' and '.join(owners)}")
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    from . import schema
    from .interfaces import INJECTED, KINDS, SAMPLE_INJECTED
    from .plugins import load_plugins

    plugins = load_plugins(args.plugin)
    kinds = list(KINDS)
    if args.kind:
        kind = KIND_ALIASES.get(args.kind, args.kind)
        if kind not in KINDS:
            raise UserError(f"unknown kind {args.kind!r}; choose one of {', '.join(KINDS)}")
        kinds = [kind]
    if args.name:
        entry = plugins.registry.get(kinds[0], args.name)
        doc = (entry.cls.__doc__ or "").strip().splitlines()
        print(f"{kinds[0]} {entry.name}  (plugin {entry.plugin})")
        if doc:
            print(f"  {doc[0]}")
        sections = [("recipe keys", schema.signature_model(entry.cls.__init__, INJECTED[kinds[0]]))]
        if kinds[0] == "prior":
            sections.append(("sampling options",
                             schema.signature_model(entry.cls.sample, SAMPLE_INJECTED)))
        for title, model in sections:
            print(f"  {title}:")
            for key, type_s, default in schema.describe(model):
                print(f"    {key}: {type_s} = {default}")
        return 0
    for kind in kinds:
        print(f"{kind}:")
        entries = plugins.registry.entries[kind]
        if not entries:
            print("    (none)")
        for name in sorted(entries):
            e = entries[name]
            doc = (e.cls.__doc__ or "").strip().splitlines()
            extra = f" [{e.cls.modality}]" if kind == "dataset" else ""
            print(f"    {name}{extra}  ({e.plugin})  {doc[0] if doc else ''}")
    return 0


def _on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # same path as Ctrl-C: save a checkpoint, then stop


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    # overrides may come before or after options (`run r.yaml --quiet seed=1`): argparse stops
    # collecting positionals at the first option, so gather the rest here
    args, extra = parser.parse_known_args(argv)
    if extra:
        if args.command not in ("run", "validate", "compare") or any(a.startswith("-") for a in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        if args.command == "compare":
            args.targets = [*args.targets, *extra]
        else:
            args.overrides = [*args.overrides, *extra]
    if args.debug:
        os.environ["DIFFVQ_DEBUG"] = "1"
    commands = {"run": cmd_run, "compare": cmd_compare, "validate": cmd_validate, "plugins": cmd_plugins, "ls": cmd_ls}
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return commands[args.command](args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("diffvq: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        return _report(exc)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _report(exc: Exception) -> int:
    """One line for any failure: a user's (exit 2) or, for a bug, where its traceback is
    (exit 1)."""
    user = explain(exc)
    if user is not None:
        print(f"error: {user}", file=sys.stderr)
        return user.exit_status
    saved = save_traceback(exc)
    where = f"traceback in {saved}" if saved else "run with --debug for the traceback"
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    print(f"internal error: {type(exc).__name__}: {first} ({where}; please report it)",
          file=sys.stderr)
    return 1

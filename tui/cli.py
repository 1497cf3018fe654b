"""The ``cogedit-tui`` command: the app by default, plus ``edit``, ``demo`` and ``bench`` (the last
delegates to ``engine.bench.cli``; other engine-owned commands can delegate the same way).

Flags for every edit parameter are generated from :class:`engine.params.EditParams`, so a new
parameter shows up here (and in ``--help``) with no change to this file.
"""

from __future__ import annotations

import argparse
import signal
import stat
import sys
import time
import traceback
from pathlib import Path

from engine.api import PARAM_SPECS, PRESETS, EditError, ParamsError, ParamSpec, config_flags, one_line


def _flag(spec: ParamSpec) -> str:
    return "--" + spec.name.replace("_", "-")


def add_param_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per EditParams field; values are parsed and validated by engine.params."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for spec in PARAM_SPECS:
        group = groups.setdefault(spec.group, parser.add_argument_group(f"{spec.group} parameters"))
        default = "auto" if spec.default is None else spec.default
        help_text = f"{spec.help} [{spec.describe_range()}; default {default}]".replace("%", "%%")
        if spec.kind is bool:
            group.add_argument(_flag(spec), dest=f"param_{spec.name}", action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=help_text)
        else:
            metavar = "{" + ",".join(spec.choices) + "}" if spec.choices else \
                "FILE" if spec.path else {int: "N", float: "X", str: "TEXT"}[spec.kind]
            group.add_argument(_flag(spec), dest=f"param_{spec.name}", metavar=metavar,
                               default=argparse.SUPPRESS, help=help_text)


def collected_params(args: argparse.Namespace) -> dict[str, object]:
    return {k.removeprefix("param_"): v for k, v in vars(args).items() if k.startswith("param_")}


def add_engine_flags(parser: argparse.ArgumentParser, top_level: bool = False) -> None:
    """Engine flags (generated from EngineConfig's fields) work before or after the command
    (``cogedit-tui --model M edit ...`` too)."""
    for flag in config_flags():
        default = (flag.default if flag.is_switch else None) if top_level else argparse.SUPPRESS
        if flag.is_switch:
            parser.add_argument(*flag.flags, dest=flag.name, action="store_true", default=default, help=flag.help)
        else:
            parser.add_argument(*flag.flags, dest=flag.name, default=default, choices=flag.choices or None,
                                type=Path if flag.path else None, help=flag.help)
    parser.add_argument("--debug", action="store_true", default=False if top_level else argparse.SUPPRESS,
                        help="show tracebacks")


def add_delegated_command(commands: argparse._SubParsersAction, name: str, help: str) -> None:
    """A command whose arguments an engine package parses itself (``main(argv)`` of its ``cli``
    module): every argument after the name goes to it untouched, ``--help`` included."""
    command = commands.add_parser(name, add_help=False, prefix_chars="\0", help=help)
    command.add_argument("command_args", nargs=argparse.REMAINDER)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cogedit-tui", description="Edit videos with text prompts by DDIM "
                                     "inversion on CogVideoX-5B. With no command, opens the workstation.")
    add_engine_flags(parser, top_level=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    edit = commands.add_parser("edit", help="edit a clip headlessly (progress bars or JSON events)",
                               description="Invert VIDEO once and edit it with every --prompt.")
    edit.add_argument("video", nargs="?", help="source clip (or take it from --from-job)")
    edit.add_argument("--prompt", action="append",
                      help="edit prompt; repeat for variants that share one inversion")
    edit.add_argument("--from-job", type=Path, metavar="JOB_JSON",
                      help="run a finished job again: its source, prompt, parameters and model come from its "
                           "job.json; flags given here override them")
    edit.add_argument("--preset", choices=sorted(PRESETS), default="default",
                      help="named parameter set (reference: the reference script's settings)")
    edit.add_argument("--events", choices=["bars", "jsonl"], default="bars",
                      help="bars: progress bars; jsonl: one JSON event per line on stdout")
    edit.add_argument("--save-latents", type=Path, metavar="FILE.safetensors",
                      help="also write the latents (source, inversion trajectory, reconstruction, edited)")
    add_engine_flags(edit)
    add_param_flags(edit)

    demo = commands.add_parser("demo", help="run the demo: the tiny offline model on a generated clip")
    demo.add_argument("--headless", action="store_true", help="run through the headless command, no TUI")
    demo.add_argument("--events", choices=["bars", "jsonl"], default="bars")
    add_engine_flags(demo)

    add_delegated_command(commands, "bench", "time the engine against the reference algorithm on the 5B "
                          "architecture (cogedit-tui bench --help)")
    add_delegated_command(commands, "eval", "measure edit quality on the trained toy model: success, structure, "
                          "background, round trip (cogedit-tui eval --help)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    try:
        if args.command == "edit":
            return run_edit_command(args)
        if args.command == "bench":
            from engine.bench.cli import main as bench_main  # imports torch: only for this command

            return bench_main(args.command_args)
        if args.command == "eval":
            from engine.quality.cli import main as eval_main  # imports torch: only for this command

            return eval_main(args.command_args)
        if args.command == "demo":
            return run_demo_command(args) if args.headless else run_app_command(args, demo=True)
        return run_app_command(args)
    except (EditError, ParamsError) as exc:
        if debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Terminated as exc:  # SIGTERM or SIGHUP: stopped as cleanly as by Ctrl-C
        print(f"terminated ({signal.Signals(exc.signum).name})", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug or an unexpected fault: one line unless --debug
        if debug:
            traceback.print_exc()
        print(f"error: {one_line(exc)} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 1


def run_app_command(args: argparse.Namespace, demo: bool = False) -> int:
    """The workstation (the demo: on the tiny model, with its two variants queued)."""
    from engine.api import check_data_dir_free, config_from_flags

    from .app import run_app

    check_data_dir_free()  # a second instance is told at once, before the UI and torch load
    output_dir = args.output_dir.expanduser().resolve() if args.output_dir else None
    return run_app(config_from_flags(vars(args), output_dir=output_dir), demo=demo)


def run_edit_command(args: argparse.Namespace) -> int:
    from engine.api import build_params, read_job_file

    values = collected_params(args)
    if args.from_job:
        job = read_job_file(args.from_job)
        values = {**job["params"], **values}
        args.video = args.video or job["source"]["path"]
        args.prompt = args.prompt or [job["prompt"]]
        args.model = getattr(args, "model", None) or job["model"]["model"]
    if not args.video or not args.prompt:
        raise EditError("nothing to edit: a VIDEO and at least one --prompt are needed",
                        "pass them, or --from-job path/to/job.json")
    params = build_params(values, preset=args.preset)  # validated before any model work
    return _run(args, args.video, list(args.prompt), params, save_latents=args.save_latents)


def run_demo_command(args: argparse.Namespace) -> int:
    from engine.api import build_params
    from engine.demo import DEMO_NOTICE, DEMO_PARAMS, DEMO_PROMPTS, prepare_demo

    print(f"demo: {DEMO_NOTICE}", file=sys.stderr)
    args.model, clip = prepare_demo(args.model)
    args.device = args.device or "cpu"
    params = build_params(DEMO_PARAMS)
    return _run(args, str(clip), list(DEMO_PROMPTS), params, save_latents=None)


def _run(args: argparse.Namespace, video: str, prompts: list[str], params, save_latents) -> int:
    """Queue one job per prompt on an engine worker, show its events, wait for the jobs to end."""
    from engine.api import (
        DONE,
        EditWarning,
        JobSpec,
        check_data_dir_free,
        check_latents_path,
        check_output_ready,
        check_prompts,
        config_from_flags,
        describe_source,
        open_worker,
    )

    from .headless import JsonLinesPrinter, ProgressBars

    check_prompts(prompts)
    check_data_dir_free()  # a busy data dir is refused at once, before torch loads to probe the clip
    if save_latents:
        save_latents = check_latents_path(save_latents)
    check_output_ready(getattr(args, "output_dir", None))  # unwritable or full: said now, not after the edit
    describe_source(video, params, model=getattr(args, "model", None))  # a bad clip fails here, before the model loads
    restore_signals = _stop_on_termination()
    # The prompts are variants of one source: batched over one inversion (spread over the devices when
    # there are several). --save-latents writes one batch's latents, so it keeps them all in one.
    batch = {"max_batch_variants": len(prompts)} if save_latents else {}
    worker = open_worker(config_from_flags(vars(args), **batch))
    subscriber = JsonLinesPrinter() if args.events == "jsonl" else ProgressBars()
    warnings: list[str] = []
    started = time.time()
    jobs: list = []
    try:
        with subscriber:
            unsubscribe = worker.subscribe(subscriber)
            worker.subscribe(lambda e: warnings.append(e.message) if isinstance(e, EditWarning) else None)
            for prompt in prompts:  # nothing runs before start(): the variants still form one batch
                jobs.append(worker.submit(JobSpec(video, prompt, params)))
            worker.only = {job.id for job in jobs}
            worker.save_latents = save_latents
            worker.start()
            worker.wait_idle(worker.only)
            worker.stop()
            unsubscribe()
        records = [worker.store.get(job.id) for job in jobs]
    finally:
        worker.stop()
        _settle_leftovers(worker, jobs)
        worker.close()
        restore_signals()
    if worker.fault is not None:  # the data dir's disk is full: the jobs stay queued for a later run
        raise worker.fault
    if worker.load_error is not None:
        raise worker.load_error
    stream = sys.stderr if args.events == "jsonl" else sys.stdout
    for record in records:
        if record.status == DONE:
            print(f"{record.prompt!r}: {record.output_dir}", file=stream)
    failed = [r for r in records if r.status != DONE]
    if failed:
        print(f"error: {failed[0].error or failed[0].status}", file=sys.stderr)
        return 2 if all(_fixable(r) for r in failed) else 1
    if save_latents:
        if not _written_since(save_latents, started):
            reason = warnings[-1] if warnings else "no file appeared"
            raise EditError(f"the latents were not saved to {save_latents} ({reason.split(' — ')[0]})",
                            "the results are saved; give --save-latents a writable file path and run it again")
        print(f"latents: {save_latents}", file=stream)
    return 0


LEFTOVER_REASON = ("the headless edit stopped before this job ran (its model failed to load, or it was "
                   "interrupted) — r re-queues it, to run with the app's model")


def _settle_leftovers(worker, jobs) -> None:
    """This command's jobs still queued when it ends (its model failed, Ctrl-C, a later prompt refused)
    become interrupted: kept in the history, never run by a later session with another model."""
    from engine.api import QUEUED

    for job in jobs:
        record = worker.store.get(job.id)
        if record is not None and record.status == QUEUED:
            worker.store.mark_interrupted(job.id, LEFTOVER_REASON)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP reached the headless command: it stops like Ctrl-C (jobs left interrupted)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _stop_on_termination():
    """Ctrl-C, SIGTERM (``timeout``, a scheduler) and SIGHUP (a closed terminal) stop the edit cleanly
    (KeyboardInterrupt, or Terminated): its jobs are left interrupted, nothing half-written stays.
    Only the first counts: more of them while it cleans up (an impatient Ctrl-C Ctrl-C) are ignored,
    so they cannot cut the clean-up short or print tracebacks at exit. Returns the function that puts
    the previous handlers back once the edit ended without one."""
    received: list[int] = []

    def stop(signum: int, _frame) -> None:
        if received:
            return
        received.append(signum)
        for other in STOP_SIGNALS:  # ignored by the OS from now on, also while the interpreter exits (when
            signal.signal(other, signal.SIG_IGN)  # Python has put back the default, which would kill it)
        raise KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)

    previous = {}
    for signum in STOP_SIGNALS:
        try:
            previous[signum] = signal.signal(signum, stop)
        except ValueError:  # not the main thread (a test driving main() from a thread): left as it is
            break
    return lambda: None if received else [signal.signal(signum, handler) for signum, handler in previous.items()]


def _written_since(path: Path, started: float) -> bool:
    try:
        info = Path(path).stat()
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_mtime >= started - 1


def _fixable(record) -> bool:
    """A failure the user can fix (its reason names a fix) rather than an unexpected fault."""
    return bool(record.error) and not record.error.startswith("unexpected ")


if __name__ == "__main__":
    sys.exit(main())

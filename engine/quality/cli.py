"""``cogedit-tui eval``: the quality suite on the toy model, as a table (and ``--json``).

    cogedit-tui eval                              # every row that runs here, 8 clips
    cogedit-tui eval --rows reference,default --clips 16 --json eval.json

Each row edits the same held-out clips of the toy world (a colour swap and a shape swap per clip)
through the real worker and reports: edit success, structure (centroid error, IoU), background
PSNR and flicker, and the inversion's VAE-only and round-trip PSNR. The toy model is a small world,
not CogVideoX-5B: its numbers rank settings and catch regressions, not real-video quality.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from ..paths import TOY_MODEL
from .suite import EDIT_KINDS, ROWS, ROWS_BY_NAME, SUITE_SEED, RowResult

COLUMNS = (  # header, RowResult field, format
    ("row", "name", "{}"), ("success", "success", "{:.0%}"), ("colour", "colour_success", "{:.0%}"),
    ("shape", "shape_success", "{:.0%}"), ("centroid px", "centroid_error", "{:.1f}"), ("IoU", "iou", "{:.2f}"),
    ("bg dB", "background_psnr", "{:.1f}"), ("flicker", "flicker", "{:.2f}"), ("VAE dB", "vae_psnr", "{:.1f}"),
    ("trip dB", "round_trip_psnr", "{:.1f}"), ("trip/src dB", "round_trip_vs_source_psnr", "{:.1f}"),
    ("s/edit", "edit_seconds", "{:.1f}"),
)


def format_table(results: list[RowResult], facts: dict) -> str:
    """The rows as an aligned text table, with the suite's facts under it."""
    cells = [[header for header, _, _ in COLUMNS]]
    for result in results:
        row = []
        for _, name, fmt in COLUMNS:
            value = getattr(result, name)
            row.append("-" if isinstance(value, float) and math.isnan(value) else fmt.format(value))
        if result.failed:
            row[0] += f" ({result.failed} failed)"
        cells.append(row)
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.append(f"{facts['clips']} held-out clips (seed {facts['seed']}), {facts['edits_per_row']} edits a row, "
                 f"{facts['frames']} frames at {facts['size'][0]}x{facts['size'][1]}; model {facts['model']}. "
                 f"Chance centroid error (another clip's path): {facts['chance_centroid_error']:.1f} px.")
    lines.append("trip dB: round trip vs the VAE-only decode; trip/src: vs the source. A small trained world, "
                 "not CogVideoX-5B: the figures rank settings, they do not promise real-video quality.")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cogedit-tui eval", description=__doc__.split("\n\n")[0])
    names = ", ".join(row.name for row in ROWS)
    parser.add_argument("--rows", default=None,
                        help=f"comma-separated rows [all but fp8 on the CPU]; from: {names}")
    parser.add_argument("--clips", type=int, default=8, help="held-out clips [8]")
    parser.add_argument("--kinds", default=",".join(EDIT_KINDS), help="edits per clip: colour,shape [both]")
    parser.add_argument("--seed", type=int, default=SUITE_SEED, help=f"the suite's seed [{SUITE_SEED}]")
    parser.add_argument("--model", default=TOY_MODEL, help="a model trained on the toy world [toy]")
    parser.add_argument("--device", default=None, help="cpu or cuda:N [the first GPU, else the CPU]")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--workdir", type=Path, help="keep the clips and results here [a temporary folder]")
    return parser.parse_args(argv)


def chosen_rows(text: str | None, device: str | None):
    from ..pipeline.model import resolve_device

    if text is None:
        on_gpu = resolve_device(device).type == "cuda"
        return [row for row in ROWS if on_gpu or not row.fp8]
    rows = []
    for name in (n.strip() for n in text.split(",") if n.strip()):
        if name not in ROWS_BY_NAME:
            raise ValueError(f"unknown row {name!r} (choose from: {', '.join(ROWS_BY_NAME)})")
        rows.append(ROWS_BY_NAME[name])
    return rows


def main(argv: list[str] | None = None) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    from ..errors import EditError
    from .suite import run_suite

    args = parse_args(argv)
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    if not kinds or set(kinds) - set(EDIT_KINDS):
        print(f"error: --kinds takes {', '.join(EDIT_KINDS)} (got {args.kinds!r})", file=sys.stderr)
        return 2
    if args.clips < 2:
        print("error: --clips must be at least 2 (the chance floor pairs clips)", file=sys.stderr)
        return 2
    try:
        rows = chosen_rows(args.rows, args.device)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), "eta", TimeRemainingColumn())
    try:
        with Progress(*columns, console=None, transient=False) as bar:
            task = bar.add_task("eval", total=len(rows) * args.clips * len(kinds))
            results, facts = run_suite(rows, args.model, args.device, args.clips, kinds, args.seed, args.workdir,
                                       progress=lambda done, total: bar.update(task, completed=done))
    except EditError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(results, facts))
    if args.json:
        args.json.write_text(json.dumps({"facts": facts, "rows": [r.as_dict() for r in results]}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The benchmark's figures as text: per path and stage, then the ratios and the approximation's error."""

from __future__ import annotations

from typing import Any

from ..config import GIB


def _gib(n: int | None) -> str:
    return "n/a (not a GPU)" if n is None else f"{n / GIB:.1f} GiB"


def _num(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}g}"


def format_report(figures: dict[str, Any]) -> str:
    """The figures as text: per path, per stage; then the ratio and the approximation's error."""
    steps, peak = figures["steps"], figures["peak_tflops"]
    clip = figures["clip"]
    flop = figures["flop"]["forward_batch1"]
    lines = [
        f"cogedit-tui bench: {figures['model']} on {figures['device']} ({figures['device_name']}), "
        f"{figures['dtype']}",
        f"clip {clip['frames']} frames at {clip['height']}x{clip['width']}; {steps} steps; "
        f"{figures['variants']} variant(s); seed {figures['seed']}",
        f"model built in {figures['build_seconds']:.1f} s (weights {_gib(figures['weights_memory_bytes'])}); "
        f"warm-up {figures['warmup_seconds']:.1f} s, compiled blocks: {figures['compiled_blocks']} "
        f"(compilation happens there; not counted)",
        f"one batch-1 transformer forward: {flop['total']:.3g} FLOP (linear {flop['linear']:.3g}, "
        f"attention {flop['attention']:.3g})",
        f"peak: {peak:.0f} TFLOP/s bf16 (measured matrix product unless --peak-tflops was given)",
    ]
    if figures["extrapolated"]:
        lines.append(f"TIMED {figures['time_steps']} of {steps} steps of each sampling stage and EXTRAPOLATED "
                     f"to {steps} at the measured seconds per step (each step of a stage costs the same)")
    for name, path in figures["paths"].items():
        kernel = f"; attention: {path['attention']}" if "attention" in path else ""
        lines += ["", f"{name}: {path['description']} ({path['jobs']} job(s), {path['variants']} variant(s){kernel})",
                  f"  {'stage':<11}{'seconds':>10}{'steps':>7}{'s/step':>9}{'rows':>6}{'inj':>5}"
                  f"{'TFLOP/step':>12}{'TFLOP/s':>10}{'%peak':>10}"]
        for stage, s in path["stages"].items():
            row = f"  {stage:<11}{s['seconds']:>10.2f}"
            if "seconds_per_step" in s:
                row += (f"{s['steps']:>7}{s['seconds_per_step']:>9.3f}{s['rows']:>6}{s['injected_rows']:>5}"
                        f"{s['flop_per_step'] / 1e12:>12.3g}{s['tflops']:>10.3g}{s['percent_of_peak']:>9.3g}%")
            lines.append(row)
        if "first_call_seconds" in path:
            what = "compiling each batch shape" if path["compiled_blocks"] else "first calls"
            lines.append(f"  warm-up: {path['first_call_seconds']:.1f} s more than steady steps ({what}; "
                         f"once per worker, not in the totals)")
        lines += [f"  {'unstaged':<11}{path['unstaged_seconds']:>10.2f}   (prompt encoding between stages)",
                  f"  {'total':<11}{path['total_seconds']:>10.2f}   (measured {path['measured_seconds']:.2f} s)",
                  f"  peak GPU memory {_gib(path['peak_memory_bytes'])}"]
    if "ratio_engine_over_reference" in figures:
        lines += _ratio_lines(figures)
    for label, a in figures.get("approximations", {}).items():
        lines.append(f"approximation {label} ({a['path']}): {a['speedup_over_engine']:.2f}x the exact engine "
                     f"path's speed; edited latents vs exact: max |diff| {_num(a['max_abs_diff'])}, "
                     f"mean {_num(a['mean_abs_diff'])} (latent RMS {_num(a['exact_rms'])})")
    if figures["extrapolated"]:
        lines.append(f"(latent differences are after the {figures['time_steps']} timed steps, not a full edit)")
    return "\n".join(lines)


def _ratio_lines(figures: dict[str, Any]) -> list[str]:
    ratio = figures["ratio_engine_over_reference"]
    script_ratio = figures["ratio_engine_over_reference_script"]
    lines = ["", f"engine / reference total time: {ratio:.3f} (speed-up {1 / ratio:.2f}x)",
              f"engine / reference without its round-trip sampling ({figures['reference_script_seconds']:.1f} s; "
              f"the reference script runs no round trip): {script_ratio:.3f} (speed-up {1 / script_ratio:.2f}x)"]
    exact = figures["engine_vs_reference"]
    lines.append(f"engine vs reference edited latents (same math, other batching): max |diff| "
                 f"{_num(exact['max_abs_diff'])}, mean {_num(exact['mean_abs_diff'])} "
                 f"(latent RMS {_num(exact['exact_rms'])})")
    return lines

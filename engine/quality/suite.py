"""The quality suite: held-out clips of the toy world, edits of them, run through the real worker.

:func:`make_suite` draws the clips (seeded, never seen in training: the training script draws from
other seeds) and, per clip, a colour swap and a shape swap. :func:`run_suite` queues every edit of
every row (a named set of edit parameters) on one engine worker, as a user's jobs would run, reads
each result's MP4s back and scores them (engine.quality.measure); rows that share an inversion reuse
it through the engine's own cache.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import EngineConfig, JobSpec
from ..params import build_params
from ..toy.world import COLOURS, SHAPES, WORLD_FRAMES, WORLD_SIZE, Scene, prompt_of, sample_scene
from .measure import EditScore, path_distance, score_edit

SUITE_SEED = 777_001  # the held-out suite; training draws from 20261202 + 1..5
EDIT_KINDS = ("colour", "shape")


@dataclass(frozen=True)
class Row:
    """One line of the table: edit parameters on top of a preset."""

    name: str
    preset: str = "default"
    overrides: dict[str, Any] = field(default_factory=dict)
    fp8: bool = False  # the worker's FP8 projections (a GPU with torchao only)
    note: str = ""


ROWS: tuple[Row, ...] = (
    Row("reference", "reference", note="the reference algorithm (zai-org/CogVideo ddim_inversion.py)"),
    Row("default", note="the default preset"),
    Row("no injection", "reference", {"inject_fraction": 0.0, "init": "inverted"},
        note="reference, from the inverted latent, no key/value injection"),
    Row("fresh generation", "reference", {"inject_fraction": 0.0, "init": "noise"},
        note="the floor: the prompt alone from noise, the source unused"),
    Row("inject 0.5", overrides={"inject_fraction": 0.5}),
    Row("inject 0.25", overrides={"inject_fraction": 0.25}),
    Row("init noise", overrides={"init": "noise"}, note="the default until the eval chose init=inverted"),
    Row("guidance 1", overrides={"guidance_scale": 1.0}),
    Row("guidance 3", overrides={"guidance_scale": 3.0}),
    Row("25 steps", overrides={"num_inference_steps": 25}),
    Row("shared_reference", overrides={"shared_reference": True}, note="approximate"),
    Row("exact inversion 1", overrides={"exact_inversion": 1}, note="one fixed-point iteration per inversion step"),
    Row("exact inversion 3", overrides={"exact_inversion": 3}),
    Row("fp8", fp8=True, note="approximate; a GPU only"),
)
ROWS_BY_NAME = {row.name: row for row in ROWS}


@dataclass(frozen=True)
class SuiteEdit:
    clip: int  # index into the suite's scenes
    kind: str  # colour | shape
    colour: str  # the target
    shape: str

    @property
    def prompt(self) -> str:
        return prompt_of(self.colour, self.shape)


def make_suite(num_clips: int, seed: int = SUITE_SEED, kinds: tuple[str, ...] = EDIT_KINDS,
               ) -> tuple[list[Scene], list[SuiteEdit]]:
    """``num_clips`` scenes (colours and shapes spread evenly) and, per scene, one edit per kind."""
    generator = torch.Generator("cpu").manual_seed(seed)
    colours, shapes = list(COLOURS), list(SHAPES)
    scenes, edits = [], []
    for i in range(num_clips):
        scene = sample_scene(generator, colour=colours[i % len(colours)], shape=shapes[i % len(shapes)])
        scenes.append(scene)
        others = [c for c in colours if c != scene.colour]
        other_shapes = [s for s in shapes if s != scene.shape]
        if "colour" in kinds:
            edits.append(SuiteEdit(i, "colour", others[i % len(others)], scene.shape))
        if "shape" in kinds:
            edits.append(SuiteEdit(i, "shape", scene.colour, other_shapes[i % len(other_shapes)]))
    return scenes, edits


def write_clips(scenes: list[Scene], folder: Path) -> list[Path]:
    return [scene.write_mp4(folder / f"clip-{i:02d}.mp4") for i, scene in enumerate(scenes)]


def row_params(row: Row, height: int, width: int):
    return build_params({"height": height, "width": width, **row.overrides}, preset=row.preset)


@dataclass
class RowResult:
    """A row's figures, averaged over its edits (successes as shares)."""

    name: str
    edits: int
    failed: int
    success: float  # target colour and shape
    colour_success: float  # colour swaps that reached the colour
    shape_success: float  # shape swaps that reached the shape
    centroid_error: float  # px
    iou: float
    background_psnr: float  # dB
    flicker: float
    vae_psnr: float  # dB, VAE-only decode vs the source
    round_trip_psnr: float  # dB, round trip vs the VAE-only decode
    round_trip_vs_source_psnr: float  # dB
    edit_seconds: float  # the edit stage, per edit
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def summarise(row: Row, scores: list[tuple[SuiteEdit, EditScore, dict]], failed: int) -> RowResult:
    def share(kind: str, attribute: str) -> float:
        chosen = [getattr(s, attribute) for e, s, _ in scores if e.kind == kind]
        return _mean([float(v) for v in chosen])

    def metric(key: str) -> float:
        return _mean([job["metrics"][key] for _, _, job in scores if key in job["metrics"]])

    return RowResult(
        row.name, len(scores) + failed, failed,
        _mean([float(s.success) for _, s, _ in scores]), share("colour", "colour_ok"), share("shape", "shape_ok"),
        _mean([s.centroid_error for _, s, _ in scores]), _mean([s.iou for _, s, _ in scores]),
        _mean([s.background_psnr for _, s, _ in scores]), _mean([s.flicker for _, s, _ in scores]),
        metric("psnr_vae_vs_original_db"), metric("psnr_round_trip_vs_vae_db"),
        metric("psnr_round_trip_vs_original_db"),
        _mean([job["timings_s"].get("edit", 0.0) / len(job.get("batch") or [0]) for _, _, job in scores]),
        row.note)


def chance_centroid_error(scenes: list[Scene], num_frames: int = WORLD_FRAMES) -> float:
    """The centroid error of an edit that kept none of the motion: each clip against the next one's path."""
    pairs = [(scenes[i], scenes[(i + 1) % len(scenes)]) for i in range(len(scenes))]
    return _mean([path_distance(a, b, num_frames) for a, b in pairs])


def read_video(path: Path) -> np.ndarray:
    """Every frame of a result's MP4: [F, H, W, 3] uint8."""
    from ..pipeline.frames import probe_video, read_single_frame

    count = probe_video(path).num_frames
    return np.stack([read_single_frame(path, i) for i in range(count)])


Progress = Callable[[int, int], None]  # (edits finished, total)


def run_suite(rows: list[Row], model: str, device: str | None = None, num_clips: int = 8,
              kinds: tuple[str, ...] = EDIT_KINDS, seed: int = SUITE_SEED, workdir: Path | None = None,
              progress: Progress | None = None) -> tuple[list[RowResult], dict[str, Any]]:
    """Run every row's edits of the suite through engine workers; returns the rows' figures and the
    suite's facts (clips, chance floor). ``workdir`` (default: a temporary folder) holds the clips,
    the worker's data dir, its inversion cache and the results."""
    scenes, edits = make_suite(num_clips, seed, kinds)
    height, width = scenes[0].height, scenes[0].width
    with tempfile.TemporaryDirectory(prefix="cogedit-eval-") as scratch:
        work = Path(workdir) if workdir else Path(scratch)
        clips = write_clips(scenes, work / "clips")
        total = len(rows) * len(edits)
        finished = [0]

        def advance() -> None:
            finished[0] += 1
            if progress is not None:
                progress(finished[0], total)

        results = []
        for fp8 in sorted({row.fp8 for row in rows}):  # one worker per engine configuration
            chosen = [row for row in rows if row.fp8 == fp8]
            config = EngineConfig(model=model, device=device, output_dir=work / "outputs", fp8=fp8,
                                  max_batch_variants=len(kinds))
            scored = _run_rows(chosen, config, clips, scenes, edits, height, width, work, advance)
            results += [summarise(row, *scored[row.name]) for row in chosen]
        order = {row.name: i for i, row in enumerate(rows)}
        results.sort(key=lambda r: order[r.name])
    facts = {"clips": num_clips, "edits_per_row": len(edits), "seed": seed, "frames": WORLD_FRAMES,
             "size": [height, width], "model": model, "device": device or "auto",
             "chance_centroid_error": chance_centroid_error(scenes), "world_size": list(WORLD_SIZE)}
    return results, facts


def _run_rows(rows: list[Row], config: EngineConfig, clips: list[Path], scenes: list[Scene],
              edits: list[SuiteEdit], height: int, width: int, work: Path, advance: Callable[[], None]) -> dict:
    from ..events import JobFailed, JobFinished
    from ..runtime.worker import Worker
    from ..store import DONE

    worker = Worker.open(config, root=work / "data", cache_root=work / "cache")
    try:
        jobs = {}  # job id -> (row, edit)
        for row in rows:
            params = row_params(row, height, width)
            for edit in edits:
                record = worker.submit(JobSpec(str(clips[edit.clip]), edit.prompt, params))
                jobs[record.id] = (row, edit)
        unsubscribe = worker.subscribe(
            lambda event: advance() if isinstance(event, (JobFinished, JobFailed)) and event.job_id in jobs
            else None)
        worker.only = set(jobs)
        worker.start()
        worker.wait_idle(set(jobs))
        worker.stop()
        unsubscribe()
        if worker.load_error is not None:
            raise worker.load_error
        scored: dict[str, tuple[list, int]] = {row.name: ([], 0) for row in rows}
        for job_id, (row, edit) in jobs.items():
            record = worker.store.get(job_id)
            entries, failed = scored[row.name]
            if record is None or record.status != DONE:
                scored[row.name] = (entries, failed + 1)
                continue
            folder = Path(record.output_dir)
            job = json.loads((folder / "job.json").read_text())
            score = score_edit(read_video(folder / "edited.mp4"), scenes[edit.clip], edit.colour, edit.shape)
            entries.append((edit, score, job))
        return scored
    finally:
        worker.close()

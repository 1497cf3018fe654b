"""The edit end to end on the tiny model: outputs, reproducibility, injection, shared inversion."""

from __future__ import annotations

import json

import decord
import pytest
import torch
from safetensors.torch import load_file

from engine.events import StageStarted, StepProgress
from engine.pipeline.artifacts import Variant
from engine.pipeline.edit import Editor, run_edit


def _edit(model, clip, params, prompts=("a watercolor painting",), tmp_path=None, seeds=None, **kwargs):
    events = []
    variants = [Variant(f"job{i}", p, (seeds or [params.seed] * len(prompts))[i]) for i, p in enumerate(prompts)]
    results = run_edit(model, clip, variants, params, tmp_path, emit=events.append, **kwargs)
    return results, events


def test_full_edit_writes_three_playable_mp4s_and_job_json(tiny_model, clip_path, tiny_params, tmp_path):
    params = tiny_params(max_num_frames=17)
    (result,), _ = _edit(tiny_model, clip_path, params, tmp_path=tmp_path)
    folder = result.output_dir
    assert sorted(p.name for p in folder.iterdir()) == ["contact_sheet.png", "edited.mp4", "job.json",
                                                        "original.mp4", "reconstruction.mp4"]
    for name in ("original.mp4", "reconstruction.mp4", "edited.mp4"):
        reader = decord.VideoReader(str(folder / name))
        assert len(reader) == 17
        assert reader[0].shape == (64, 96, 3)
        assert reader.get_avg_fps() == pytest.approx(16 / 2)  # 40 frames / 17 -> stride 2
    job = json.loads((folder / "job.json").read_text())
    assert job["prompt"] == "a watercolor painting" and job["params"]["max_num_frames"] == 17
    assert job["model"]["device"] == "cpu" and job["model"]["dtype"] == "fp32"
    assert job["model"]["attention"] == "default"  # the kernel it ran on (rounding differs between kernels)
    assert job["source"]["sha256"] and job["frames"]["count"] == 17
    assert set(job["timings_s"]) >= {"frames", "encode", "invert", "round_trip", "edit", "decode"}
    assert job["metrics"]["psnr_round_trip_vs_original_db"] > 0
    assert not list(tmp_path.glob(".partial-*"))


def test_variants_of_one_batch_share_the_source_videos_byte_for_byte(tiny_model, clip_path, tiny_params,
                                                                       tmp_path):
    """The original and the round trip are encoded once per batch and copied into every variant's folder."""
    results, _ = _edit(tiny_model, clip_path, tiny_params(), ("a cat", "a dog"), tmp_path=tmp_path)
    first, second = (r.output_dir for r in results)
    for name in ("original.mp4", "reconstruction.mp4"):
        assert (first / name).read_bytes() == (second / name).read_bytes()
    assert (first / "edited.mp4").read_bytes() != (second / "edited.mp4").read_bytes()
    assert not list(tmp_path.glob(".partial-*"))  # the shared staging folder is gone


def test_same_seed_same_latents_other_seed_other_latents(tiny_model, clip_path, tiny_params, tmp_path):
    params = tiny_params(init="noise")  # the seed draws the initial noise
    (a,), _ = _edit(tiny_model, clip_path, params, tmp_path=tmp_path)
    (b,), _ = _edit(tiny_model, clip_path, params, tmp_path=tmp_path)
    (c,), _ = _edit(tiny_model, clip_path, params, tmp_path=tmp_path, seeds=[7])
    assert torch.equal(a.latents, b.latents)
    assert not torch.allclose(a.latents, c.latents)
    assert a.output_dir != b.output_dir  # result folders are never reused


def _edited_latents(model, clip, params, prompts=("a watercolor painting",)):
    editor = Editor(model)
    ids = tuple(f"j{i}" for i in range(len(prompts)))
    source = editor.frames(clip, params, ids)
    inversion = editor.inversion(source, params, ids, editor.vae_tiling(source, params))
    variants = [Variant(i, p, params.seed) for i, p in zip(ids, prompts, strict=False)]
    return editor.edit(inversion, variants, params), inversion


def test_injection_and_init_change_the_result(tiny_model, clip_path, tiny_params):
    full, _ = _edited_latents(tiny_model, clip_path, tiny_params(init="noise", inject_fraction=1.0))
    none, _ = _edited_latents(tiny_model, clip_path, tiny_params(init="noise", inject_fraction=0.0))
    inverted, _ = _edited_latents(tiny_model, clip_path, tiny_params(init="inverted"))
    assert not torch.allclose(full[0], none[0], atol=1e-4)
    assert not torch.allclose(full[0], inverted[0], atol=1e-4)


def test_variants_batched_together_equal_variants_run_alone(tiny_model, clip_path, tiny_params):
    """Sharing the unconditional reference between variants is exact: batching changes nothing."""
    params = tiny_params()
    prompts = ("a watercolor painting", "a bicycle on a road")
    batched, _ = _edited_latents(tiny_model, clip_path, params, prompts)
    for prompt, together in zip(prompts, batched, strict=False):
        (alone,), _ = _edited_latents(tiny_model, clip_path, params, (prompt,))
        torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(batched[0], batched[1], atol=1e-4)


def test_seeds_of_one_prompt_share_its_reference_exactly(tiny_model, clip_path, tiny_params):
    """Two seeds of one prompt need one conditional reference, not two: 2 x 2 edited rows + the
    unconditional and the one conditional reference = 6 rows per step; each equals its run alone."""
    params = tiny_params(init="noise")  # seeds matter only when the edit starts from noise
    editor = Editor(tiny_model)
    source = editor.frames(clip_path, params, ("a", "b"))
    inversion = editor.inversion(source, params, ("a", "b"), editor.vae_tiling(source, params))
    rows = []
    hook = tiny_model.pipeline.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: rows.append(kwargs["hidden_states"].size(0)), with_kwargs=True)
    try:
        together = editor.edit(inversion, [Variant("a", "a cat", 1), Variant("b", "a cat", 2)], params)
    finally:
        hook.remove()
    assert set(rows) == {6}
    for seed, latents in zip((1, 2), together, strict=False):
        (alone,) = editor.edit(inversion, [Variant("x", "a cat", seed)], params)
        torch.testing.assert_close(latents, alone, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(together[0], together[1], atol=1e-4)


def test_shared_reference_is_an_approximation(tiny_model, clip_path, tiny_params):
    exact, _ = _edited_latents(tiny_model, clip_path, tiny_params())
    shared, _ = _edited_latents(tiny_model, clip_path, tiny_params(shared_reference=True))
    assert not torch.allclose(exact[0], shared[0], atol=1e-5)


def test_two_variants_share_one_inversion(tiny_model, clip_path, tiny_params, tmp_path):
    params = tiny_params()
    results, events = _edit(tiny_model, clip_path, params, ("a cat", "a dog"), tmp_path=tmp_path)
    started = [e.stage for e in events if isinstance(e, StageStarted)]
    assert started.count("invert") == 1 and started.count("encode") == 1 and started.count("edit") == 1
    assert len({r.output_dir for r in results}) == 2
    # Step events come in order and add up to the stage's steps.
    for stage in ("invert", "round_trip", "edit"):
        steps = [e.step for e in events if isinstance(e, StepProgress) and e.stage == stage]
        assert steps == list(range(1, params.num_inference_steps + 1))


def test_noop_inversion_guidance_skip_is_exact(tiny_model, clip_path, tiny_params):
    """The reference preset's guided empty-prompt inversion equals the unguided one."""
    editor = Editor(tiny_model)
    literal = tiny_params(inversion_guidance=6.0, literal_guidance=True)
    skipped = tiny_params(inversion_guidance=6.0, literal_guidance=False)
    unguided = tiny_params(inversion_guidance=1.0)
    source = editor.frames(clip_path, literal, ("j",))
    trajectories = [editor.inversion(source, p, ("j",), editor.vae_tiling(source, p)).trajectory
                    for p in (literal, skipped, unguided)]
    assert editor.inversion_guidance(literal, ("j",)).negative is not None  # really computed twice
    assert editor.inversion_guidance(skipped, ("j",)).negative is None
    torch.testing.assert_close(trajectories[0], trajectories[1], rtol=1e-4, atol=1e-4)
    assert torch.equal(trajectories[1], trajectories[2])


def test_save_latents_writes_the_documented_shapes(tiny_model, clip_path, tiny_params, tmp_path):
    params = tiny_params()
    path = tmp_path / "lat.safetensors"
    _edit(tiny_model, clip_path, params, ("a cat", "a dog"), tmp_path=tmp_path, save_latents=path)
    tensors = load_file(str(path))
    f, c, h, w = 3, 16, 8, 12  # 9 frames -> 3 latent frames; 64x96 -> 8x12
    assert tensors["source"].shape == (1, f, c, h, w)
    assert tensors["inversion"].shape == (params.num_inference_steps, 1, f, c, h, w)
    assert tensors["reconstruction"].shape == (1, f, c, h, w)
    assert tensors["edited_0"].shape == tensors["edited_1"].shape == (1, f, c, h, w)
    assert all(t.dtype == torch.float32 for t in tensors.values())


def test_cancel_stops_within_a_step_and_leaves_no_result(tiny_model, clip_path, tiny_params, tmp_path):
    from engine.errors import Cancelled

    params = tiny_params(num_inference_steps=10)
    seen = []

    def should_stop():
        return len([e for e in seen if isinstance(e, StepProgress) and e.stage == "edit"]) >= 3

    with pytest.raises(Cancelled):
        run_edit(tiny_model, clip_path, [Variant("j", "a cat", 1)], params, tmp_path, emit=seen.append,
                 should_stop=should_stop)
    edit_steps = [e.step for e in seen if isinstance(e, StepProgress) and e.stage == "edit"]
    assert edit_steps == [1, 2, 3]
    assert list(tmp_path.iterdir()) == []


def test_edit_rows_share_exactly_equal_references():
    """Variants with the same prompt read one conditional reference; the unconditional rows read one."""
    from engine.pipeline.sampling import edit_row_layout

    assert edit_row_layout(["a", "b", "a"], guided=True, shared_reference=False) == ((0, 0, 0, 1, 2, 1), (0, 1))
    assert edit_row_layout(["a", "b", "a"], guided=False, shared_reference=False) == ((0, 1, 0), (0, 1))
    assert edit_row_layout(["a", "b"], guided=True, shared_reference=True) == ((0, 0, 0, 0), None)

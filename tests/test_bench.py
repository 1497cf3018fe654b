"""The benchmark: a CPU smoke run on the tiny model, the FLOP count and the 5B architecture's build."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers.configuration_utils import FrozenDict

from engine.bench.cli import main
from engine.bench.models import TRANSFORMER_5B, build_5b_pipeline, clip_forward_flops, forward_flops, video_tokens


@pytest.mark.slow
def test_tiny_bench_times_both_paths_and_writes_every_figure(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["--arch", "tiny", "--variants", "2", "--steps", "3", "--time-steps", "2", "--approx", "--json", str(out)]
    assert main(argv) == 0
    report = capsys.readouterr().out
    assert "EXTRAPOLATED" in report and "engine / reference total time" in report

    figures = json.loads(out.read_text())
    assert figures["arch"] == "tiny" and figures["steps"] == 3 and figures["time_steps"] == 2
    assert figures["extrapolated"] is True
    assert figures["flop"]["forward_batch1"]["total"] > 0
    assert set(figures["paths"]) == {"reference", "engine", "engine_shared_reference"}
    reference, engine = figures["paths"]["reference"], figures["paths"]["engine"]
    assert reference["jobs"] == 2 and engine["jobs"] == 1 and engine["variants"] == 2
    for path in figures["paths"].values():
        assert {"frames", "encode", "invert", "round_trip", "edit", "decode", "export"} <= set(path["stages"])
        assert path["total_seconds"] >= path["measured_seconds"] > 0
        for name in ("invert", "round_trip", "edit"):
            stage = path["stages"][name]
            assert stage["steps_timed"] == 2 * path["jobs"] and stage["steps"] == 3 * path["jobs"]
            assert stage["seconds_per_step"] > 0 and stage["flop_per_step"] > 0 and stage["tflops"] > 0
            assert stage["seconds"] > stage["measured_seconds"]  # one untimed step added per run
    # Rows per step: the reference guides its inversion (2 rows) and injects one reference per edited row.
    assert reference["stages"]["invert"]["rows"] == 2 and engine["stages"]["invert"]["rows"] == 1
    assert (reference["stages"]["edit"]["rows"], reference["stages"]["edit"]["injected_rows"]) == (4, 2)
    assert (engine["stages"]["edit"]["rows"], engine["stages"]["edit"]["injected_rows"]) == (7, 4)
    assert figures["paths"]["engine_shared_reference"]["stages"]["edit"]["rows"] == 5
    assert all(path["first_call_seconds"] is not None and not path["compiled_blocks"]  # the CPU compiles nothing
               for path in figures["paths"].values())
    assert "warm-up:" in report and "first calls" in report
    # The FLOPs counted from the batches the transformer ran agree with the count from the config.
    assert engine["stages"]["invert"]["flop_per_step"] == pytest.approx(figures["flop"]["forward_batch1"]["total"])
    assert figures["ratio_engine_over_reference"] == pytest.approx(
        engine["total_seconds"] / reference["total_seconds"])
    assert 0 < figures["reference_script_seconds"] < reference["total_seconds"]
    # Same arithmetic up to float rounding; the approximation differs measurably.
    assert figures["engine_vs_reference"]["max_abs_diff"] < 1e-3
    approximation = figures["approximations"]["shared_reference"]
    assert approximation["max_abs_diff"] >= approximation["mean_abs_diff"] > 1e-3
    assert approximation["speedup_over_engine"] > 0
    assert "approximation shared_reference" in report


def test_fp8_on_the_cpu_is_refused_with_the_reason_and_the_fix(capsys):
    from engine.errors import ModelError
    from engine.kernels.fp8 import check_fp8_available

    with pytest.raises(ModelError, match="FP8 needs an NVIDIA GPU.*run without --fp8"):
        check_fp8_available(torch.device("cpu"))


def test_the_profile_splits_a_step_into_attention_matmuls_and_the_rest():
    from engine.bench.models import ARCHS
    from engine.bench.profile import category, profile_step, step_inputs
    from engine.pipeline.model import wrap_pipeline

    arch = ARCHS["tiny"]
    model = wrap_pipeline(arch.build("cpu"), arch.description, "<in memory>")
    inputs, plan = step_inputs(model, arch.frames, arch.height, arch.width, variants=2)
    assert inputs["hidden_states"].size(0) == 7 and plan.num_edited == 4  # 2K edited rows + K+1 references
    seconds, by_category, ranked = profile_step(model, inputs, plan, repeats=1, top=5)
    assert seconds > 0 and by_category["attention"] > 0 and len(ranked) == 5
    assert category("cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_7") == "attention"
    assert category("nvjet_sm90_tst_192x208_64x4_2x1_v_bz_coopB_gelubias_TNT") == "matmul"
    assert category("triton_red_fused_add_mul_native_layer_norm_split_unsqueeze_1") == "other"


def test_forward_flops_of_the_5b_at_49x480x720():
    config = FrozenDict(TRANSFORMER_5B)
    assert video_tokens(config, 49, 480, 720) == 13 * 30 * 45
    flops = clip_forward_flops(config, 49, 480, 720)
    # Exact count: 42 blocks x 17,776 tokens x 24 d^2 (d = 3072) and 4 S^2 d attention per block.
    assert flops.linear == pytest.approx(1.69e14, rel=0.01)
    assert flops.attention == pytest.approx(1.63e14, rel=0.01)
    assert 3.2e14 < flops.total < 3.45e14
    # An edited row attends to twice the keys: batch 4 with 2 injected rows = 4 linear + 6 attention.
    injected = forward_flops(config, 17550, 226, rows=4, injected_rows=2)
    assert injected.linear == pytest.approx(4 * flops.linear)
    assert injected.attention == pytest.approx(6 * flops.attention)


def test_5b_architecture_has_the_published_sizes_and_leaves_global_state_alone():
    rng, dtype = torch.get_rng_state(), torch.get_default_dtype()
    pipeline = build_5b_pipeline("meta")  # shapes only: no memory, no weights
    assert torch.equal(torch.get_rng_state(), rng) and torch.get_default_dtype() == dtype
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    assert count(pipeline.transformer) == 5_570_283_072
    assert count(pipeline.text_encoder) == 4_762_310_656
    assert pipeline.transformer.dtype == torch.bfloat16 and pipeline.vae.config.scaling_factor == 0.7
    assert pipeline.scheduler.alphas_cumprod.device.type == "cpu"
    ids = pipeline.tokenizer("a watercolor painting", max_length=226, padding="max_length").input_ids
    assert len(ids) == 226 and max(ids) < pipeline.text_encoder.config.vocab_size


@pytest.mark.slow
def test_device_scaling_runs_the_queue_through_the_worker_on_each_device_count(tmp_path):
    """``--devices``: the same queue on 1 and 2 (CPU) devices, every job finished and counted."""
    import json

    from engine.bench.cli import main

    out = tmp_path / "scaling.json"
    assert main(["--arch", "tiny", "--devices", "cpu:0,cpu:1", "--steps", "2", "--variants", "1",
                 "--sources", "2", "--frames", "9", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    runs = figures["runs"]
    assert [len(r["devices"]) for r in runs] == [1, 2]
    for run in runs:
        assert run["finished"] == run["jobs"] == 2 and run["jobs_per_hour"] > 0
        assert sum(run["jobs_per_device"].values()) == 2
    assert runs[0]["scaling_efficiency"] == 1.0


@pytest.mark.slow
def test_the_15_bench_runs_its_clip_size_on_the_cpu(tmp_path, capsys):
    """The CogVideoX1.5 path of the benchmark (padding, 16k+1 frames) at the tiny size; --frames,
    --height and --width set the timed clip (the H200 run: --arch 1.5-5b --frames 81 --height 768
    --width 1360)."""
    out = tmp_path / "bench.json"
    argv = ["--arch", "tiny-1.5", "--variants", "1", "--steps", "2", "--time-steps", "1", "--frames", "17",
            "--height", "64", "--width", "96", "--paths", "engine_plain,engine", "--json", str(out)]
    assert main(argv) == 0
    figures = json.loads(out.read_text())
    assert figures["clip"] == {"frames": 17, "height": 64, "width": 96}
    assert set(figures["paths"]) == {"engine_plain", "engine"}
    assert figures["paths"]["engine"]["stages"]["edit"]["seconds_per_step"] > 0
    assert main(["--arch", "tiny-1.5", "--height", "0"]) == 2

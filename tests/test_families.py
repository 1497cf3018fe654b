"""Model families (engine.families): recognised from the config, each family's tiny model edits through
the worker with the input's frame count and size, letterbox padding never shows, an edited first frame
guides an I2V edit but not its inversion, and every refusal names the rule and the nearest setting."""

from __future__ import annotations

import json

import decord
import numpy as np
import pytest
import torch
from conftest import run_jobs
from PIL import Image

from engine.api import JobSpec
from engine.demo.tiny_model import tiny_transformer_config
from engine.errors import EditError, ModelError
from engine.families import FIVE_B, family_from_config, resolve_params
from engine.params import build_params
from engine.pipeline.artifacts import Variant
from engine.pipeline.edit import Editor
from engine.pipeline.frames import select_frame_indices

TINY = {"height": 64, "width": 96, "num_inference_steps": 3}


def _video(path):
    reader = decord.VideoReader(str(path))
    return len(reader), reader[0].shape


def test_the_family_comes_from_the_config_with_its_native_clip():
    from engine.bench.models import TRANSFORMER_5B, TRANSFORMER_15

    five, one_five = family_from_config(TRANSFORMER_5B), family_from_config(TRANSFORMER_15)
    assert (five.name, five.frames, five.height, five.width) == ("CogVideoX-5B", 49, 480, 720)
    assert five == FIVE_B  # the rules a clip is planned under before the model is known
    assert (one_five.name, one_five.frames, one_five.height, one_five.width) == ("CogVideoX1.5-5B", 81, 768, 1360)
    i2v = family_from_config(TRANSFORMER_5B | {"in_channels": 32, "use_learned_positional_embeddings": True})
    i2v_15 = family_from_config(TRANSFORMER_15 | {"in_channels": 32, "ofs_embed_dim": 512})
    assert (i2v.name, i2v.fixed_size, i2v.image_conditioned) == ("CogVideoX-5B-I2V", True, True)
    assert (i2v_15.name, i2v_15.free_size, i2v_15.ofs) == ("CogVideoX1.5-5B-I2V", True, True)
    assert resolve_params(build_params(), one_five).max_num_frames == 81  # the user's empty fields: the model's
    assert (resolve_params(build_params(), five).height, resolve_params(build_params(), five).width) == (480, 720)
    with pytest.raises(ModelError, match="2B-family model .no rotary position embeddings"):
        family_from_config(tiny_transformer_config("2b"))


def test_refusals_name_the_rule_and_the_nearest_setting():
    from engine.bench.models import TRANSFORMER_5B, TRANSFORMER_15

    i2v = family_from_config(TRANSFORMER_5B | {"in_channels": 32, "use_learned_positional_embeddings": True})
    with pytest.raises(EditError) as error:
        resolve_params(build_params({"height": 512, "width": 720}), i2v)
    assert "CogVideoX-5B-I2V takes only 480x720" in str(error.value)
    assert "nearest valid setting is height 480 width 720" in str(error.value)
    with pytest.raises(EditError, match="8k\\+1 frames, 9 to 81 — set max_num_frames 81 or less"):
        resolve_params(build_params({"max_num_frames": 97}), FIVE_B)
    with pytest.raises(EditError, match="keep needs a model whose sizes are free .* use resize=crop or resize=pad"):
        resolve_params(build_params({"resize": "keep"}), FIVE_B)
    with pytest.raises(EditError, match="first_frame: CogVideoX-5B is a text-to-video model"):
        resolve_params(build_params({"first_frame": "edited.png"}), FIVE_B)
    i2v_15 = family_from_config(TRANSFORMER_15 | {"in_channels": 32, "ofs_embed_dim": 512})
    with pytest.raises(EditError, match="short side 768, long side 768..1360.*height 768 width 1280"):
        resolve_params(build_params({"height": 720, "width": 1280}), i2v_15)
    portrait = resolve_params(build_params({"resize": "keep"}), i2v_15, source_size=(1920, 1080))
    assert (portrait.height, portrait.width) == (1360, 768)  # its own aspect, within the rule
    square = resolve_params(build_params({"resize": "keep"}), i2v_15, source_size=(512, 512))
    assert (square.height, square.width) == (768, 768)


def test_the_15_frame_rule_keeps_16k_plus_1_frames():
    one_five = family_from_config(tiny_transformer_config("1.5"))
    assert len(select_frame_indices(40, 0, 0, 161, None, one_five)[0]) == 33
    assert len(select_frame_indices(40, 0, 0, 161, None, FIVE_B)[0]) == 33
    assert len(select_frame_indices(30, 0, 0, 161, None, one_five)[0]) == 17
    assert len(select_frame_indices(30, 0, 0, 161, None, FIVE_B)[0]) == 25  # 8k+1


def test_the_15_transformer_needs_the_padding_diffusers_gives_it():
    """zai-org/CogVideo #728: 21 latent frames (81 frames) fail in the 1.5 transformer; padded to 22 (as
    the editor pads them) they run. On the meta device: the real architecture, no memory."""
    from engine.bench.models import build_15_pipeline
    from engine.pipeline.conditioning import latent_padding, pad_latents
    from engine.pipeline.model import wrap_pipeline

    model = wrap_pipeline(build_15_pipeline("meta"), "1.5-5b", "<meta>")
    latents = torch.zeros(1, 21, 16, 96, 170, device="meta", dtype=torch.bfloat16)  # 81 frames of 768x1360
    padded = pad_latents(latents, latent_padding(model.family, 21))
    embeds = torch.zeros(1, 226, 4096, device="meta", dtype=torch.bfloat16)
    t = torch.zeros(1, device="meta")
    for rows, works in ((padded, True), (latents, False)):
        rotary = tuple(r.to("meta") for r in model.pipeline._prepare_rotary_positional_embeddings(
            768, 1360, rows.size(1), torch.device("cpu")))
        call = lambda rows=rows, rotary=rotary: model.pipeline.transformer(  # noqa: E731
            hidden_states=rows, encoder_hidden_states=embeds, timestep=t, image_rotary_emb=rotary,
            return_dict=False)[0]
        if works:
            assert call().shape == (1, 22, 16, 96, 170)
        else:
            with pytest.raises(RuntimeError, match="is invalid for input of size"):
                call()


# The 1.5-I2V model keeps the clip's own aspect (128x192 -> 96x144; its tiny rule: short side 96).
@pytest.mark.parametrize("family, frames, size, extra", [
    ("1.5", 17, (64, 96), TINY), ("5b-i2v", 9, (64, 96), TINY),
    ("1.5-i2v", 17, (96, 144), {"num_inference_steps": 3, "resize": "keep"})])
def test_each_family_edits_through_the_worker(tiny_family, clip_path, tmp_path, family, frames, size, extra):
    params = build_params({**extra, "max_num_frames": frames})
    _, (record,) = run_jobs(tmp_path, tiny_family(family), [JobSpec(str(clip_path), "a cat", params)])
    assert record.status == "done", record.error
    for name in ("original.mp4", "reconstruction.mp4", "edited.mp4"):
        assert _video(record.output_dir + "/" + name) == (frames, (*size, 3))
    job = json.loads(open(record.output_dir + "/job.json").read())
    assert job["model"]["family"] == tiny_family(family).family.name


def test_padding_is_invisible_in_every_output(tiny_model, make_clip, tmp_path):
    from engine.output.contact_sheet import contact_sheet

    portrait = make_clip(20, height=192, width=128)  # fits 64 high by 42 wide inside the 64x96 frame
    params = build_params({**TINY, "max_num_frames": 9, "resize": "pad"})
    _, (record,) = run_jobs(tmp_path, tiny_model, [JobSpec(str(portrait), "a cat", params)])
    assert record.status == "done", record.error
    for name in ("original.mp4", "reconstruction.mp4", "edited.mp4"):
        assert _video(record.output_dir + "/" + name) == (9, (64, 42, 3))
    original = decord.VideoReader(record.output_dir + "/original.mp4")[0].asnumpy()
    assert original[:, 0].max() > 40 and original[:, -1].max() > 40  # the picture's edges, no black bar
    sheet = Image.open(record.output_dir + "/contact_sheet.png")
    blank = np.zeros((9, 64, 42, 3), np.uint8)
    assert sheet.size == contact_sheet({"original": blank, "round trip": blank, "edited": blank}).size


def test_a_first_frame_guides_the_edit_and_not_the_inversion(tiny_family, clip_path, tmp_path):
    from engine.pipeline.inversion_cache import inversion_key
    from engine.pipeline.metrics import frames_to_uint8

    model = tiny_family("5b-i2v")
    editor = Editor(model)
    plain = build_params({**TINY, "max_num_frames": 9})
    source = editor.frames(clip_path, plain, ("j",))
    edited_frame = 255 - frames_to_uint8(source.frames[:1])[0]  # [H, W, 3]: the first frame, negated
    Image.fromarray(edited_frame).save(tmp_path / "first.png")
    guided = build_params({**TINY, "max_num_frames": 9, "first_frame": str(tmp_path / "first.png")})
    guided_source = editor.frames(clip_path, guided, ("j",))
    tiling = editor.vae_tiling(source, plain)
    assert inversion_key(source, plain, model, tiling) == inversion_key(guided_source, guided, model, tiling)
    inversion = editor.inversion(source, plain, ("j",), tiling)
    variant = [Variant("j", "a cat", 1)]
    (without,) = editor.edit(inversion, variant, plain, source)
    (with_frame,) = editor.edit(inversion, variant, guided, guided_source)
    assert not torch.allclose(without, with_frame, atol=1e-4)
    Image.fromarray(edited_frame[:, :50]).save(tmp_path / "narrow.png")
    with pytest.raises(EditError, match="is 50x64; it must be a frame of original.mp4 .96x64."):
        editor.frames(clip_path, build_params({**TINY, "max_num_frames": 9,
                                               "first_frame": str(tmp_path / "narrow.png")}), ("j",))


def test_the_inversion_key_holds_what_changes_the_inversion(tiny_model, tiny_family, make_clip):
    from engine.pipeline.inversion_cache import inversion_key

    portrait = make_clip(20, height=192, width=128)
    keys = {}
    for name, model, resize in (("crop", tiny_model, "crop"), ("pad", tiny_model, "pad"),
                                ("1.5", tiny_family("1.5"), "crop")):
        params = build_params({**TINY, "max_num_frames": 17, "resize": resize})
        editor = Editor(model)
        source = editor.frames(portrait, params, ("j",))
        keys[name] = inversion_key(source, source.params, model, False)
    assert "picture" not in keys["crop"] and keys["pad"]["picture"] == [0, 27, 64, 42]
    assert keys["1.5"]["latent_padding"] == 1 and keys["1.5"]["family"] == "CogVideoX1.5-5B"


CLI_FLAGS = ("--height", "64", "--width", "96", "--max-num-frames", "9", "--num-inference-steps", "2",
             "--device", "cpu")


def _cli(*args: str) -> int:
    from tui.cli import main

    return main(["edit", *args, *CLI_FLAGS])


def test_a_first_frame_for_a_text_to_video_model_is_a_one_line_error(capfd, tiny_model_path, clip_path, tmp_path):
    Image.new("RGB", (96, 64), "red").save(tmp_path / "first.png")
    code = _cli(str(clip_path), "--prompt", "a cat", "--model", str(tiny_model_path), "--first-frame",
                str(tmp_path / "first.png"), "--output-dir", str(tmp_path / "out"))
    errors = [line for line in capfd.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1, errors
    assert "first_frame: CogVideoX-5B is a text-to-video model" in errors[0] and " — use CogVideoX-5B-I2V" in errors[0]
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    (tmp_path / "notes.png").write_text("not an image")
    code = _cli(str(clip_path), "--prompt", "a cat", "--model", str(tiny_model_path), "--first-frame",
                str(tmp_path / "notes.png"), "--output-dir", str(tmp_path / "out"))
    assert code == 2 and "cannot read the first frame notes.png as an image" in capfd.readouterr().err


@pytest.mark.slow
def test_the_first_frame_travels_through_the_cli_job_json_and_from_job(capfd, monkeypatch, session_home, tiny_family,
                                                                      clip_path, tmp_path):
    tiny_family("5b-i2v")  # built (and saved) by the fixture
    model = session_home / "models" / "tiny-5b-i2v"
    Image.new("RGB", (96, 64), "red").save(tmp_path / "first.png")
    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path)  # a relative path is recorded absolute: --from-job works from anywhere
    assert _cli(str(clip_path), "--prompt", "a cat", "--model", str(model), "--first-frame",
                "first.png", "--output-dir", str(out)) == 0, capfd.readouterr().err
    (job_file,) = out.glob("*/job.json")
    job = json.loads(job_file.read_text())
    assert job["params"]["first_frame"] == str(tmp_path / "first.png")
    assert job["model"]["family"] == "CogVideoX-5B-I2V"
    again = tmp_path / "again"
    monkeypatch.chdir(session_home)
    from tui.cli import main

    assert main(["edit", "--from-job", str(job_file), "--output-dir", str(again), "--device", "cpu"]) == 0
    (replayed,) = again.glob("*/job.json")
    assert json.loads(replayed.read_text())["params"] == job["params"]

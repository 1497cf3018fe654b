"""Hostile inputs to the headless command: each gets exit status 2 and one line naming the problem
and the fix, with no traceback and no native log noise, and leaves nothing behind.

Every input is made here (ffmpeg, the engine's own writer, plain files); nothing is downloaded. The
clips that must be *handled* (portrait, odd sizes, grayscale, audio, variable frame rate, 4K) are in
test_hostile_clips.py; the parameters and prompts in test_hostile_params.py.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from tui.cli import main

TINY_FLAGS = ["--height", "64", "--width", "96", "--max-num-frames", "9", "--num-inference-steps", "3",
              "--device", "cpu"]
NATIVE_NOISE = ("video_reader.cc", "@ 0x", "moov atom", "Traceback")


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _results(out: Path) -> list[str]:
    """Everything the command left in its output folder (result folders, partial ones, files)."""
    return sorted(p.name for p in out.iterdir()) if out.is_dir() else []


def cli_error(capfd, video, *extra: str, model: str | os.PathLike, out: Path) -> str:
    """Run ``edit VIDEO`` in-process; assert exit 2, one ``error:`` line, no noise, nothing written.

    Returns the error line without its ``error: `` prefix.
    """
    before = _digest(Path(video))
    code = main(["edit", str(video), "--prompt", "a watercolor painting", "--model", str(model),
                 "--output-dir", str(out), *TINY_FLAGS, *extra])
    _, err = capfd.readouterr()
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2, err
    assert len(lines) == 1, err
    assert not [noise for noise in NATIVE_NOISE if noise in err], err
    assert " — " in lines[0], f"no fix after the problem: {lines[0]}"
    assert _digest(Path(video)) == before, "the source was modified"
    assert _results(out) == [], f"left behind: {_results(out)}"
    return lines[0].removeprefix("error: ")


@pytest.fixture
def out(tmp_path) -> Path:
    return tmp_path / "out"


# -- the path itself ------------------------------------------------------------------------------

def test_missing_path(capfd, tiny_model_path, tmp_path, out):
    line = cli_error(capfd, tmp_path / "holiday.mp4", model=tiny_model_path, out=out)
    assert line.startswith(f"video not found: {tmp_path / 'holiday.mp4'} — check the path")


def test_directory(capfd, tiny_model_path, tmp_path, out):
    line = cli_error(capfd, tmp_path, model=tiny_model_path, out=out)
    assert line.startswith(f"{tmp_path} is a directory, not a video — give the path of a video file")


def test_zero_byte_file(capfd, tiny_model_path, tmp_path, out):
    empty = tmp_path / "empty.mp4"
    empty.touch()
    line = cli_error(capfd, empty, model=tiny_model_path, out=out)
    assert line == f"{empty} is empty (0 bytes) — copy the video again; the file holds nothing"


def test_text_file_named_mp4(capfd, tiny_model_path, tmp_path, out):
    fake = tmp_path / "notes.mp4"
    fake.write_text("shot list: street at dusk, lanterns, a cyclist\n" * 10)
    line = cli_error(capfd, fake, model=tiny_model_path, out=out)
    assert line == ("cannot read notes.mp4 as a video (it is a text file) — give the path of a video file "
                    "ffmpeg can play (mp4, mov, mkv, webm)")


# -- broken or unsuitable media -------------------------------------------------------------------

@pytest.mark.parametrize("faststart", [True, False], ids=["index-first", "index-last"])
def test_truncated_mp4(capfd, tiny_model_path, ffmpeg, tmp_path, out, faststart):
    """The first half of a real MP4's bytes, whether its index (moov) comes first or last."""
    whole = tmp_path / "whole.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=192x128:rate=16", "-frames:v", "40", "-pix_fmt", "yuv420p",
           *(["-movflags", "+faststart"] if faststart else []), whole)
    data = whole.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    line = cli_error(capfd, cut, model=tiny_model_path, out=out)
    assert line == ("cannot read cut.mp4 as a video (the file is truncated or corrupt) — copy or download the "
                    "video again (it is incomplete or damaged), or re-encode it with ffmpeg")


def test_mp4_damaged_in_the_middle(capfd, tiny_model_path, ffmpeg, tmp_path, out):
    """Opens fine (its index is whole) but its packets are garbage: fails while decoding, in one line."""
    whole = tmp_path / "whole.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=192x128:rate=16", "-frames:v", "40", "-pix_fmt", "yuv420p",
           "-movflags", "+faststart", whole)
    data = bytearray(whole.read_bytes())
    third = len(data) // 3
    data[third:2 * third] = np.random.default_rng(0).integers(0, 256, third, dtype=np.uint8).tobytes()
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    line = cli_error(capfd, damaged, model=tiny_model_path, out=out)
    assert re.fullmatch(r"cannot decode the (first frame|frames) of damaged\.mp4 \(the file is truncated or "
                        r"corrupt\) — copy or download the video again .*", line), line


def test_fewer_usable_frames_than_the_minimum_after_skips(capfd, tiny_model_path, make_clip, out):
    line = cli_error(capfd, make_clip(40), "--skip-frames-start", "33", "--skip-frames-end", "3",
                     model=tiny_model_path, out=out)
    assert line.startswith("only 4 usable frame(s) of 40 after skips and stride; an edit needs at least 9 — ")
    assert "skip_frames_start/skip_frames_end" in line


def test_skips_larger_than_the_clip(capfd, tiny_model_path, make_clip, out):
    line = cli_error(capfd, make_clip(40), "--skip-frames-start", "100", model=tiny_model_path, out=out)
    assert line == ("skip_frames_start (100) + skip_frames_end (0) drop all 40 frames of the clip; an edit "
                    "needs at least 9 — lower skip_frames_start/skip_frames_end so that at least 9 frames remain")


def test_one_frame_clip(capfd, tiny_model_path, ffmpeg, tmp_path, out):
    one = tmp_path / "one.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=192x128:rate=16", "-frames:v", "1", "-pix_fmt", "yuv420p", one)
    line = cli_error(capfd, one, model=tiny_model_path, out=out)
    assert line.startswith("only 1 usable frame(s) of 1 after skips and stride; an edit needs at least 9 — "
                           "use a longer clip")


@pytest.mark.parametrize("name, kind", [("still.png", "PNG"), ("still.jpg", "JPEG"), ("disguised.mp4", "PNG")])
def test_still_image_given_as_the_video(capfd, tiny_model_path, ffmpeg, tmp_path, out, name, kind):
    """A photo (even one renamed .mp4) is refused as a still image, by its bytes, not its name."""
    image = tmp_path / name
    codec = ["-c:v", "png", "-f", "image2"] if kind == "PNG" else []
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=192x128", "-frames:v", "1", *codec, image)
    line = cli_error(capfd, image, model=tiny_model_path, out=out)
    assert line == (f"{name} is a still image ({kind}), not a video — give a video clip of at least 9 frames "
                    "(mp4, mov, mkv, webm)")


def test_animated_gif(capfd, tiny_model_path, ffmpeg, tmp_path, out):
    """decord cannot decode GIFs: say so and how to convert, rather than 'broken metadata'."""
    gif = tmp_path / "loop.gif"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=8", "-frames:v", "12", gif)
    line = cli_error(capfd, gif, model=tiny_model_path, out=out)
    assert line == ("loop.gif is an animated GIF, which the video reader (decord) cannot decode — convert it to "
                    "MP4 first: ffmpeg -i IN -pix_fmt yuv420p OUT.mp4")


def test_audio_only_file(capfd, tiny_model_path, ffmpeg, tmp_path, out):
    song = tmp_path / "song.mp4"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000", "-t", "1", "-c:a", "aac", song)
    line = cli_error(capfd, song, model=tiny_model_path, out=out)
    assert line.startswith("cannot read song.mp4 as a video (it holds no readable video stream: audio only, "
                           "or cut short?) — give a file with a video track")


def test_av1_clip_names_the_codec_and_how_to_re_encode(capfd, tiny_model_path, ffmpeg, tmp_path, out):
    """decord has no AV1 decoder: the clip has a video stream, just not one it can read."""
    import subprocess

    clip = tmp_path / "av1.mp4"
    try:
        ffmpeg("-f", "lavfi", "-i", "testsrc=size=192x128:rate=16", "-frames:v", "20", "-c:v", "libsvtav1",
               "-pix_fmt", "yuv420p", clip)
    except subprocess.CalledProcessError:
        pytest.skip("this ffmpeg has no AV1 encoder")
    line = cli_error(capfd, clip, model=tiny_model_path, out=out)
    assert line == ("cannot read av1.mp4 as a video (its video is AV1, a codec the video reader (decord) cannot "
                    "decode) — re-encode it to H.264: ffmpeg -i IN -c:v libx264 -pix_fmt yuv420p OUT.mp4")


# -- the model ------------------------------------------------------------------------------------

def test_model_folder_without_weights(capfd, tiny_model_path, clip_path, tmp_path, out):
    model = Path(shutil.copytree(tiny_model_path, tmp_path / "model"))
    for weights in model.rglob("*.safetensors"):
        weights.unlink()
    line = cli_error(capfd, clip_path, model=model, out=out)
    assert line == (f"{model}/transformer holds no weights (an incomplete download?) — download the model again "
                    "(hf download ...)")


def test_model_folder_with_a_cut_short_weights_file(capfd, tiny_model_path, clip_path, tmp_path, out):
    """An interrupted download: caught from the safetensors header, before any weights are loaded."""
    model = Path(shutil.copytree(tiny_model_path, tmp_path / "model"))
    weights = model / "vae" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    line = cli_error(capfd, clip_path, model=model, out=out)
    assert line.startswith(f"{weights} is cut short (")
    assert line.endswith("(an incomplete download?) — download the model again (hf download ...)")


def test_2b_family_model(capfd, tiny_2b_path, clip_path, out):
    line = cli_error(capfd, clip_path, model=tiny_2b_path, out=out)
    assert line == (f"{tiny_2b_path} is a CogVideoX-2B-family model (no rotary position embeddings); "
                    "DDIM-inversion editing needs the 5B model — use THUDM/CogVideoX-5b, CogVideoX1.5-5B or their "
                    "I2V models, or a fine-tune of them")


def test_hub_id_not_cached_while_offline(capfd, clip_path, out):
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    line = cli_error(capfd, clip_path, model="someone/cogvideox-5b-finetune", out=out)
    assert line == ("model someone/cogvideox-5b-finetune is not in the Hugging Face cache and could not be "
                    "downloaded (offline: HF_HUB_OFFLINE is set) — run `hf download someone/cogvideox-5b-finetune` "
                    "on a machine with internet (then copy the cache or the folder here and pass --model FOLDER)")


# -- where results go -----------------------------------------------------------------------------

def test_output_dir_under_a_regular_file(capfd, tiny_model_path, clip_path, tmp_path):
    """Works as root too: no permission bit can make a path under a file writable."""
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder\n")
    line = cli_error(capfd, clip_path, model=tiny_model_path, out=blocker / "out")
    assert line == (f"cannot create the output folder {blocker / 'out'}: {blocker} is a file, not a folder — "
                    "choose a writable --output-dir")
    assert blocker.read_text() == "not a folder\n"


def test_output_dir_that_is_a_file(tmp_path):
    from engine.errors import OutputError
    from engine.output.atomic import check_output_dir

    target = tmp_path / "results"
    target.write_text("x")
    with pytest.raises(OutputError) as info:
        check_output_dir(target)
    assert str(info.value) == (f"the output folder {target} is a file, not a folder — choose a writable "
                               "--output-dir")


def test_output_dir_without_write_permission(tmp_path):
    from engine.errors import OutputError
    from engine.output.atomic import check_output_dir

    if os.geteuid() == 0:
        pytest.skip("running as root, which permission bits do not stop; test_output_dir_under_a_regular_file "
                    "covers an unwritable --output-dir")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(OutputError) as info:
            check_output_dir(locked / "out")
        assert str(info.value).startswith(f"cannot write to {locked / 'out'} (permission denied) — ")
    finally:
        locked.chmod(0o700)

"""Finding, checking and loading a CogVideoX pipeline, and choosing device and dtype.

``--model`` takes a local folder (one holding ``model_index.json``) or a Hugging Face hub id, which is
resolved through the Hugging Face cache (and downloaded into it when the hub is reachable). The model's
family (engine.families) is read from its own transformer config; models that cannot run this method
are refused before any weights are read.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import CogVideoXDDIMScheduler, CogVideoXImageToVideoPipeline, CogVideoXPipeline, DDIMInverseScheduler
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..config import DEFAULT_MODEL
from ..errors import ModelError
from ..families import ModelFamily, family_from_config
from ..paths import TOY_MODEL, toy_model_dir
from .attention import InjectionPlan, InjectionState, install_injection
from .compile_gate import MODEL_GATE, transformer_call

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
_LOAD_LOCK = threading.Lock()
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
PIPELINE_CLASSES = {"CogVideoXPipeline": CogVideoXPipeline,
                    "CogVideoXImageToVideoPipeline": CogVideoXImageToVideoPipeline}
OFS_VALUE = 2.0  # the ofs input CogVideoXImageToVideoPipeline gives CogVideoX1.5-I2V


@dataclass
class LoadedModel:
    """A pipeline on its device, with what it was resolved from."""

    pipeline: CogVideoXPipeline
    injection: InjectionState
    model: str  # as the user gave it
    resolved_path: str
    revision: str | None  # hub commit, when it came from the cache
    device: torch.device
    dtype: torch.dtype
    load_seconds: float
    attention: str = "default"  # the attention kernel (engine.kernels.select); "default": PyTorch's own SDPA order
    sdpa_backends: list[SDPBackend] | None = None  # SDPA's backends in priority order; None: PyTorch's own
    plain_blocks: torch.nn.ModuleList | None = None  # the transformer's own blocks (set by engine.kernels)
    compiled_blocks: torch.nn.ModuleList | None = None
    # FP8 blocks (engine.kernels.fp8): quantized copies, or for an --fp8 worker the blocks themselves
    fp8_blocks: torch.nn.ModuleList | None = None
    fp8: bool = False  # the FP8 blocks are the ones running (approximate)
    compiled_calls: set = field(default_factory=set)  # forwards the compiled blocks have run (compile_gate)
    weights_id: str | None = None  # the weight files' identity when loaded (weights_identity); None: built in memory
    family: ModelFamily | None = None  # engine.families, from the transformer's config (wrap_pipeline sets it)

    @property
    def dtype_name(self) -> str:
        return next(name for name, d in DTYPES.items() if d == self.dtype)

    def describe(self) -> dict[str, object]:
        described: dict[str, object] = {"model": self.model, "family": self.family.name,
                                        "resolved_path": self.resolved_path,
                                        "revision": self.revision, "device": str(self.device),
                                        "dtype": self.dtype_name, "attention": self.attention}
        return described | ({"linear_layers": "fp8 (approximate)"} if self.fp8 else {})

    def forward(self, rows: torch.Tensor, embeds: torch.Tensor, t: torch.Tensor, rotary,
                plan: InjectionPlan | None, image: torch.Tensor | None = None) -> torch.Tensor:
        """One transformer call on ``rows`` [B, F, C, H, W] (in the model's dtype) at timestep ``t``: under
        the compile gate (alone when compiled blocks may compile this call), on the attention kernel
        installed, with key/value injection per ``plan`` (None: none). An image-to-video model takes each
        row's image condition ``image`` [B, F, C, H, W] beside it (channels concatenated, as
        CogVideoXImageToVideoPipeline does) and, for CogVideoX1.5-I2V, its ofs input."""
        transformer = self.pipeline.transformer
        if image is not None:
            rows = torch.cat([rows, image.to(rows.dtype)], dim=2)  # [B, F, 2C, H, W]
        extra = {"ofs": rows.new_full((1,), OFS_VALUE)} if self.family.ofs else {}
        blocks = transformer.transformer_blocks
        compiled = blocks is self.compiled_blocks or blocks is self.fp8_blocks
        gate = transformer_call(blocks, compiled, self.compiled_calls, (rows.shape, embeds.shape, plan, self.attention))
        with gate, self.attention_backends(), self.injection.active(plan):
            return transformer(hidden_states=rows, encoder_hidden_states=embeds, timestep=t.expand(rows.size(0)),
                               image_rotary_emb=rotary, return_dict=False, **extra)[0]

    def attention_backends(self) -> contextlib.AbstractContextManager[None]:
        """SDPA's backends, in the installed priority order, for the code inside (none set: untouched)."""
        if self.sdpa_backends is None:
            return contextlib.nullcontext()
        return sdpa_kernel(self.sdpa_backends, set_priority=True)

    def rotary_embeddings(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """CogVideoX's 3D rotary position embeddings for latents [B, F, C, H, W] (None: a model without)."""
        if not self.pipeline.transformer.config.use_rotary_positional_embeddings:
            return None
        with MODEL_GATE.shared():
            return rotary_embeddings(self, latents)

    def forward_scheduler(self) -> CogVideoXDDIMScheduler:
        return forward_scheduler(self.pipeline)

    def inverse_scheduler(self) -> DDIMInverseScheduler:
        return inverse_scheduler(self.pipeline)


def rotary_embeddings(model: LoadedModel, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """CogVideoX's 3D rotary position embeddings for latents shaped [B, F, C, H, W]."""
    pipeline = model.pipeline
    _, frames, _, height, width = latents.shape
    return pipeline._prepare_rotary_positional_embeddings(
        height=height * pipeline.vae_scale_factor_spatial, width=width * pipeline.vae_scale_factor_spatial,
        num_frames=frames, device=model.device)


def free_memory(device: torch.device) -> int:
    """Bytes a new allocation on a GPU can take: the driver's free memory plus what PyTorch's allocator
    holds unused."""
    free, _ = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


def resolve_device(device: str | None) -> torch.device:
    """``None`` means the first GPU if there is one, else the CPU."""
    if not device or device == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ModelError(f"unknown device {device!r}", "use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = dev.index or 0
        if index >= count:
            raise ModelError(f"device {device} is not available ({count} CUDA GPU(s) visible)",
                             "pass --device cpu, or a GPU that nvidia-smi lists")
        dev = torch.device("cuda", index)
    elif dev.type != "cpu":
        raise ModelError(f"device type {dev.type!r} is not supported", "use cpu or cuda:N")
    return dev


def resolve_devices(devices: str | None) -> list[str]:
    """One worker per entry: ``None`` (the first GPU, else the CPU), ``all`` (every GPU), or a comma
    list such as ``cuda:0,cuda:1``. Each entry is checked like ``--device``."""
    if devices == "all":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return [f"cuda:{i}" for i in range(count)] or ["cpu"]
    entries = [d.strip() for d in (devices or "auto").split(",") if d.strip()] or ["auto"]
    return [str(resolve_device(entry)) for entry in entries]


def resolve_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    """bf16 on a GPU and fp32 on the CPU unless asked otherwise."""
    if not dtype or dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise ModelError(f"unknown dtype {dtype!r}", f"use one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def resolve_model_path(model: str) -> tuple[Path, str | None]:
    """A local pipeline folder for ``model`` (``toy``, a folder or a hub id), and the hub revision if any."""
    if model == TOY_MODEL:
        return toy_model_dir(), None
    path = Path(model).expanduser()
    if path.exists():
        return path.resolve(), None
    if not HUB_ID.match(model) or model.startswith((".", "/", "~")):
        raise ModelError(f"model path not found: {model}",
                         "pass a folder that holds model_index.json, or a hub id such as "
                         f"{DEFAULT_MODEL}")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = snapshot_download(model, local_files_only=True)
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        try:
            folder = CogVideoXPipeline.download(model)
        except Exception as exc:  # offline, unknown repo, gated, ...
            raise ModelError(
                f"model {model} is not in the Hugging Face cache and could not be downloaded "
                f"({_download_failure(exc)})",
                f"run `hf download {model}` on a machine with internet (then copy the cache or the "
                "folder here and pass --model FOLDER)") from exc
    folder = Path(folder)
    revision = folder.name if folder.parent.name == "snapshots" else None
    return folder, revision


def _download_failure(exc: Exception) -> str:
    """Why a hub download failed, in words (the exception's type name when nothing better is known)."""
    from huggingface_hub import constants
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    if constants.HF_HUB_OFFLINE:
        return "offline: HF_HUB_OFFLINE is set"
    if isinstance(exc, GatedRepoError):
        return "the repository is gated: accept its licence on the hub, then `hf auth login`"
    if isinstance(exc, RepositoryNotFoundError):
        return "no such repository on the hub, or it is private"
    return type(exc).__name__


def safetensors_problem(path: Path) -> str | None:
    """Why a .safetensors file cannot be whole (empty, cut short, corrupt header), from its header alone."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            if size < 8 or length > size - 8:
                return "empty" if size == 0 else "cut short"
            header = json.loads(handle.read(length))
        end = max((entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"),
                  default=0)
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError):
        return "corrupt (unreadable header)"
    return f"cut short ({size} of {8 + length + end} bytes)" if 8 + length + end > size else None


def check_model_folder(folder: Path) -> None:
    """Refuse, before loading weights, anything that is not a complete pipeline of a family the editor runs."""
    index_file = folder / "model_index.json"
    if not index_file.is_file():
        raise ModelError(f"{folder} is not a diffusers pipeline folder (no model_index.json)",
                         "point --model at the folder that holds model_index.json")
    try:
        index = json.loads(index_file.read_text())
        transformer_cfg = json.loads((folder / "transformer" / "config.json").read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise ModelError(f"{folder} has an unreadable or missing config ({type(exc).__name__})",
                         "download the model again") from exc
    for name, loaded in (("model_index.json", index), ("transformer/config.json", transformer_cfg)):
        if not isinstance(loaded, dict):
            raise ModelError(f"{folder}/{name} is not a JSON object (it holds a {type(loaded).__name__})",
                             "download the model again")
    if index.get("_class_name") not in PIPELINE_CLASSES:
        raise ModelError(f"{folder} holds a {index.get('_class_name')}, not a CogVideoX text- or image-to-video "
                         "pipeline", f"use CogVideoX-5B ({DEFAULT_MODEL}), CogVideoX1.5-5B or their I2V models")
    family_from_config(transformer_cfg, str(folder))  # the 2B family and unknown layouts are refused here
    for part in ("transformer", "vae", "text_encoder"):
        weights = [p for p in (folder / part).glob("*") if p.suffix in (".safetensors", ".bin")]
        if not weights:
            raise ModelError(f"{folder}/{part} holds no weights (an incomplete download?)",
                             "download the model again (hf download ...)")
        for file in weights:
            problem = safetensors_problem(file) if file.suffix == ".safetensors" else None
            if problem:
                raise ModelError(f"{file} is {problem} (an incomplete download?)",
                                 "download the model again (hf download ...)")


def quiet_libraries() -> None:
    """Silence diffusers'/transformers' own progress bars and info logs: the engine reports progress."""
    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging

    for logging_module in (diffusers_logging, transformers_logging):
        logging_module.set_verbosity_error()
        logging_module.disable_progress_bar()


def load_model(model: str = DEFAULT_MODEL, device: str | None = None, dtype: str | None = None) -> LoadedModel:
    """Resolve, check and load the pipeline onto ``device`` in ``dtype``."""
    quiet_libraries()
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    folder, revision = resolve_model_path(model)
    check_model_folder(folder)
    weights_id = weights_identity(folder)  # before reading: a re-save during the load changes the next one
    start = time.perf_counter()
    try:
        # diffusers/accelerate build modules on the meta device by patching torch globally: two loads at
        # once (one worker per GPU) would see each other's meta tensors. Read one at a time; the copies
        # onto the devices below still overlap.
        with _LOAD_LOCK:
            index = json.loads((folder / "model_index.json").read_text())
            pipeline = PIPELINE_CLASSES[index["_class_name"]].from_pretrained(str(folder), dtype=torch_dtype)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ModelError(f"cannot load the model in {folder} ({first})", "download the model again") from exc
    try:
        pipeline.to(dev)
    except torch.OutOfMemoryError as exc:
        raise ModelError(f"the model does not fit on {dev}",
                         "free the GPU (nvidia-smi shows who holds it) or use a larger one") from exc
    loaded = wrap_pipeline(pipeline, model, str(folder), revision, time.perf_counter() - start)
    loaded.weights_id = weights_id
    return loaded


WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.json")


def weights_identity(folder: Path) -> str:
    """A digest of the model folder's weight and config files by (path, size, mtime_ns): a fine-tune saved
    again into the same folder gets a new identity, without reading gigabytes of weights."""
    entries = []
    for pattern in WEIGHT_PATTERNS:
        for path in sorted(Path(folder).rglob(pattern)):
            try:
                stat = path.stat()  # through the hub cache's symlinks, to the blobs
            except OSError:
                continue
            entries.append(f"{path.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(sorted(entries)).encode()).hexdigest()[:32]


def wrap_pipeline(pipeline: CogVideoXPipeline, model: str, resolved_path: str, revision: str | None = None,
                  load_seconds: float = 0.0) -> LoadedModel:
    """Make a pipeline already on its device ready for editing (used by load_model and the benchmark,
    which builds the 5B architecture in memory)."""
    pipeline.set_progress_bar_config(disable=True)
    injection = install_injection(pipeline.transformer)
    family = family_from_config(dict(pipeline.transformer.config), resolved_path)
    return LoadedModel(pipeline, injection, model, resolved_path, revision, pipeline.transformer.device,
                       pipeline.transformer.dtype, load_seconds, family=family)


def forward_scheduler(pipeline: CogVideoXPipeline) -> CogVideoXDDIMScheduler:
    """A fresh forward scheduler (schedulers carry per-run state, so each run gets its own)."""
    return CogVideoXDDIMScheduler.from_config(pipeline.scheduler.config)


def inverse_scheduler(pipeline: CogVideoXPipeline) -> DDIMInverseScheduler:
    """DDIMInverseScheduler on the forward scheduler's own noise levels.

    DDIMInverseScheduler rebuilds alphas_cumprod itself, ignoring CogVideoX's ``snr_shift_scale`` and
    rescaling zero-SNR on betas rather than alphas; taking the forward scheduler's table makes the
    inversion walk exactly the noise levels the reconstruction walks back (for the 5B config the two
    tables agree to 4e-7).
    """
    accepted = inspect.signature(DDIMInverseScheduler.__init__).parameters
    inverse = DDIMInverseScheduler.from_config({k: v for k, v in pipeline.scheduler.config.items() if k in accepted})
    inverse.alphas_cumprod = forward_scheduler(pipeline).alphas_cumprod.clone()
    return inverse

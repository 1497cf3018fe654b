"""What the engine is asked to do: the worker's configuration and a job's specification.

Light on purpose (no torch): front ends import it at start-up without loading the ML stack.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from .params import EditParams

DEFAULT_MODEL = "THUDM/CogVideoX-5b"
# The attention kernels (engine.kernels.select): auto; PyTorch's default order; FlashAttention-3; the engine's
# Triton kernel; or one of SDPA's backends first.
ATTENTION_CHOICES = ("auto", "default", "fa3", "triton", "cudnn", "flash", "efficient", "math")
GIB = 1024**3
DEFAULT_CACHE_BYTES = 20 * GIB


DTYPE_CHOICES = ("bf16", "fp16", "fp32")


def _option(default: Any, help: str | None = None, *, flags: tuple[str, ...] = (), choices: tuple[str, ...] = (),
            path: bool = False) -> Any:
    """A field of EngineConfig; with ``help``, a command-line flag too (``--name``, or ``flags``):
    :func:`config_flags` generates the flags and :func:`config_from_flags` reads them back."""
    return field(default=default, metadata={"help": help, "flags": flags, "choices": choices, "path": path})


@dataclass(frozen=True)
class EngineConfig:
    """Where and how the worker runs. Fields with a help text are command-line flags."""

    model: str = _option(DEFAULT_MODEL, "hub id (resolved through the Hugging Face cache) or a local pipeline folder "
                         f"[default {DEFAULT_MODEL}]")
    # cpu, cuda:N, several (cuda:0,cuda:1) or all; None: the first GPU, else the CPU
    device: str | None = _option(None, "cpu, cuda:N, several GPUs (cuda:0,cuda:1) or all: one worker per GPU, the "
                                 "queue spread over them [default: the first GPU, else cpu]",
                                 flags=("--device", "--devices"))
    dtype: str | None = _option(None, "[default: bf16 on a GPU, fp32 on the CPU]", choices=DTYPE_CHOICES)
    output_dir: Path | None = _option(None, "where result folders go [default: the user data dir's outputs/]",
                                      path=True)
    max_batch_variants: int = 8  # most variants of a source edited in one batch (fewer when GPU memory is short)
    cache_max_bytes: int = DEFAULT_CACHE_BYTES
    attention: str = _option("auto", "attention kernel [default auto: on a GPU FlashAttention-3 where installed "
                             "(Hopper), else the engine's Triton kernel, else cuDNN's]", choices=ATTENTION_CHOICES)
    compile: bool | None = None  # torch.compile the transformer blocks; None: on a GPU
    # approximate: FP8 projections in the transformer blocks (engine.kernels.fp8; torchao, SM 8.9+)
    # a Ray cluster's address: its GPUs (one actor each) serve this process's queue (engine.runtime.ray_cluster)
    cluster: str | None = _option(None, "run the queue on every GPU of a Ray cluster: its address (auto, HOST:PORT, "
                                  "ray://HOST:10001, or local); needs pip install 'cogedit-tui[ray]'")
    fp8: bool = _option(False, "approximate: FP8 matrix products in the transformer blocks (faster; changes the "
                        "result beyond float rounding; needs torchao and an Ada or Hopper GPU)")


@dataclass(frozen=True)
class ConfigFlag:
    """One command-line flag of an EngineConfig field."""

    name: str  # the field
    flags: tuple[str, ...]
    help: str
    default: Any
    choices: tuple[str, ...]
    path: bool

    @property
    def is_switch(self) -> bool:
        return isinstance(self.default, bool)


def config_flags() -> list[ConfigFlag]:
    """The flags of EngineConfig's fields that have a help text, in field order."""
    return [ConfigFlag(f.name, f.metadata["flags"] or ("--" + f.name.replace("_", "-"),), f.metadata["help"],
                       f.default, f.metadata["choices"], f.metadata["path"])
            for f in dataclasses.fields(EngineConfig) if f.metadata.get("help")]


def config_from_flags(values: dict[str, Any], **overrides: Any) -> EngineConfig:
    """An EngineConfig from flag values (a flag left out or None: the field's default)."""
    given = {flag.name: values[flag.name] for flag in config_flags() if values.get(flag.name) is not None}
    return EngineConfig(**(given | overrides))


@dataclass(frozen=True)
class JobSpec:
    """What to run: a source clip, an edit prompt and the parameters (the seed among them)."""

    source: str
    prompt: str
    params: EditParams


class DeviceState(str, Enum):
    """What one device's thread is doing (and, summed up, the worker: :meth:`Worker.status`). A ``str``
    subclass whose text is its value, so events and CSS classes carry the plain word."""

    LOADING = "loading"
    IDLE = "idle"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    FAILED = "failed"
    RETIRED = "retired"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


DOWN_STATES = frozenset({DeviceState.FAILED, DeviceState.RETIRED})  # a device that runs nothing until restart


@dataclass(frozen=True)
class DeviceStatus:
    """One device at one moment: its name (cuda:0, cpu), its state and the jobs it runs."""

    device: str
    state: DeviceState
    running: tuple[str, ...] = ()


@dataclass(frozen=True)
class WorkerStatus:
    """A snapshot of the worker for front ends: the summed-up state and one entry per device."""

    state: DeviceState
    devices: tuple[DeviceStatus, ...]

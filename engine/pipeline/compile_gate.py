"""Keeping several device threads' model code apart from a compilation under way.

``torch.compile`` compiles lazily, on a compiled block's first call with a new batch shape, and while
it traces it patches ``torch.nn.Module.__call__`` and ``__getattr__`` for the whole process (FX's
tracer). Another thread that runs model code meanwhile has its compiled blocks refuse ("Detected
that you are using FX to symbolically trace a dynamo-optimized function") and its plain modules
routed through the other thread's tracer: on two GPUs, one GPU's jobs failed this way. So every unit of
model work (a transformer forward, a VAE pass, a prompt encoding, a model load) holds
:data:`MODEL_GATE` shared, and a transformer forward that may compile holds it alone
(:func:`transformer_call`). With one device the gate is never contended.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Hashable, Iterator

import torch


class CompileGate:
    """A readers-writer lock on model work: many shared holders, or one exclusive holder. A waiting
    exclusive holder goes before later shared ones (a compile does not wait behind a queue of steps).
    A thread already holding it passes through again (nested calls of model code)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._shared = 0
        self._exclusive = False
        self._exclusive_waiting = 0
        self._held = threading.local()

    def shared(self) -> contextlib.AbstractContextManager[None]:
        return self._hold(exclusive=False)

    def exclusive(self) -> contextlib.AbstractContextManager[None]:
        return self._hold(exclusive=True)

    @contextlib.contextmanager
    def _hold(self, exclusive: bool) -> Iterator[None]:
        if getattr(self._held, "depth", 0):  # nested model code: this thread holds it already
            self._held.depth += 1
            try:
                yield
            finally:
                self._held.depth -= 1
            return
        with self._changed:
            if exclusive:
                self._exclusive_waiting += 1
                self._changed.wait_for(lambda: not self._exclusive and not self._shared)
                self._exclusive_waiting -= 1
                self._exclusive = True
            else:
                self._changed.wait_for(lambda: not self._exclusive and not self._exclusive_waiting)
                self._shared += 1
        self._held.depth = 1
        try:
            yield
        finally:
            self._held.depth = 0
            with self._changed:
                if exclusive:
                    self._exclusive = False
                else:
                    self._shared -= 1
                self._changed.notify_all()


MODEL_GATE = CompileGate()


def transformer_call(blocks: torch.nn.ModuleList, compiled: bool, seen: set[Hashable], key: Hashable):
    """The gate for one transformer forward on ``blocks``: alone the first time ``key`` (everything
    a compiled block's guards depend on: shapes, injection plan, attention kernel) runs on compiled
    blocks, shared otherwise. ``seen`` is the model's record of keys already run."""
    key = (id(blocks), key)
    if not compiled or key in seen:
        return MODEL_GATE.shared()
    seen.add(key)
    return MODEL_GATE.exclusive()

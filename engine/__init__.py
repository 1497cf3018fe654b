"""cogedit-tui's engine: text-prompted video editing by DDIM inversion on CogVideoX-5B.

The contract sits at the top (:mod:`engine.params`, :mod:`engine.events`, :mod:`engine.errors`,
:mod:`engine.paths`, :mod:`engine.store`, :mod:`engine.config`, and the front ends' façade
:mod:`engine.api`: light, no torch until needed). Below it, wings by responsibility:

- :mod:`engine.output`: atomic files and folders, H.264 MP4s, the contact sheet;
- :mod:`engine.pipeline`: the edit (the seven stages in :mod:`engine.pipeline.edit`, the DDIM loop,
  key/value injection, the loaded model, the VAE, frames, the inversion cache, export, metrics);
- :mod:`engine.kernels`: attention kernels, FP8, the fused GELU, installed on a loaded model;
- :mod:`engine.runtime`: the worker, one thread per device, the event bus;
- :mod:`engine.demo` and :mod:`engine.bench`: the demo fixtures and the benchmark.

A wing imports the contract and the wings listed before it, never one after it; the engine never
imports a UI.
"""

"""The toy model: a small CogVideoX trained here on a toy world, so that an edit's quality is a number.

- :mod:`engine.toy.world` — the world (one coloured ball, square or triangle moving over a plain or
  graded background; prompts ``"a {colour} {shape}"``): training clips and the eval suite.
- :mod:`engine.toy.train` — the seeded training script (``python -m engine.toy.train --out DIR``).
- ``model/`` — the trained weights as a ``save_pretrained`` folder (fp16), shipped in the package and
  selected by ``--model toy`` (its path also works as ``--model PATH``).

It is a small world, not CogVideoX-5B: its numbers rank settings and catch regressions; they do not
promise real-video quality. ``--model toy`` resolves through :func:`engine.paths.toy_model_dir`.
"""

"""The benchmark: the reference algorithm against the engine (``cogedit-tui bench``, ``python -m engine.bench``)."""

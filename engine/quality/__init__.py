"""Edit quality as numbers: the toy model edits a held-out suite of clips of the toy world through
the real worker and :mod:`engine.quality.measure` scores each edit against the scene it came from
(``cogedit-tui eval``, :mod:`engine.quality.cli`)."""

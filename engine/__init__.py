"""cogedit-tui's engine: text-prompted video editing by DDIM inversion on CogVideoX-5B.

Front ends import :mod:`engine.api` (light: no torch until needed). The edit itself lives in
:mod:`engine.edit` (stages), :mod:`engine.sampling` (the DDIM loop) and :mod:`engine.attention`
(key/value injection); :mod:`engine.worker` runs queued jobs on one or several devices; the engine
never imports the UI.
"""

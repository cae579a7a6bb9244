"""Keras Tuner searches (``python -m hep_keras.tune``): search spaces from ``tuning/<model>.toml``
(:mod:`.space`), physics objectives logged as Keras metrics (:mod:`.objectives`), the ``HyperModel`` and the
recording tuners (:mod:`.hypermodel`), readable results (:mod:`.results`) and the search itself (:mod:`.search`).
"""

"""Progress bars for the stages of a command that take more than a few seconds (evaluation, reconstruction,
generation): a heading line, then a Keras progress bar on stdout like the training bars."""

from __future__ import annotations


def stage_bar(stage: str, total: int, unit: str = "event", verbose: int = 1):
    """Print ``stage`` and return a :class:`keras.utils.Progbar` over ``total`` ``unit``\\ s (``verbose=0``: silent).

    Call ``bar.update(done)`` with the number of units finished so far.
    """
    import keras

    if verbose:
        print(stage, flush=True)
    return keras.utils.Progbar(total, unit_name=unit, verbose=verbose)


def staged_update(bar):
    """``progress(stage, done, total)`` callback (e.g. for ``quality_table``) that moves ``bar`` to ``done`` of
    ``total``, the total being known only once the stage runs."""

    def update(stage: str, done: int, total: int) -> None:
        bar.target = total
        bar.update(done)

    return update

"""User-facing errors.

Every problem a user can cause (bad file, bad config, unwritable directory, ...) raises a subclass of
:class:`HepKerasError` whose message is one line naming the file or option and the problem. The CLIs turn it
into ``error: <message>`` on stderr and exit status 2 (see :func:`hep_keras.commands.run`).
"""


class HepKerasError(Exception):
    """Base class of the errors a user can fix; ``str(err)`` is one line."""


class DataError(HepKerasError, ValueError):
    """An input file is missing, unreadable or does not follow the expected schema."""


class ConfigError(HepKerasError, ValueError):
    """A configuration key or value is unknown or invalid."""


class OutputError(HepKerasError, OSError):
    """An output location cannot be written, or already exists and would be overwritten."""


class TrainingError(HepKerasError, RuntimeError):
    """Training failed in a way the user can act on (e.g. the loss diverged to NaN/Inf)."""

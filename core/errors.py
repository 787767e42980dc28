"""The errors the engine raises for bad input, each with a message for a person.

The window and the CLI show ``str(error)`` as it is, so every message says what
went wrong and what to do, in one line.
"""


class WorkbenchError(Exception):
    """Base for errors caused by input or environment, not by a bug."""


class ModelNotFoundError(WorkbenchError):
    """The path does not exist, or the id cannot be fetched."""


class NotAModelError(WorkbenchError):
    """The path exists but holds no model we can read."""


class UnsupportedModelError(WorkbenchError):
    """The model's architecture or task is not one we can run."""


class CorruptModelError(WorkbenchError):
    """The model's files exist but cannot be read (truncated, damaged)."""


class OutOfMemoryError(WorkbenchError):
    """The device ran out of memory."""


class Cancelled(WorkbenchError):
    """The user cancelled the operation."""


class DataMissingError(WorkbenchError):
    """A bundled data set is not installed (its data package is missing)."""


class ExportFailedError(WorkbenchError):
    """An export could not be produced, or does not compute what the model computes."""


class ProvenanceError(WorkbenchError):
    """What a run measured cannot be handed over exactly."""


class TrainingDivergedError(WorkbenchError):
    """Training's loss stopped being a finite number."""

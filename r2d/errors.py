"""Domain errors. Library code raises these; entry points turn them into messages.

`app.py` converts `R2DError` into `gr.Error`; the training CLIs into `sys.exit("error: ...")`.
Every message says what went wrong *and* what to do about it.
"""

from __future__ import annotations


class R2DError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(R2DError, ValueError):
    """A config file or override is unknown, mistyped or contradictory."""


class DatasetSchemaError(R2DError, ValueError):
    """A data file or row does not match the question/label/rationale schema."""


class InvalidCaseError(R2DError, ValueError):
    """A case text the model cannot be asked about (empty, too long, not text)."""


class ModelLoadError(R2DError):
    """A model directory or hub id that cannot be loaded as asked."""


class FeedbackStoreError(R2DError):
    """The review database cannot be read or written."""


class ReviewActionError(R2DError, ValueError):
    """A review action that cannot be done as asked (nothing shown, nothing to undo, a rating, label or export
    policy out of range, a name missing); nothing was written."""


class TrainingRunError(R2DError):
    """A background training run cannot be started, found or used as asked."""

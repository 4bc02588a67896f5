"""Reason2Decide: one small T5 that predicts a triage label and explains it.

The package never imports gradio; `app.py` is the only UI code.
"""

from r2d.config import R2DConfig, load_config
from r2d.data import Example, load_examples, write_examples
from r2d.errors import (
    ConfigError,
    DatasetSchemaError,
    FeedbackStoreError,
    InvalidCaseError,
    ModelLoadError,
    R2DError,
    ReviewActionError,
)
from r2d.prompts import PROMPT_VERSION, explain_given_label_prompt, explain_prompt, predict_prompt

__all__ = [
    "R2DConfig",
    "load_config",
    "Example",
    "load_examples",
    "write_examples",
    "R2DError",
    "ConfigError",
    "DatasetSchemaError",
    "InvalidCaseError",
    "ModelLoadError",
    "FeedbackStoreError",
    "ReviewActionError",
    "PROMPT_VERSION",
    "predict_prompt",
    "explain_prompt",
    "explain_given_label_prompt",
]

"""Every prompt template of Reason2Decide, and nothing else builds prompts.

The wording is the authors' (quamranhasan/Reason2Decide) to the letter, so checkpoints trained with
their code and ours read the same inputs. Changing a template changes PROMPT_VERSION, which is saved
with every model and every export.
"""

from __future__ import annotations

PROMPT_VERSION = "r2d-prompts-1"


def predict_prompt(case_text: str) -> str:
    """Stage 2 / inference: case -> label. Also used on a rationale alone (consistency)."""
    return f"predict: {case_text}"


def explain_prompt(case_text: str) -> str:
    """Stage 1 (and the DSS baseline): case -> rationale, no label given."""
    return f"explain: {case_text}"


def explain_given_label_prompt(case_text: str, label: str) -> str:
    """Stage 2 / inference: (label, case) -> rationale that justifies that label."""
    return f"given label: {label}, explain: {case_text}"

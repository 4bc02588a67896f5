"""Prompt templates: golden strings (the authors' wording) and one source of truth."""
from __future__ import annotations

import re

import pytest

from conftest import ROOT
from r2d import prompts


def test_golden_strings_match_the_authors_templates():
    assert prompts.predict_prompt("fever") == "predict: fever"
    assert prompts.explain_prompt("fever") == "explain: fever"
    assert prompts.explain_given_label_prompt("fever", "3") == "given label: 3, explain: fever"


def test_prompt_version_is_set():
    assert re.fullmatch(r"[\w.-]+", prompts.PROMPT_VERSION)


@pytest.mark.parametrize("needle", ["predict:", "explain:", "given label:"])
def test_no_other_module_builds_prompts(needle):
    # the paper's code repeats its templates in 4 places; here only r2d/prompts.py may hold them
    offenders = []
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).parts
        if parts[0] in (".venv", "tests") or path.name == "prompts.py":
            continue
        if needle in path.read_text(encoding="utf-8"):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []

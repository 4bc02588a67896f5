"""Prompt templates: golden strings (the authors' wording) and one source of truth."""

from __future__ import annotations

import ast
import re

import pytest

from r2d import prompts


def test_golden_strings_match_the_authors_templates():
    assert prompts.predict_prompt("fever") == "predict: fever"
    assert prompts.explain_prompt("fever") == "explain: fever"
    assert prompts.explain_given_label_prompt("fever", "3") == "given label: 3, explain: fever"


def test_prompt_version_is_set():
    assert re.fullmatch(r"[\w.-]+", prompts.PROMPT_VERSION)


def _string_literals(source: str) -> list[str]:
    """Every string constant of a module except docstrings (which may quote a template to explain it)."""
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


@pytest.fixture(scope="module")
def module_literals(root) -> dict[str, list[str]]:
    """The string literals of every module that could build a prompt, parsed once for all three needles."""
    paths = list(root.glob("*.py")) + [
        p for d in ("r2d", "training", "ui", "benchmarks") for p in root.glob(f"{d}/**/*.py")
    ]
    return {
        str(path.relative_to(root)): _string_literals(path.read_text(encoding="utf-8"))
        for path in paths
        if path.relative_to(root).as_posix() != "r2d/prompts.py"
    }


@pytest.mark.parametrize("needle", ["predict:", "explain:", "given label:"])
def test_no_other_module_builds_prompts(needle, module_literals):
    # the paper's code repeats its templates in 4 places; here only r2d/prompts.py may hold them
    pattern = re.compile(rf"(?<![\w]){re.escape(needle)}")
    assert len(module_literals) > 80  # app.py and every package (their subpackages too) were read
    offenders = [name for name, texts in module_literals.items() if any(pattern.search(t) for t in texts)]
    assert offenders == []


def test_the_check_itself_finds_a_template():
    assert _string_literals('"""doc: predict: x"""\nx = f"predict: {y}"\n') == ["predict: "]

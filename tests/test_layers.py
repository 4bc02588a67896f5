"""The layering of the code, read from its imports (function-level imports included): r2d/ never reaches the UI
or the training CLIs; the clinical checks and the review workflow run without torch; the UI never touches torch."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOUNDATION = ("config", "data", "errors", "prompts", "limits")


def imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def reaches(path: Path, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(n for n in imports(path) if any(n == f or n.startswith(f + ".") for f in forbidden))


def files(*parts: str) -> list[Path]:
    where = ROOT.joinpath(*parts)
    found = sorted(where.rglob("*.py")) if where.is_dir() else [where.with_suffix(".py")]
    assert all(p.is_file() for p in found) and found, f"{where} holds no Python files"
    return found


def test_imports_reads_function_level_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import os\ndef f():\n    from torch import nn\n    import gradio as gr\n")
    assert reaches(module, ("torch", "gradio")) == ["gradio", "torch", "torch.nn"]
    assert reaches(module, ("tor",)) == []


@pytest.mark.parametrize("path", files("r2d"), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_library_never_reaches_the_ui_or_training(path):
    assert reaches(path, ("gradio", "gradio_client", "ui", "app", "webguard", "training")) == []


@pytest.mark.parametrize(
    "path",
    files("r2d", "checks") + files("r2d", "review") + files("r2d", "eval", "metrics"),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_checks_review_and_metrics_run_without_torch(path):
    assert reaches(path, ("torch", "transformers", "tokenizers", "r2d.model", "r2d.eval.bertscore")) == []


@pytest.mark.parametrize("name", FOUNDATION)
def test_the_foundation_imports_only_the_foundation(name):
    reached = reaches(ROOT / "r2d" / f"{name}.py", ("r2d",))
    assert all(n.split(".")[1] in FOUNDATION for n in reached), reached


def test_the_checks_know_nothing_of_the_review_workflow():
    for path in files("r2d", "checks"):
        assert reaches(path, ("r2d.review", "r2d.eval")) == [], path


@pytest.mark.parametrize("path", [ROOT / "app.py", *files("ui")], ids=lambda p: str(p.relative_to(ROOT)))
def test_the_ui_never_touches_torch(path):
    assert reaches(path, ("torch", "transformers", "ctranslate2")) == []


def test_no_tab_imports_another():
    """Each tab is its own module: no tab imports another (what they share is ui.common)."""
    tabs = ("ui.review", "ui.batch", "ui.dashboard", "ui.export", "ui.improve")
    for path in files("ui"):
        own = f"ui.{path.stem}"
        assert reaches(path, tuple(t for t in tabs if t != own)) == [] or own == "ui.blocks", path


def module_imports(path: Path) -> set[str]:
    """The imports run when the module loads (top-level statements only, not those inside functions)."""
    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


CPU_ENGINE_PATH = ("source", "label_scores", "inference", "load", "ort", "ort_export", "ct2", "artifacts")


@pytest.mark.parametrize("name", CPU_ENGINE_PATH)
def test_the_cpu_engines_path_loads_without_torch(name):
    """What load_predictor runs for ONNX Runtime (the CPU default) and CTranslate2: no torch or transformers at
    load time; the torch engine (torch_predictor, modeling) is imported inside a function, when chosen."""
    loaded = module_imports(ROOT / "r2d" / "model" / f"{name}.py")
    torchy = ("torch", "transformers", "r2d.model.modeling", "r2d.model.scoring", "r2d.model.torch_predictor")
    assert sorted(n for n in loaded if any(n == f or n.startswith(f + ".") for f in torchy)) == []

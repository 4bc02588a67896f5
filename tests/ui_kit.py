"""Helpers for the UI tests (tests/test_ui_*.py): call a tab's handlers on a built app (the `h` fixture) and read
their outputs by component name."""

from __future__ import annotations

import json
import zipfile
from dataclasses import fields
from pathlib import Path

from r2d.data import Example
from ui.blocks import App

CASE = "level 2: chest pain, BP 88/50, HR 124"
# gold rows the fake predictor reads right (it takes the first digit 1-5): its consistency check is measured
# reliable, so the app warns on a disagreement (r2d.checks.consistency)
FAKE_GOLD = [
    Example(f"case {i}", str(i % 5 + 1), f"Findings fit level {i % 5 + 1}.", "rules", f"g{i}") for i in range(20)
]


def component_names(h: App) -> dict[int, str]:
    """id(component) -> its field name in its tab's components (a list field: name_0, name_1, ...)."""
    holders = (
        h.shared,
        h.review.ui,
        h.batch.ui,
        h.dashboard.ui,
        h.dashboard.adjudication.ui,
        h.export.ui,
        h.improve.ui,
    )
    names = {}
    for holder in holders:
        for f in fields(holder):
            value = getattr(holder, f.name)
            items = enumerate(value) if isinstance(value, list) else [(None, value)]
            names.update({id(c): f.name if i is None else f"{f.name.rstrip('s')}_{i}" for i, c in items})
    return names


def named(h: App, result: dict) -> dict:
    """A handler's {component: value} as {name: value}."""
    names = component_names(h)
    return {names[id(comp)]: value for comp, value in result.items()}


def predicted(h: App, case: str = CASE, name: str = "Nurse A") -> dict:
    return named(h, list(h.review.predict(case, name, None))[-1])


def save(h, shown, name="Nurse A", label="2", rationale="Shock signs: level 2.", rating=None, comment="", queue=None):
    return named(h, h.review.save(shown, name, label, rationale, rating, comment, queue or {}, None, None))


def write_cases(path: Path, cases: list[str], ids: list[str] | None = None) -> Path:
    rows = [{"question": c} | ({"id": ids[i]} if ids else {}) for i, c in enumerate(cases)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def review_cases(h: App, rationale: str = "Shock signs: level 2.") -> None:
    for case in (CASE, "level 5: sore throat", "level 4: ankle sprain"):
        save(h, predicted(h, case)["shown"], rationale=rationale, rating="4")


def zip_names(result: dict) -> list[str]:
    [archive] = result["files"]
    with zipfile.ZipFile(archive) as z:
        return sorted(z.namelist())

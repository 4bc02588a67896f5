"""A real browser (Debian's headless Chromium via playwright) predicts, edits, saves, reviews a batch and exports.

Never downloads a browser: skipped with the reason when /usr/bin/chromium is absent (`make browser` installs it).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("R2D_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.is_file(),
        reason=f"no Chromium at {CHROMIUM}: install Debian's chromium (make browser) or set R2D_CHROMIUM",
    ),
]


@pytest.fixture()
def page(launched_app):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.external_requests = []
        page.on(
            "request",
            lambda r: (
                None
                if r.url.startswith((launched_app.url.rstrip("/"), "data:", "blob:"))
                else page.external_requests.append(r.url)
            ),
        )
        page.set_default_timeout(30_000)
        page.goto(launched_app.url, wait_until="load")
        page.wait_for_selector("#r2d-case textarea")
        try:
            yield page
        finally:
            browser.close()


def wait_text(page, selector: str, text: str) -> None:
    """Wait until the element shows text; on timeout, fail with what it and the status line show instead."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(
            "([s, t]) => (document.querySelector(s)?.innerText || '').includes(t)", arg=[selector, text]
        )
    except PlaywrightTimeout:
        shown = page.evaluate("s => document.querySelector(s)?.innerText", selector)
        status = page.evaluate("() => document.querySelector('#r2d-status')?.innerText")
        toasts = page.evaluate("() => [...document.querySelectorAll('.toast-body')].map(e => e.innerText)")
        pytest.fail(f"{selector} never showed {text!r}; it shows {shown!r} (status: {status!r}, messages: {toasts})")


def predict(page, case: str) -> None:
    page.fill("#r2d-case textarea", case)
    page.click("#r2d-predict")
    wait_text(page, "#r2d-status", "Review the rationale")


def test_predict_edit_save_batch_and_export(page, launched_app):
    store, tmp = launched_app.store, launched_app.tmp_path
    page.fill("#r2d-reviewer textarea", "Nurse Browser")

    # one click on an example fills the case; the label and every probability show, the rationale streams in
    example = "level 2: chest pain, BP 88/50, HR 124"
    page.get_by_text(example, exact=True).first.click()
    page.wait_for_function("t => document.querySelector('#r2d-case textarea').value === t", arg=example)
    page.click("#r2d-predict")
    wait_text(page, "#r2d-status", "Review the rationale")
    assert "2 — Emergency" in page.inner_text("#r2d-suggestion")
    assert page.locator("#r2d-probabilities .plotly, #r2d-probabilities svg").count() > 0
    assert page.input_value("#r2d-rationale textarea") == launched_app.predictor.explain(example, "2")

    # edit: the letters typed (a, s, c, n, p) must not trigger shortcuts while the text box has focus
    editor = page.locator("#r2d-rationale textarea")
    editor.fill("")
    editor.type('Shock: <img src=x onerror="window.__pwned=1"> pressure low, as seen: level 2')
    page.keyboard.press("Escape")
    page.keyboard.press("Shift+4")  # rate (plain digits choose the label)
    page.keyboard.press("s")  # save
    wait_text(page, "#r2d-status", "Saved review")
    assert page.locator("#r2d-rating input[value='4']").is_checked()
    assert page.evaluate("window.__pwned") is None  # HTML in a rationale is shown as text, never run
    assert '<img src=x onerror="window.__pwned=1">' in page.inner_text("#r2d-diff")
    [edited] = store.reviews()
    assert (edited.action, edited.rating, edited.reviewer) == ("edited", 4, "Nurse Browser")
    assert edited.final_rationale.startswith("Shock: <img")

    # a second case accepted with one key
    predict(page, "level 5: sore throat, walked in")
    page.keyboard.press("a")
    wait_text(page, "#r2d-status", "(accepted)")
    assert [r.action for r in store.reviews()] == ["edited", "accepted"]

    # a batch: upload, walk the queue with the keyboard, refresh the browser, resume where it was
    cases = tmp / "cases.jsonl"
    cases.write_text("".join(json.dumps({"question": f"level {k}: batch case {k}"}) + "\n" for k in (1, 3)))
    page.get_by_text("Batch: upload cases").click()
    page.set_input_files("#r2d-upload input[type=file]", str(cases))
    wait_text(page, "#r2d-queue", "Case 1 of 2")
    page.keyboard.press("n")
    wait_text(page, "#r2d-queue", "Case 2 of 2")
    assert page.input_value("#r2d-case textarea") == "level 3: batch case 3"
    page.screenshot(path=str(tmp / "review.png"), full_page=True)
    page.reload(wait_until="load")
    wait_text(page, "#r2d-queue", "Case 2 of 2")
    assert page.input_value("#r2d-reviewer textarea") == "Nurse Browser"

    # export: one button; no identifiers in these reviews, so the files are written at once
    page.get_by_role("tab", name="Export").click()
    page.click("#r2d-export")
    wait_text(page, "#r2d-export-summary", "Exported 2 reviews")
    export_dirs = list((tmp / "exports").iterdir())
    assert len(export_dirs) == 1
    assert {p.name for p in export_dirs[0].iterdir()} >= {"train.jsonl", "val.jsonl", "export_meta.json"}
    page.get_by_role("tab", name="Dashboard").click()
    wait_text(page, "#r2d-dash-summary", "reviewed cases")
    page.screenshot(path=str(tmp / "dashboard.png"), full_page=True)

    assert page.external_requests == []
    assert launched_app.external == []


def wait_for(condition, what: str, timeout_s: float = 30.0):
    """Poll a Python-side condition (the store) until it holds."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def open_reviewer(browser, url: str, name: str, batch_file: Path):
    """A reviewer in their own browser context (own storage), with the batch uploaded and open."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.external_requests = []
    page.on(
        "request",
        lambda r: (
            None if r.url.startswith((url.rstrip("/"), "data:", "blob:")) else page.external_requests.append(r.url)
        ),
    )
    page.set_default_timeout(30_000)
    page.goto(url, wait_until="load")
    page.wait_for_selector("#r2d-case textarea")
    page.fill("#r2d-reviewer textarea", name)
    page.get_by_text("Batch: upload cases").click()
    page.set_input_files("#r2d-upload input[type=file]", str(batch_file))
    wait_text(page, "#r2d-queue", "Case 1 of 3")
    return page


def test_pasted_rationale_is_checked_and_kept_as_a_draft_across_a_refresh(page, launched_app):
    """Text pasted with the mouse fires no keystroke: leaving the box must still check it and keep it."""
    page.fill("#r2d-reviewer textarea", "Nurse Paste")
    predict(page, "level 2: chest pain, BP 88/50, HR 124")
    pasted = "Chest pain with BP 88/50 (hypotension) and HR 124 (tachycardia)."
    page.click("#r2d-rationale textarea")
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(pasted)  # one input event, as a paste or a drop gives
    page.click("#r2d-case-id")  # leave the box
    wait_text(page, "#r2d-fact-notes", "every statement checked matches the case")
    case_id = page.inner_text("#r2d-case-id").split()[2]  # "Case id <id>"
    for _ in range(100):  # the draft is written by the box's blur event: wait for it, then refresh
        if launched_app.store.draft("Nurse Paste", case_id):
            break
        time.sleep(0.1)
    page.reload(wait_until="load")
    wait_text(page, "#r2d-status", "Restored your unsaved draft")
    assert page.input_value("#r2d-rationale textarea") == pasted
    assert not launched_app.store.reviews()  # a draft, not a saved review


def test_two_reviewers_accept_after_edit_undo_blind_review_agreement_and_export(launched_app):
    sync_api = pytest.importorskip("playwright.sync_api")
    store, tmp, predictor = launched_app.store, launched_app.tmp_path, launched_app.predictor
    cases = ["level 2: chest pain, BP 88/50, HR 124", "level 4: ankle sprain, walked in", "level 5: sore throat"]
    batch = tmp / "batch.jsonl"
    batch.write_text("".join(json.dumps({"id": f"K-{k}", "question": c}) + "\n" for k, c in enumerate(cases)))
    evil = "![n](http://203.0.113.7/x.png)"  # a Markdown name made other browsers fetch the URL
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            a = open_reviewer(browser, launched_app.url, "Nurse A", batch)
            # accept after an edit: A stores what is on screen (the edit and the new label), then moves on
            a.fill("#r2d-rationale textarea", "Edited by A: chest pain with low BP, level 3.")
            a.keyboard.press("Escape")
            a.keyboard.press("3")  # relabel: one key
            a.keyboard.press("a")  # save what is shown and open the next case: one key
            wait_text(a, "#r2d-queue", "Case 2 of 3")
            [first] = wait_for(store.reviews, "A's first review")
            assert (first.reviewer, first.final_label, first.action) == ("Nurse A", "3", "relabelled")
            assert first.final_rationale == "Edited by A: chest pain with low BP, level 3."
            # undo: the review no longer counts and its content is back on screen
            a.keyboard.press("u")
            wait_text(a, "#r2d-status", "Retracted your review")
            wait_text(a, "#r2d-queue", "Case 1 of 3")
            assert a.input_value("#r2d-rationale textarea") == first.final_rationale
            assert store.latest_reviews() == []
            a.keyboard.press("s")
            wait_text(a, "#r2d-queue", "Case 2 of 3")
            # case 2: A corrects the rationale and keeps the label; B will accept the model's text (below)
            a_text = "Edited by A: ankle sprain, walked in, weight bearing: level 4."
            a.fill("#r2d-rationale textarea", a_text)
            a.keyboard.press("Escape")
            a.keyboard.press("s")
            wait_text(a, "#r2d-queue", "Case 3 of 3")
            a.keyboard.press("a")
            wait_text(a, "#r2d-queue", "3 reviewed")

            # blind review: B sees the model's answer, not A's, until B has saved
            b = open_reviewer(browser, launched_app.url, evil, batch)
            assert b.input_value("#r2d-rationale textarea") == predictor.explain(cases[0], "2")
            wait_text(b, "#r2d-status", "hidden until you save")
            assert "Nurse A" not in b.inner_text("#r2d-status")
            b.keyboard.press("1")
            b.keyboard.press("s")
            wait_text(b, "#r2d-queue", "Case 2 of 3")
            assert b.input_value("#r2d-rationale textarea") == predictor.explain(cases[1], "4")  # not A's edit
            b.keyboard.press("a")  # B accepts the model's text, same label as A
            wait_text(b, "#r2d-queue", "Case 3 of 3")
            b.keyboard.press("a")
            wait_text(b, "#r2d-queue", "3 reviewed")
            b.keyboard.press("p")
            b.keyboard.press("p")
            wait_text(b, "#r2d-queue", "Case 1 of 3")
            wait_text(b, "#r2d-status", "Nurse A chose 3")
            assert len(store.reviewer_reviews()) == 6

            # A sees B's name as text, never as an image
            a.keyboard.press("p")
            a.keyboard.press("p")
            wait_text(a, "#r2d-queue", "Case 1 of 3")
            wait_text(a, "#r2d-status", evil)

            # the dashboard: agreement with counts; the one disagreement side by side, settled by clicking
            b.get_by_role("tab", name="Dashboard").click()
            wait_text(b, "#r2d-dash-agreement", "on 3 case(s) reviewed by 2+ of 2 reviewers")
            wait_text(b, "#r2d-adj-count", "1 case(s) to adjudicate")
            wait_text(b, "#r2d-adj-view", "Edited by A: chest pain with low BP, level 3.")
            b.screenshot(path=str(tmp / "dashboard-two-reviewers.png"), full_page=True)
            b.locator("#r2d-adj-pick label").filter(has_text="(Nurse A)").click()
            b.click("#r2d-adj-settle")
            wait_text(b, "#r2d-dash-status", "adopted for case")
            wait_text(b, "#r2d-adj-count", "Nothing to adjudicate")

            # export: A's adopted relabel, A's edit over B's acceptance of the model's text, one agreed acceptance
            b.get_by_role("tab", name="Export").click()
            b.click("#r2d-export")
            wait_text(b, "#r2d-export-summary", "Exported 3 reviews")
            [folder] = (tmp / "exports").iterdir()
            meta = json.loads((folder / "export_meta.json").read_text())
            rows = [
                json.loads(line)
                for name in ("train.jsonl", "val.jsonl")
                for line in (folder / name).read_text().splitlines()
            ]
            assert len(rows) == meta["counts"]["selected"] == 3
            assert {r["id"] for r in rows} == {"K-0", "K-1", "K-2"}
            assert {r["id"]: r["resolution"] for r in rows} == {"K-0": "adjudicated", "K-1": "edit", "K-2": "agreed"}
            assert next(r for r in rows if r["id"] == "K-0")["rationale"] == first.final_rationale
            # B's later unedited acceptance (same label) once replaced A's correction in the export
            k1 = next(r for r in rows if r["id"] == "K-1")
            assert (k1["rationale"], k1["label"], k1["action"]) == (a_text, "4", "edited")
            assert all(len(r["reviewers"]) == 2 for r in rows)
            assert a.external_requests == [] and b.external_requests == []
        finally:
            browser.close()
    assert launched_app.external == []


def test_an_under_triaged_peri_arrest_case_shows_the_guard_before_any_save(page, launched_app):
    """An unresponsive, hypotensive, hypoxic patient suggested "4 — Less urgent" with no word of it."""
    page.fill("#r2d-reviewer textarea", "Nurse Guard")
    predict(page, "level 4: 70-year-old man, pulseless, unresponsive, BP 60/30 mmHg, SpO2 70%.")
    suggestion = page.inner_text("#r2d-suggestion")
    assert "4 — Less urgent" in suggestion and "Under-triage risk: " in suggestion
    assert "calls for KTAS 1" in suggestion and "Check the level against the first-order modifiers" in suggestion
    assert launched_app.store.reviews() == []  # shown before anything is saved


def test_quick_double_key_presses_are_never_dropped_20_times(page, launched_app):
    """The second of two quick presses was dropped while the first ran (eight P presses moved six
    cases). Twenty rounds of N N then P P, each pair pressed back to back, must each move exactly two cases."""
    cases = launched_app.tmp_path / "five.jsonl"
    cases.write_text("".join(json.dumps({"question": f"level {k}: case number {k}"}) + "\n" for k in range(1, 6)))
    page.fill("#r2d-reviewer textarea", "Nurse Keys")
    page.get_by_text("Batch: upload cases").click()
    page.set_input_files("#r2d-upload input[type=file]", str(cases))
    wait_text(page, "#r2d-queue", "Case 1 of 5")
    page.locator("#r2d-queue").click()  # focus on the page, outside every input
    for round_ in range(20):
        for key, position in (("n", "Case 3 of 5"), ("p", "Case 1 of 5")):
            page.keyboard.press(key)
            page.keyboard.press(key)
            wait_text(page, "#r2d-queue", position)
        assert page.input_value("#r2d-case textarea") == "level 1: case number 1", f"round {round_ + 1}"

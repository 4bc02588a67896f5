"""The Export tab (ui/export.py): the identifier scan, its confirmation, and a download that is a private copy."""

from __future__ import annotations

import re
from pathlib import Path

import gradio as gr
import pytest
from ui_kit import named, predicted, review_cases, save, zip_names

from r2d.review.store import ACTIONS

pytestmark = pytest.mark.usefixtures("gradio_temp")


def test_export_without_findings_writes_files_at_once(h, cfg):
    review_cases(h)
    result = named(h, h.export.start(list(ACTIONS), 0, False, 0.1, False, "Nurse A", None))
    assert result["findings"] == [] and "No likely" in result["findings_md"]
    assert result["confirm_row"]["visible"] is False and "Exported 3" in result["summary"]
    assert zip_names(result) == ["export_meta.json", "train.jsonl", "val.jsonl"]
    [folder] = Path(cfg.app.export_dir).iterdir()
    # a name nobody can guess (4 of 4 timestamped folders were found in 900 guesses)
    assert re.fullmatch(r"export-\d{8}-\d{6}-[0-9a-f]{16}", folder.name)
    assert not Path(result["files"][0]).is_relative_to(Path(cfg.app.export_dir))  # the download is a copy


def test_export_with_findings_waits_for_confirmation(h, cfg):
    review_cases(h, rationale="Spoke to Mr. John Smith on 555-123-4567: level 2.")
    args = (list(ACTIONS), 0, False, 0.1, True, "Nurse A")
    result = named(h, h.export.start(*args, None))
    assert {(f[2], f[3]) for f in result["findings"]} == {("name", "Mr. John Smith"), ("phone", "555-123-4567")}
    assert "likely patient identifier" in result["findings_md"] and result["confirm_row"]["visible"] is True
    assert result["files"] is None
    assert not Path(cfg.app.export_dir).exists()  # nothing written before the user decides
    confirmed = named(h, h.export.confirm(*args, result["seen"], None))
    assert zip_names(confirmed) == ["export_meta.json", "test.csv", "train.jsonl", "val.jsonl"]


def test_export_anyway_needs_the_scan_this_session_saw(h, cfg):
    """The API's export_anyway exported without a name and without the identifier confirmation."""
    review_cases(h, rationale="Spoke to Mr. John Smith: level 2.")
    args = (list(ACTIONS), 0, False, 0.1, False, "Nurse A")
    with pytest.raises(gr.Error, match="press 'Export for Stage 2' first"):
        h.export.confirm(*args, None, None)
    seen = named(h, h.export.start(*args, None))["seen"]
    save(h, predicted(h, "level 3: new case")["shown"], rationale="Also saw Mrs. Brown: level 2.")
    with pytest.raises(gr.Error, match="changed since"):
        h.export.confirm(*args, seen, None)  # a new finding since the scan: look again
    with pytest.raises(gr.Error, match="Reviewer"):
        h.export.start(list(ACTIONS), 0, False, 0.1, False, "", None)
    assert not Path(cfg.app.export_dir).exists()


def test_export_with_nothing_to_export(h):
    with pytest.raises(gr.Error, match="no current review matches"):
        h.export.start(["accepted"], 0, False, 0.1, False, "Nurse A", None)


@pytest.mark.slow
def test_exports_are_not_served_and_export_anyway_needs_a_scan(launched_app, tmp_path):
    """Exports were served at /gradio_api/file=r2d_exports/export-.../train.jsonl and the API's
    export_anyway skipped the identifier confirmation."""
    import httpx
    from gradio_client import Client

    client = Client(launched_app.url, verbose=False, download_files=str(tmp_path / "downloads"))
    for k, case in enumerate(("level 2: chest pain", "level 4: ankle sprain", "level 5: sore throat")):
        client.predict(case, "Nurse C", api_name="/predict")
        client.predict("Nurse C", str(k + 2), f"Seen: level {k + 2}.", None, "", {}, case, api_name="/submit")
    with pytest.raises(Exception, match="Export for Stage 2' first"):
        Client(launched_app.url, verbose=False).predict(
            list(ACTIONS), 0, False, 0.1, False, "Nurse C", api_name="/export_anyway"
        )
    assert not (launched_app.tmp_path / "exports").exists()
    outputs = client.predict(list(ACTIONS), 0, False, 0.1, False, "Nurse C", api_name="/export")
    [downloaded] = [o for o in outputs if isinstance(o, list) and o and str(o[0]).endswith(".zip")][0]
    import zipfile

    assert "train.jsonl" in zipfile.ZipFile(downloaded).namelist()  # served from the app's own cache folder
    assert list((launched_app.tmp_path / "gradio").glob("r2d-download-*/export-*.zip"))
    [folder] = (launched_app.tmp_path / "exports").iterdir()
    for path in (folder / "train.jsonl", folder / "export_meta.json"):
        response = httpx.get(f"{launched_app.url}gradio_api/file={path}")
        assert response.status_code in (403, 404) and "question" not in response.text
    assert launched_app.external == []

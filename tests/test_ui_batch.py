"""The batch panel (ui/batch.py): upload, column choice, the queue in order, resume after a restart."""

from __future__ import annotations

import stat
from pathlib import Path

import gradio as gr
import pytest
from ui_kit import named, predicted, save, write_cases

from r2d.review import session as rv
from r2d.review.store import ACTIONS, ReviewStore
from ui import batch as ui_batch
from ui import server
from ui.blocks import build_app

pytestmark = pytest.mark.usefixtures("gradio_temp")


def test_upload_predicts_and_opens_a_resumable_queue(h, tmp_path, fake_predictor, store, cfg):
    path = write_cases(tmp_path / "cases.jsonl", ["level 1 a", "level 2 b", "level 3 c"], ids=["A-1", "A-2", "A-3"])
    first = named(h, h.batch.upload(str(path), "Nurse A", None))
    batch_id = first["queue"]["batch_id"]
    assert first["queue"]["position"] == 0 and first["queue_md"].startswith("Case 1 of 3")
    assert first["shown"].batch_id == batch_id and first["case"] == "level 1 a" and "A\\-1" in first["case_md"]
    assert fake_predictor.calls["predict_batch"] >= 1
    # A saves and opens the next case to review
    second = save(h, first["shown"], label="1", rationale=first["rationale"], queue=first["queue"])
    assert second["queue"]["position"] == 1 and "1 reviewed" in second["queue_md"]
    assert second["status"].startswith("✓ Saved review #1")
    back = named(h, h.batch.step(second["queue"], -1, "Nurse A", None))
    assert back["status"].startswith("You reviewed this case")
    # a restart: new handlers on the same database, the browser sends its saved queue position
    restarted = build_app(fake_predictor, ReviewStore(cfg.app.db_path), cfg, examples=[])
    restored = named(restarted, restarted.batch.restore(second["queue"], "Nurse A", None))
    assert restored["reviewer"] == "Nurse A" and restored["queue"] == second["queue"]
    assert restored["case"] == "level 2 b"
    # opening the batch again jumps to the first unreviewed case
    assert named(restarted, restarted.batch.resume(batch_id, "Nurse A", None))["queue"]["position"] == 1


def test_least_confident_order_reviews_the_uncertain_case_first(h, tmp_path, store):
    path = write_cases(tmp_path / "cases.jsonl", ["level 1 a", "unclear level 2 b", "level 3 c"])
    first = named(h, h.batch.upload(str(path), "Nurse A", None, "least_confident"))
    assert first["case"] == "unclear level 2 b" and first["queue"]["order"] == "least_confident"
    assert first["order"] == "least_confident"
    prediction = store.batch_items(first["queue"]["batch_id"])[1].prediction
    assert prediction["rationale_probabilities"]["2"] == pytest.approx(0.6)  # stored for the disagreement order
    second = save(h, first["shown"], label="2", rationale=first["rationale"], queue=first["queue"])
    assert second["case"] == "level 1 a" and second["queue"]["order"] == "least_confident"
    undone = named(h, h.review.undo("Nurse A", second["queue"], None))
    assert undone["case"] == "unclear level 2 b" and undone["queue"]["position"] == 0  # back where it sits
    as_uploaded = named(h, h.batch.reorder(undone["queue"], "upload", "Nurse A", None))
    assert as_uploaded["case"] == "level 1 a" and as_uploaded["queue"]["order"] == "upload"
    assert h.batch.reorder({}, "least_confident", "Nurse A", None) == {}  # no batch open: nothing to reorder


def test_batch_skip_advances_and_undo_goes_back_to_the_case(h, tmp_path, store):
    path = write_cases(tmp_path / "cases.jsonl", ["level 1 a", "level 2 b", "level 3 c"])
    first = named(h, h.batch.upload(str(path), "Nurse A", None))
    second = named(h, h.review.skip(first["shown"], "Nurse A", first["queue"], None))
    assert second["queue"]["position"] == 1 and "1 skipped" in second["queue_md"]
    third = save(h, second["shown"], label="4", rationale="Relabelled: level 4.", queue=second["queue"])
    assert third["queue"]["position"] == 2
    undone = named(h, h.review.undo("Nurse A", third["queue"], None))
    assert undone["queue"]["position"] == 1 and undone["rationale"] == "Relabelled: level 4."
    assert undone["final_label"] == "4" and "0 reviewed" in undone["queue_md"]


def test_after_the_last_case_the_batch_is_complete_and_r_finds_what_is_left(h, tmp_path, store):
    """After the last case there was no 'batch complete' and no 'next unreviewed', and the next
    save's status mixed in another case."""
    path = write_cases(tmp_path / "cases.jsonl", ["level 1 a", "level 2 b", "level 3 c"])
    first = named(h, h.batch.upload(str(path), "Nurse A", None))
    last = named(h, h.batch.step(first["queue"], 2, "Nurse A", None))
    back = save(h, last["shown"], label="3", rationale="Level 3.", queue=last["queue"])
    assert back["queue"]["position"] == 0 and back["status"].startswith("✓ Saved review #1 (edited)")
    assert "You reviewed" not in back["status"] and back["case"] == "level 1 a"  # round to what is left
    skipped = named(h, h.review.skip(back["shown"], "Nurse A", back["queue"], None))
    assert skipped["queue"]["position"] == 1
    todo = named(
        h,
        h.batch.next_unreviewed(h.batch.step(skipped["queue"], 1, "Nurse A", None)[h.batch.ui.queue], "Nurse A", None),
    )
    assert todo["queue"]["position"] == 1  # from the reviewed last case round to the one not skipped
    then = save(h, todo["shown"], label=todo["final_label"], rationale="Seen.", queue=todo["queue"])
    assert then["queue"]["position"] == 0  # only the skipped case is left
    done = save(h, then["shown"], label=then["final_label"], rationale="Seen too.", queue=then["queue"])
    assert (
        done["status"].startswith("✓ Saved review #3")
        and "✓ Batch complete: you have reviewed all 3" in (done["status"])
        and "batch complete: all 3 reviewed" in done["queue_md"]
    )
    assert done["shown"].item_index == 0  # stays on the case just saved
    other = named(h, h.batch.resume(first["queue"]["batch_id"], "Nurse B", None))
    labels = [label for label, _ in other["batch"]["choices"]]
    assert labels[0].endswith("0/3 reviewed by you") and other["queue"]["position"] == 0


def test_blind_review_hides_other_reviewers_until_i_save(h, tmp_path, store):
    path = write_cases(tmp_path / "cases.jsonl", ["level 1 a", "level 2 b"])
    mine = named(h, h.batch.upload(str(path), "Nurse A", None))
    save(h, mine["shown"], label="2", rationale="Nurse A thinks level 2.", comment="A's note", queue=mine["queue"])
    theirs = named(h, h.batch.resume(mine["queue"]["batch_id"], "Nurse B", None))
    assert theirs["queue"]["position"] == 0  # B's queue: the case A reviewed is still B's to do
    assert theirs["rationale"] == theirs["shown"].model_rationale and theirs["final_label"] == "1"
    assert theirs["comment"] == "" and "hidden until you save" in theirs["status"] and "Nurse A" not in theirs["status"]
    after = named(
        h,
        h.batch.step(
            save(h, theirs["shown"], name="Nurse B", label="1", rationale="B: level 1.", queue=theirs["queue"])[
                "queue"
            ],
            -1,
            "Nurse B",
            None,
        ),
    )
    assert "Nurse A chose 2" in after["status"]
    assert sorted((r.reviewer, r.final_label) for r in store.reviewer_reviews()) == [("Nurse A", "2"), ("Nurse B", "1")]
    assert "left out of agreement" not in named(h, h.dashboard.show("Lead", None))["agreement"]
    # save, read, undo: B has seen A's answer; the review B saves next is not blind and agreement leaves it out
    undone = named(h, h.review.undo("Nurse B", after["queue"], None))
    assert "You have seen the other reviewers' answers" in undone["status"]
    save(h, undone["shown"], name="Nurse B", label="2", rationale="B again: level 2.", queue=undone["queue"])
    agreement = named(h, h.dashboard.show("Lead", None))["agreement"]
    assert "no case has been reviewed by two or more" in agreement and "1 review(s) made after" in agreement


def test_queue_without_a_batch_and_a_stale_or_forged_saved_queue(h):
    with pytest.raises(gr.Error, match="open a batch first"):
        h.batch.step({}, 1, "Nurse A", None)
    for saved in ({"batch_id": "b-gone", "position": 3}, ["not", "a", "dict"], {"batch_id": 5}):
        restored = named(h, h.batch.restore(saved, "", None))
        assert restored["queue"] == {} and restored["queue_md"] == ""
        assert restored["reviewer"] == gr.skip()  # no saved name: a name being typed is not wiped


def test_broken_upload_names_file_and_line_in_one_message(h, tmp_path, store):
    path = tmp_path / "cases.csv"
    path.write_text('question\n"fine"\n"broken","row"\n')
    refused = named(h, h.batch.upload(str(path), "Nurse A", None))
    assert set(refused) == {"up_status", "up_map", "up_pending"}  # no case, queue or editor output touched
    assert refused["up_status"].startswith("⚠ **Not uploaded: " + rv.plain("cases.csv:3: the row has a different"))
    assert refused["up_map"]["visible"] is False and store.list_batches() == []


def test_a_semicolon_file_without_a_case_column_is_read_once_its_columns_are_chosen(h, tmp_path, store, monkeypatch):
    """A semicolon CSV naming no case column was refused with a message about quotes and commas."""
    cache = tmp_path / "gradio" / "77aa"
    cache.mkdir(parents=True)
    path = cache / "notes.csv"
    path.write_text("mrn;note;ward\nA-1;level 2: chest pain, BP 88/50;ED\nA-2;level 4: ankle sprain;ED\n")
    asked = named(h, h.batch.upload(str(path), "Nurse A", None))
    assert rv.plain("notes.csv:1: no case text column") in asked["up_status"] and asked["up_map"]["visible"] is True
    assert asked["up_case_col"]["choices"] == ["mrn", "note", "ward"] and asked["up_pending"] == str(path)
    assert asked["up_id_col"]["value"] == ui_batch.NO_ID_COLUMN and path.exists()  # kept until the columns are chosen
    with pytest.raises(gr.Error, match="choose the column that holds the case text"):
        h.batch.upload_mapped(str(path), None, None, "Nurse A", None)
    opened = named(h, h.batch.upload_mapped(str(path), "note", "mrn", "Nurse A", None))
    assert opened["case"] == "level 2: chest pain, BP 88/50" and "upload id A\\-1" in opened["case_md"]
    assert opened["up_status"] == "✓ 2 case(s) uploaded from notes\\.csv." and opened["up_map"]["visible"] is False
    assert not path.exists() and len(store.list_batches()) == 1
    for gone in (str(path), str(tmp_path / "elsewhere.csv"), None):  # read once; never a file outside the cache
        with pytest.raises(gr.Error, match="upload the file again"):
            h.batch.upload_mapped(gone, "note", None, "Nurse A", None)


def test_an_upload_is_deleted_once_read_and_downloads_are_private(h, tmp_path, monkeypatch, store):
    cache = tmp_path / "gradio"
    (cache / "0f3c").mkdir(parents=True)
    path = write_cases(cache / "0f3c" / "cases.jsonl", ["level 2: chest pain", "level 4: sprain"])
    named(h, h.batch.upload(str(path), "Nurse A", None))
    assert len(store.list_batches()) == 1 and not path.exists() and not path.parent.exists()
    broken = cache / "9a9a" / "broken.csv"
    broken.parent.mkdir()
    broken.write_text("id,question\n1,\n")
    refused = named(h, h.batch.upload(str(broken), "Nurse A", None))
    assert rv.plain("the case text (question) is empty") in refused["up_status"]
    assert not broken.exists()  # refused, and deleted all the same
    assert server.CACHE_CLEANUP_S[1] <= 3600
    save(h, predicted(h)["shown"])
    save(h, predicted(h, "level 4: ankle sprain")["shown"], label="4", rationale="Sprain: level 4.")
    [zipped] = named(h, h.export.start(list(ACTIONS), 0, False, 0.1, False, "Nurse A", None))["files"]
    assert Path(zipped).is_relative_to(cache) and stat.S_IMODE(Path(zipped).stat().st_mode) == 0o600

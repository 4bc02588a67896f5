"""r2d.review.jobs: a real training.improve worker process started, polled to the end, cancelled, and found again
after an app restart; nothing about a run lives only in memory."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from r2d.errors import TrainingRunError
from r2d.review.jobs import MIN_COMPARED_CASES, ImproveRuns, plan_run

worker = pytest.mark.slow  # a test that starts a Python process importing torch


def wait_for(runs: ImproveRuns, run_id: str, states: tuple[str, ...], timeout_s: float = 240.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = runs.status(run_id)
        if status.state in states:
            return status
        time.sleep(0.5)
    raise AssertionError(
        f"run {run_id} still {runs.status(run_id).state} after {timeout_s} s:\n{runs.status(run_id).log_tail}"
    )


@worker
def test_a_run_goes_from_start_to_a_comparison(tmp_path, current_model, original_data, reviewed_export):
    runs = ImproveRuns(tmp_path / "runs")
    run_id = runs.start(current_model, reviewed_export, original_data, steps=3)
    with pytest.raises(TrainingRunError, match="still running"):
        runs.start(current_model, reviewed_export, original_data, steps=3)  # one at a time
    status = wait_for(runs, run_id, ("done", "failed", "lost"))
    assert status.state == "done", status.log_tail
    assert status.fraction == 1.0 and status.max_steps == 3
    assert set(status.comparison["sets"]) == {"reviewed cases held out", "public test split"}
    assert runs.new_model_dir(run_id) == tmp_path / "runs" / run_id / "model"
    # a restarted app sees the same run from its folder alone
    again = ImproveRuns(tmp_path / "runs")
    assert [s.run_id for s in again.runs()] == [run_id] and again.status(run_id).state == "done"


@worker
def test_cancel_stops_the_worker_and_the_run_is_never_offered(tmp_path, current_model, original_data, reviewed_export):
    runs = ImproveRuns(tmp_path / "runs")
    run_id = runs.start(current_model, reviewed_export, original_data, steps=500)
    pid = int((tmp_path / "runs" / run_id / "worker.pid").read_text())
    runs.cancel(run_id)
    assert runs.status(run_id).state == "cancelled"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(TrainingRunError, match="cancelled"):
        runs.new_model_dir(run_id)


@worker
def test_a_killed_worker_is_reported_lost(tmp_path, current_model, original_data, reviewed_export):
    runs = ImproveRuns(tmp_path / "runs")
    run_id = runs.start(current_model, reviewed_export, original_data, steps=500)
    os.killpg(int((tmp_path / "runs" / run_id / "worker.pid").read_text()), signal.SIGKILL)
    status = wait_for(runs, run_id, ("lost",), timeout_s=30)
    assert "exit code" in status.error
    with pytest.raises(TrainingRunError, match="lost"):
        runs.new_model_dir(run_id)


def test_unknown_run_ids_are_refused(tmp_path):
    runs = ImproveRuns(tmp_path)
    for bad in ("improve-nope", "../etc", "x"):
        with pytest.raises(TrainingRunError, match="no run"):
            runs.status(bad)


@worker
def test_an_orphan_of_a_killed_app_still_guards_and_can_be_cancelled(tmp_path, original_data, reviewed_export):
    """After kill -9 and a restart a second run started beside the orphan, and Cancel said
    Cancelled while the orphan ran on. (No torch here: the "worker" is a sleeping Python naming the run.)"""
    import subprocess
    import sys

    from r2d.review import jobs

    out = tmp_path / "runs" / "improve-20260101-000000-abcdef"
    out.mkdir(parents=True)
    orphan = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", "--out", str(out.resolve())], start_new_session=True
    )
    try:
        (out / jobs.PID_FILE).write_text(f"{orphan.pid}\n")
        for _ in range(100):  # the child's command line appears once its exec has run
            if str(out.resolve()) in open(f"/proc/{orphan.pid}/cmdline").read():
                break
            time.sleep(0.05)
        restarted = ImproveRuns(tmp_path / "runs")  # a new app: nothing in memory
        assert restarted.status(out.name).state == "running"
        with pytest.raises(TrainingRunError, match=f"{out.name} is still running"):
            restarted.start(tmp_path, reviewed_export, original_data, 3)
        restarted.cancel(out.name, grace_s=5)
        assert orphan.wait(timeout=10) is not None and restarted.status(out.name).state == "cancelled"
        (out / jobs.PID_FILE).write_text(f"{os.getpid()}\n")  # a reused PID (not this run's worker) is no orphan
        assert ImproveRuns(tmp_path / "runs")._orphan_pid(out) is None
    finally:
        orphan.kill()
        orphan.wait()


def progress_of(tmp_path, *events: dict) -> float:
    """The progress fraction a run folder with these progress.jsonl events shows."""
    out = tmp_path / "improve-20260101-000000-abcdef"
    out.mkdir(exist_ok=True)
    (out / "progress.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (out / "run.json").write_text(json.dumps({"status": "failed" if events[-1]["event"] == "failed" else "running"}))
    return ImproveRuns(tmp_path).status(out.name).fraction


def test_progress_moves_through_training_and_scoring(tmp_path):
    """The bar stood at 95% for the 5.5 minutes of scoring; scoring now advances it by its share."""
    start = {"event": "start", "max_steps": 10, "train_share": 0.4}
    assert progress_of(tmp_path, start, {"event": "train", "step": 5, "max_steps": 10}) == pytest.approx(0.2)
    at = [
        progress_of(
            tmp_path,
            start,
            {"event": "train", "step": 10, "max_steps": 10},
            {"event": "evaluate", "scored": scored, "to_score": 200},
        )
        for scored in (0, 100, 150)
    ]
    assert at == pytest.approx([0.4, 0.7, 0.85])


def test_the_plan_counts_held_out_cases_and_caps_the_test_split(tmp_path, original_data, reviewed_export):
    plan = plan_run(reviewed_export, original_data, 100, 3, step_s=1.5, case_s=0.5)
    assert (plan.held_out, plan.test_cases) == (1, 3) and plan.held_out < MIN_COMPARED_CASES
    assert plan.seconds == pytest.approx(100 * 1.5 + 2 * (1 + 3) * 0.5)
    assert plan_run(reviewed_export, original_data, 100, 0, 1.5, 0.5).test_cases == 5  # 0 = the whole split
    unprepared = plan_run(reviewed_export, tmp_path / "not-yet", 100, 100, 1.5, 0.5)
    assert unprepared.test_cases == 100  # prepared at start; the sample is the size to expect


def test_a_run_model_id_names_the_base_model_and_the_run():
    from r2d.review.jobs import run_model_id

    assert run_model_id("r2d-ktas-small", "run-7") == "r2d-ktas-small+run-7"
    assert run_model_id("r2d-ktas-small+run-7", "run-8") == "r2d-ktas-small+run-8"  # never run on run

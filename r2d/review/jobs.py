"""Background runs of `python -m training.improve` for the app: start, poll, cancel, list.

Pure standard library: the app never imports torch, and a run is another process, so reviewers keep
working while it trains (it gets `threads` torch threads and a lower CPU priority). Everything a run
knows is in its folder (run.json, progress.jsonl, worker.log, comparison.json; see training.improve), so
the app can restart and still show every run; a run whose process is gone without a verdict is "lost".
One run at a time: two would halve each other's speed on a laptop.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from r2d.errors import DatasetSchemaError, TrainingRunError
from r2d.review.export import TRAIN_FILENAME, VAL_FILENAME, is_complete_export

ROOT = Path(__file__).resolve().parents[2]  # the repository: r2d/review/jobs.py
CANCELLED = "CANCELLED"
LOG_FILE = "worker.log"
PID_FILE = "worker.pid"
ACTIVE_FILE = "active_model.json"  # the run whose model the app uses, so a restart keeps using it
# a run folder, as training.improve writes it
RUN_FILE, PROGRESS_FILE, COMPARISON_FILE, MODEL_SUBDIR = "run.json", "progress.jsonl", "comparison.json", "model"
STATES = ("running", "done", "failed", "cancelled", "lost")
SPLITS = ("train", "val", "test")  # the original data: a prepare_data output
# what a run's comparison.json holds for each model and data set, in order: (key, name, higher is better)
COMPARED = (
    ("accuracy", "accuracy", True),
    ("macro_f1", "macro-F1", True),
    ("under_triage_rate", "under-triage", False),
    ("fidelity", "fidelity to the case", True),
    ("critical_named", "critical findings named", True),
    ("bleu", "BLEU vs reference rationale", True),
)
# the metrics that are a share of the cases: each gets a 95% Wilson interval in comparison.json ("intervals")
PROPORTIONS = ("accuracy", "under_triage_rate")
# below this many cases a comparison cannot tell two models apart (an interval spans tens of points): the
# table says so instead of naming a better model
MIN_COMPARED_CASES = 20


@dataclass(frozen=True)
class RunStatus:
    run_id: str
    out_dir: Path
    state: str  # one of STATES
    step: int = 0
    max_steps: int = 0
    phase: str = "starting"  # "starting" | "train" | "evaluate" | "done" | ...
    train_share: float = 0.9  # the part of the run's estimated time that is training (the "start" event)
    scored: int = 0  # cases scored so far in the comparison, of to_score
    to_score: int = 0
    error: str | None = None
    log_tail: str = ""
    comparison: dict[str, Any] | None = None
    run: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        """Progress 0-1: training steps, then cases scored, each weighted by its share of the estimated time."""
        if self.state == "done":
            return 1.0
        train = self.step / self.max_steps if self.max_steps else 0.0
        scored = self.scored / self.to_score if self.to_score else 0.0
        if self.phase == "evaluate":
            train = 1.0
        return min(1.0, self.train_share * train + (1.0 - self.train_share) * scored)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}  # not written yet, or being replaced: the next poll reads it


def _last_events(path: Path) -> dict[str, dict[str, Any]]:
    """The last event of each kind in progress.jsonl ("start", "train", ...), and under "last" the last one."""
    events: dict[str, dict[str, Any]] = {"last": {}}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return events
    for line in lines:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line being written
        events["last"] = events[str(event.get("event"))] = event
    return events


def estimate_seconds(steps: int, cases: int, step_s: float, case_s: float) -> float:
    """A run's expected length: its Stage-2 steps, then both models scoring every compared case."""
    return steps * step_s + 2 * cases * case_s


def _rows(path: Path) -> int:
    """Non-blank lines of a JSONL file (0 when it is absent): a count, without validating every row."""
    try:
        with path.open(encoding="utf-8") as f:
            return sum(1 for line in f if line.strip())
    except OSError:
        return 0


@dataclass(frozen=True)
class RunPlan:
    """What a run will score in its comparison, and how long the whole run should take."""

    held_out: int  # reviewed cases held out from training (the export's val.jsonl), all scored
    test_cases: int  # public test cases scored (a sample of the split when it is larger)
    seconds: float


def run_model_id(model_id: str, run_id: str) -> str:
    """The id reviews record for a run's model: the base model's id with the run's, since the adapter folder
    of every run is called MODEL_SUBDIR and would not say which run it was."""
    return f"{model_id.split('+')[0]}+{run_id}"


def plan_run(
    export_dir: str | Path, data_dir: str | Path, steps: int, test_cases: int, step_s: float, case_s: float
) -> RunPlan:
    """The plan of a run before it starts. A data folder not prepared yet counts as `test_cases` test rows
    (KTAS's test split is larger than the default sample)."""
    held_out = _rows(Path(export_dir) / VAL_FILENAME)
    split = _rows(Path(data_dir) / "test.jsonl") or test_cases
    tested = min(split, test_cases) if test_cases else split
    return RunPlan(held_out, tested, estimate_seconds(steps, held_out + tested, step_s, case_s))


def _tail(path: Path, lines: int = 20) -> str:
    try:
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - 16384))
            return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-lines:])
    except OSError:
        return ""


def check_inputs(export_dir: str | Path, data_dir: str | Path) -> None:
    """What a run reads must be there before it starts. Raises DatasetSchemaError saying what to do."""
    if not (Path(export_dir) / TRAIN_FILENAME).is_file():
        raise DatasetSchemaError(
            f"{Path(export_dir).name} holds no train.jsonl; export the reviews first (the "
            "app's Export tab or python -m training.export_reviews)"
        )
    if not is_complete_export(Path(export_dir)):
        raise DatasetSchemaError(
            f"{Path(export_dir).name} is not a finished export (no export_meta.json, written "
            "last): export the reviews again"
        )
    missing = [f"{split}.jsonl" for split in SPLITS if not (Path(data_dir) / f"{split}.jsonl").is_file()]
    if missing:
        raise DatasetSchemaError(
            f"the original data folder {data_dir} lacks {', '.join(missing)}; prepare it first, "
            "e.g. python -m training.prepare_data ktas --source ../shared/data/ktas/data.csv "
            "--out data/ktas"
        )


class ImproveRuns:
    """The runs under one folder; the processes this app started are watched directly."""

    def __init__(self, root: str | Path, python: str = sys.executable, threads: int = 1) -> None:
        self.root = Path(root)
        self.python, self.threads = python, threads
        self._procs: dict[str, subprocess.Popen] = {}

    def _running(self) -> list[str]:
        """Runs whose worker is alive: started by this app, or by an app that was killed or restarted (read from
        each run's folder: the guard must survive a restart, or a second run starts beside the orphan)."""
        mine = [run_id for run_id, proc in self._procs.items() if proc.poll() is None]
        if not self.root.is_dir():
            return mine
        for out in sorted(self.root.glob("improve-*")):
            if out.name in self._procs or (out / CANCELLED).exists():
                continue
            if _read_json(out / RUN_FILE).get("status") not in ("done", "failed") and self._orphan_pid(out):
                mine.append(out.name)
        return mine

    @staticmethod
    def _orphan_pid(out: Path) -> int | None:
        """The PID in a run's folder if that process still runs this run's worker (its command line names the
        run's folder, so a reused PID is not mistaken for it), else None."""
        try:
            pid = int((out / PID_FILE).read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        return pid if str(out.resolve()).encode() in cmdline else None

    def start(
        self,
        model_dir: str | Path,
        export_dir: str | Path,
        data_dir: str | Path,
        steps: int,
        lora: bool = True,
        test_cases: int = 0,
    ) -> str:
        """Start a run in the background (its comparison scores `test_cases` public test cases, 0 = all); its
        id. Raises TrainingRunError when one is already running."""
        if self._running():
            raise TrainingRunError(f"run {self._running()[0]} is still running; wait for it or cancel it first")
        check_inputs(export_dir, data_dir)
        run_id = time.strftime("improve-%Y%m%d-%H%M%S-", time.gmtime()) + secrets.token_hex(3)
        out = self.root / run_id
        out.mkdir(parents=True, mode=0o700)
        cmd = [
            self.python,
            "-m",
            "training.improve",
            "--model",
            str(Path(model_dir).resolve()),
            "--export",
            str(Path(export_dir).resolve()),
            "--data",
            str(Path(data_dir).resolve()),
            "--out",
            str(out.resolve()),
            "--steps",
            str(steps),
            "--test-cases",
            str(test_cases),
        ]
        cmd += [] if lora else ["--full"]
        env = {
            **os.environ,
            "OMP_NUM_THREADS": str(self.threads),
            "MKL_NUM_THREADS": str(self.threads),
            "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": str(ROOT),
        }
        with (out / LOG_FILE).open("wb") as log:
            # its own session, so cancel() stops the whole process group; nice so reviewers stay responsive
            nice = ["nice", "-n", "10"] if shutil.which("nice") else []
            proc = subprocess.Popen(
                nice + cmd,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        self._procs[run_id] = proc
        (out / PID_FILE).write_text(f"{proc.pid}\n")
        return run_id

    def _alive(self, run_id: str, out: Path) -> bool:
        proc = self._procs.get(run_id)
        if proc is not None:
            return proc.poll() is None
        return self._orphan_pid(out) is not None  # started before this app restarted

    def status(self, run_id: str) -> RunStatus:
        """Where a run stands, from its folder (and its process, if this app started it)."""
        out = self._dir(run_id)
        run = _read_json(out / RUN_FILE)
        events = _last_events(out / PROGRESS_FILE)
        train, last, start = events.get("train", {}), events["last"], events.get("start", {})
        proc = self._procs.get(run_id)
        if (out / CANCELLED).exists():
            state = "cancelled"
        elif run.get("status") in ("done", "failed"):
            state = run["status"]
        else:
            state = "running" if self._alive(run_id, out) else "lost"
        comparison = _read_json(out / COMPARISON_FILE) if state == "done" else None
        error = run.get("error") or (
            f"the worker stopped without a result (exit code {proc.returncode}); see its log"
            if state == "lost" and proc is not None
            else None
        )
        scoring = events.get("evaluate", {})
        return RunStatus(
            run_id,
            out,
            state,
            int(train.get("step", 0)),
            int(train.get("max_steps", 0) or start.get("max_steps", 0)),
            str(last.get("event", "starting")),
            float(start.get("train_share", 0.9)),
            int(scoring.get("scored", 0)),
            int(scoring.get("to_score", 0)),
            error,
            _tail(out / LOG_FILE),
            comparison or None,
            run,
        )

    def cancel(self, run_id: str, grace_s: float = 10.0) -> None:
        """Stop a running run (SIGTERM, then SIGKILL); it is marked cancelled and never offered to switch to."""
        out = self._dir(run_id)
        (out / CANCELLED).write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + "\n")
        proc = self._procs.get(run_id)
        if proc is None:  # an orphan of an earlier app: stop its process group too, not only mark it
            pid = self._orphan_pid(out)
            if pid is not None:
                _stop_group(pid, lambda: self._orphan_pid(out) is None, grace_s)
            return
        if proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def runs(self) -> list[RunStatus]:
        """Every run under the folder, newest first."""
        if not self.root.is_dir():
            return []
        ids = sorted(
            (p.name for p in self.root.iterdir() if p.is_dir() and p.name.startswith("improve-")), reverse=True
        )
        return [self.status(run_id) for run_id in ids]

    def new_model_dir(self, run_id: str) -> Path:
        """The finished run's model directory. Raises TrainingRunError unless the run is done."""
        status = self.status(run_id)
        if status.state != "done":
            raise TrainingRunError(f"run {run_id} is {status.state}; only a finished run's model can be used")
        return status.out_dir / MODEL_SUBDIR

    def remember(self, run_id: str) -> None:
        """Keep run_id as the model in use across restarts. Raises TrainingRunError unless the run is done."""
        self.new_model_dir(run_id)
        tmp = self.root / f".{ACTIVE_FILE}.tmp"
        tmp.write_text(json.dumps({"run_id": run_id}) + "\n", encoding="utf-8")
        os.replace(tmp, self.root / ACTIVE_FILE)

    def remembered(self) -> str | None:
        """The run remembered as in use, while its model is still there; else None."""
        run_id = _read_json(self.root / ACTIVE_FILE).get("run_id")
        if not isinstance(run_id, str):
            return None
        try:
            self.new_model_dir(run_id)
        except TrainingRunError:
            return None
        return run_id

    def forget(self) -> None:
        """Back to the model the app was started with, now and after a restart."""
        (self.root / ACTIVE_FILE).unlink(missing_ok=True)

    def _dir(self, run_id: str) -> Path:
        out = self.root / run_id
        if not run_id.startswith("improve-") or "/" in run_id or not out.is_dir():
            raise TrainingRunError(f"no run {run_id!r}")
        return out


def _stop_group(pid: int, gone: Callable[[], bool], grace_s: float) -> None:
    """SIGTERM a worker's process group (it leads its own session), then SIGKILL after grace_s."""
    try:
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while not gone() and time.monotonic() < deadline:
            time.sleep(0.1)
        if not gone():
            os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _with_interval(row: dict[str, Any], which: str, key: str) -> str:
    value, interval = row[which][key], row.get("intervals", {}).get(which, {}).get(key)
    return f"{value:.3f}" if not interval else f"{value:.3f} ({interval[0]:.2f}–{interval[1]:.2f})"


def _set_name(name: str, row: dict[str, Any]) -> str:
    sampled = f", a sample of {row['n_total']}" if row.get("n_total", row["n"]) != row["n"] else ""
    return f"{name} (n={row['n']}{sampled})"


def too_few_note(comparison: dict[str, Any]) -> str:
    """A warning naming each compared set with fewer than MIN_COMPARED_CASES cases, else ""."""
    small = [f"{name} (n={row['n']})" for name, row in comparison["sets"].items() if row["n"] < MIN_COMPARED_CASES]
    if not small:
        return ""
    return (
        f"⚠ Too few cases to compare on {' and '.join(small)}: with fewer than {MIN_COMPARED_CASES}, a "
        "difference (or a tie) says nothing about which model is better; review and export more cases first."
    )


def comparison_table(comparison: dict[str, Any]) -> str:
    """Markdown table of a run's comparison.json: one row per (data set, metric), current vs new with the 95%
    interval where the run gave one, and which is better (ties say "same"; a set with fewer than
    MIN_COMPARED_CASES cases says "too few cases"; a metric a set cannot give is left out). A warning line
    comes first when a set is that small."""
    lines = ["| data | metric | current | new | better |", "| --- | --- | --- | --- | --- |"]
    for name, row in comparison["sets"].items():
        for key, label, higher in COMPARED:
            old, new = row["old"].get(key), row["new"].get(key)
            if old is None or new is None:
                continue
            better = "same" if abs(new - old) < 1e-9 else ("new" if (new > old) == higher else "current")
            if row["n"] < MIN_COMPARED_CASES:
                better = "too few cases"
            lines.append(
                f"| {_set_name(name, row)} | {label} | {_with_interval(row, 'old', key)} | "
                f"{_with_interval(row, 'new', key)} | {better} |"
            )
    note = too_few_note(comparison)
    return "\n".join(([note, ""] if note else []) + lines)

"""Stage 1 -> Stage 2 through the command lines, as the README runs them (slow).

One run on tiny hand-written data plus a nurse-review export (the feedback loop), and one on the public
KTAS data prepared by training.prepare_data (needs ../shared/data).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from r2d.config import ModelConfig
from r2d.data import load_examples, write_examples
from r2d.model.artifacts import read_model_meta
from r2d.model.modeling import load_model_and_tokenizer
from r2d.model.scoring import score_labels
from r2d.prompts import predict_prompt
from r2d.review.export import export_stage2_dataset
from training import prepare_data, stage1, stage2
from training.build.run import TRAIN_LOG_FILENAME

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
TINY_CONFIG = ROOT / "training" / "configs" / "tiny_cpu.json"
KTAS_CONFIG = ROOT / "training" / "configs" / "ktas_cpu.json"


def _data_flags(train_files, val_files):
    return [
        "--set",
        f"data.train_files={json.dumps([str(p) for p in train_files])}",
        "--set",
        f"data.val_files={json.dumps([str(p) for p in val_files])}",
    ]


def _nurse_export(store, make_review, out, examples):
    for i, e in enumerate(examples):
        store.submit(
            make_review(
                f"s{i}",
                reviewer="nurse A",
                case_id=f"c{i}",
                case_text=e.case_text,
                model_id="tiny",
                model_label=e.label,
                model_rationale="draft",
                model_probabilities={},
                final_label=e.label,
                final_rationale=e.rationale + " Reviewed.",
                rating=None,
                comment="",
                consistency_label=None,
                time_on_task_s=None,
            )
        )
    return export_stage2_dataset(store, out, val_fraction=0.2, seed=0)


def _assert_loadable(model_dir):
    model = AutoModelForSeq2SeqLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    meta = read_model_meta(model_dir)
    scores = score_labels(model, tokenizer, [predict_prompt("adult, chest pain, HR 120")], meta.label_set, 64, 4)
    assert scores[0].best in meta.label_set
    assert abs(sum(scores[0].probabilities) - 1.0) < 1e-5


def _assert_the_app_loader_reads(model_dir, label_set):
    loaded = load_model_and_tokenizer(ModelConfig(name_or_path=str(model_dir), quantization="none", device="cpu"))
    assert loaded.meta.label_set == tuple(label_set)


def test_stage1_then_stage2_with_a_nurse_export(tmp_path, tiny_examples, store, make_review, ktas_labels):
    """Also test_export's Stage-2-on-an-export check: the export's rows train Stage 2, the model describes itself."""
    train = write_examples(tmp_path / "train.jsonl", tiny_examples * 4)
    val = write_examples(tmp_path / "val.jsonl", tiny_examples)
    export = _nurse_export(store, make_review, tmp_path / "export", tiny_examples * 2)
    assert all(e.rationale_source == "nurse_post_processed" for e in load_examples(export.files["train"]))
    s1, s2 = tmp_path / "s1", tmp_path / "s2"
    assert stage1.main(["--config", str(TINY_CONFIG), "--out", str(s1), *_data_flags([train], [val])]) == 0
    assert (
        stage2.main(
            [
                "--config",
                str(TINY_CONFIG),
                "--init",
                str(s1),
                "--out",
                str(s2),
                *_data_flags([train, export.files["train"]], [val]),
                "--set",
                "stage2.confidence_gated=true",
                "--set",
                "stage2.cycle_loss_weight=0.1",
            ]
        )
        == 0
    )
    meta = read_model_meta(s2)
    assert meta.label_set == tuple(ktas_labels)
    assert meta.extra["train_examples"] == 20 + export.counts["train"]
    losses = [e["loss"] for e in json.loads((s2 / TRAIN_LOG_FILENAME).read_text())["history"] if "loss" in e]
    assert losses and all(x == x and abs(x) != float("inf") for x in losses)
    _assert_loadable(s2)
    _assert_the_app_loader_reads(s2, ktas_labels)


def test_torchrun_ddp_on_cpu_trains_once(tmp_path, tiny_examples):
    """Two CPU ranks (gloo) share one run: the Trainer's own DDP, not two copies of the training."""
    train = write_examples(tmp_path / "train.jsonl", tiny_examples * 4)
    val = write_examples(tmp_path / "val.jsonl", tiny_examples)
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "-m",
        "training.stage2",
        "--config",
        str(TINY_CONFIG),
        "--out",
        str(out),
        *_data_flags([train], [val]),
        "--set",
        "stage2.cycle_loss_weight=0.1",
        "--log-level",
        "WARNING",
    ]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("stage 2 (r2d): best") == 1  # printed by rank 0 only
    history = json.loads((out / TRAIN_LOG_FILENAME).read_text())["history"]
    # 20 examples split over 2 ranks, 4 per rank and step: an epoch is ceil(10 / 4) = 3 steps, so 6 steps
    # are 2 epochs (one process would need 5 steps per epoch: 1.2 epochs)
    assert max(e["epoch"] for e in history if "loss" in e) == pytest.approx(2.0)
    _assert_loadable(out)


@pytest.mark.shared_data
def test_ktas_short_run_with_the_readme_commands(tmp_path, shared_data, ktas_labels):
    data = tmp_path / "data" / "ktas"
    assert prepare_data.main(["ktas", "--source", str(shared_data / "ktas" / "data.csv"), "--out", str(data)]) == 0
    files = _data_flags([data / "train.jsonl"], [data / "val.jsonl"])
    short = ["--set", "optim.max_steps=4", "--set", "optim.eval_steps=4"]
    s1, s2 = tmp_path / "s1", tmp_path / "s2"
    assert stage1.main(["--config", str(KTAS_CONFIG), "--out", str(s1), *files, *short]) == 0
    assert stage2.main(["--config", str(KTAS_CONFIG), "--init", str(s1), "--out", str(s2), *files, *short]) == 0
    meta = read_model_meta(s2)
    assert meta.label_set == tuple(ktas_labels)
    assert meta.task == "ktas-triage" and meta.ordinal  # from prepare_data's manifest
    _assert_loadable(s2)

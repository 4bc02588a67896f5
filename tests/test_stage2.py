"""training.stage2: Reason2Decide, the SFT/DSS baselines, open label sets, LoRA and QLoRA on tiny data."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import itertools
import json
import math
from dataclasses import replace
from types import SimpleNamespace

import pytest
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from r2d.config import ModelConfig
from r2d.data import write_examples
from r2d.errors import DatasetSchemaError
from r2d.model.artifacts import read_model_meta
from r2d.model.modeling import load_model_and_tokenizer
from r2d.model.scoring import score_labels
from r2d.prompts import predict_prompt
from training.build.run import TRAIN_LOG_FILENAME
from training.method.trainer import CHECKPOINT_SUBDIR
from training.stage2 import main, train_stage2

HAS_BNB = importlib.util.find_spec("bitsandbytes") is not None


def history(out):
    return json.loads((out / TRAIN_LOG_FILENAME).read_text())["history"]


def test_r2d_from_a_stage1_dir(tmp_path, data_files, tiny_model_dir, ktas_labels, tiny_config):
    out = tmp_path / "s2"
    result = train_stage2(tiny_config(*data_files), str(tiny_model_dir), out)
    assert result.metric_name == "eval_macro_f1" and 0.0 <= result.best_metric <= 1.0
    assert not (out / CHECKPOINT_SUBDIR).exists() and (out / "model.safetensors").is_file()
    log = history(out)
    train_entries = [e for e in log if "loss" in e]
    assert {"alpha", "sampling_probability", "used_predicted_fraction", "predict_loss", "explain_loss"} <= set(
        train_entries[-1]
    )
    assert train_entries[-1]["sampling_probability"] > 0  # sampling started within the 6 tiny steps
    f1 = {e["step"]: e["eval_macro_f1"] for e in log if "eval_macro_f1" in e}
    assert result.best_metric == max(f1.values())
    meta, init = read_model_meta(out), read_model_meta(tiny_model_dir)
    assert meta.label_set == tuple(ktas_labels)
    assert (meta.task, meta.ordinal, meta.label_names) == (init.task, init.ordinal, init.label_names)
    assert meta.extra["method"] == "r2d" and meta.extra["closed_label_set"]


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory, tiny_examples, tiny_model_dir, tiny_config_file):
    """One SFT run (2 steps) through the CLI, on examples without rationales: SFT reads only the predict task."""
    d = tmp_path_factory.mktemp("sft")
    bare = write_examples(d / "bare.jsonl", [replace(e, rationale="") for e in tiny_examples])
    out = d / "cli"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(
            [
                "--config",
                str(tiny_config_file),
                "--init",
                str(tiny_model_dir),
                "--out",
                str(out),
                "--set",
                f'data.train_files=["{bare}"]',
                "--set",
                f'data.val_files=["{bare}"]',
                "--set",
                "stage2.method=sft",
                "--set",
                "optim.max_steps=2",
                "--log-level",
                "WARNING",
            ]
        )
    return SimpleNamespace(code=code, printed=printed.getvalue(), out=out)


def test_the_cli_runs_sft_which_needs_no_rationales(sft_run):
    assert sft_run.code == 0 and "stage 2 (sft): best eval_macro_f1=" in sft_run.printed
    train_entries = [e for e in history(sft_run.out) if "loss" in e]
    assert max(e["step"] for e in train_entries) == 2
    assert "predict_loss" in train_entries[-1]
    assert not {"explain_loss", "sampling_probability"} & set(train_entries[-1])
    assert read_model_meta(sft_run.out).extra["method"] == "sft"


def test_r2d_needs_rationales(tmp_path, tiny_examples, tiny_model_dir, tiny_config):
    bare = write_examples(tmp_path / "bare.jsonl", [replace(e, rationale="") for e in tiny_examples])
    with pytest.raises(DatasetSchemaError, match="no rationale"):
        train_stage2(tiny_config(bare, bare), str(tiny_model_dir), tmp_path / "r2d")


@pytest.mark.slow  # its own Trainer run (~1 s idle, 2.5-3 s on a loaded 2-core machine)
def test_dss_logs_both_tasks_and_never_samples(tmp_path, data_files, tiny_model_dir, tiny_config):
    out = tmp_path / "dss"
    train_stage2(tiny_config(*data_files, "stage2.method=dss"), str(tiny_model_dir), out)
    entry = [e for e in history(out) if "loss" in e][-1]
    assert {"predict_loss", "explain_loss"} <= set(entry) and "sampling_probability" not in entry
    assert read_model_meta(out).extra["method"] == "dss"


def test_labels_outside_the_label_set_are_rejected(tmp_path, tiny_examples, data_files, tiny_model_dir, tiny_config):
    train, _ = data_files
    val = write_examples(tmp_path / "odd.jsonl", [replace(tiny_examples[0], label="6")])
    with pytest.raises(DatasetSchemaError, match=r"\['6'\] are not in the label set"):
        train_stage2(tiny_config(train, val), str(tiny_model_dir), tmp_path / "s2")


@pytest.mark.slow  # its own Trainer run (~1 s idle, 2.5-3 s on a loaded 2-core machine)
def test_open_label_set_generates_and_stores_no_label_set(
    tmp_path, tiny_examples, data_files, tiny_model_dir, tiny_config
):
    # more distinct answers than MAX_CLOSED_LABELS (64): free text, as MedReason's and MedMCQA's are
    answers = [" ".join(digits) for digits in itertools.product("12345", repeat=3)][:65]
    cases = [replace(tiny_examples[i % len(tiny_examples)], label=answer) for i, answer in enumerate(answers)]
    train = write_examples(tmp_path / "open_train.jsonl", cases)
    out = tmp_path / "open"
    result = train_stage2(
        tiny_config(train, data_files[1], "data.label_set=[]", "optim.max_steps=4"), str(tiny_model_dir), out
    )
    assert 0.0 <= result.best_metric <= 1.0
    meta = read_model_meta(out)
    assert meta.label_set == () and meta.extra["closed_label_set"] is False


# peft 0.21 reads a property that transformers 5.24 deprecates (r2d.model.modeling.quiet_peft_deprecations silences the
# same message)
@pytest.mark.slow  # its own Trainer run (~1 s idle, 2.5-3 s on a loaded 2-core machine)
@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")
def test_lora_saves_an_adapter_that_reloads_on_its_base(tmp_path, data_files, tiny_model_dir, ktas_labels, tiny_config):
    from peft import PeftModel

    out = tmp_path / "lora"
    train_stage2(tiny_config(*data_files, "adapter.use_lora=true", "optim.max_steps=3"), str(tiny_model_dir), out)
    adapter_cfg = json.loads((out / "adapter_config.json").read_text())
    assert adapter_cfg["base_model_name_or_path"] == str(tiny_model_dir.resolve())
    assert (out / "adapter_model.safetensors").is_file() and not (out / "model.safetensors").exists()
    meta = read_model_meta(out)
    assert meta.extra["adapter"] is True and meta.extra["base_model"] == str(tiny_model_dir.resolve())
    model = PeftModel.from_pretrained(
        AutoModelForSeq2SeqLM.from_pretrained(adapter_cfg["base_model_name_or_path"]), out
    )
    tokenizer = AutoTokenizer.from_pretrained(out)
    scores = score_labels(model, tokenizer, [predict_prompt("chest pain, BP 80/40")], ktas_labels, 64, 4)
    assert scores[0].best in ktas_labels
    # the app's loader puts the adapter on the base it names
    loaded = load_model_and_tokenizer(
        ModelConfig(name_or_path=meta.extra["base_model"], quantization="none", device="cpu", adapter_path=str(out))
    )
    assert loaded.meta.label_set == tuple(ktas_labels)


@pytest.mark.slow  # its own Trainer run (~1 s idle, 2.5-3 s on a loaded 2-core machine)
@pytest.mark.skipif(not HAS_BNB, reason="bitsandbytes is not installed")
def test_qlora_on_cpu_saves_an_adapter(tmp_path, data_files, tiny_model_dir, tiny_config):
    out = tmp_path / "qlora"
    result = train_stage2(
        tiny_config(*data_files, "adapter.use_lora=true", "adapter.quantize_base_4bit=true", "optim.max_steps=3"),
        str(tiny_model_dir),
        out,
    )
    assert (out / "adapter_config.json").is_file() and not (out / "model.safetensors").exists()
    assert result.global_step == 3
    losses = [e["loss"] for e in history(out) if "loss" in e]
    assert losses and all(math.isfinite(x) and x > 0 for x in losses)  # logged unfiltered: a NaN would show


def test_cli_error_for_an_unknown_method(tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["--out", str(tmp_path / "x"), "--set", "stage2.method=rlhf"])
    assert str(exc.value.code).startswith("error: stage2.method must be one of")

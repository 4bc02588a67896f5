"""training.stage1: rationale pre-training end to end on tiny data."""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import pytest
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from r2d.data import write_examples
from r2d.errors import ConfigError, DatasetSchemaError
from r2d.model.artifacts import read_model_meta
from training.build.run import TRAIN_LOG_FILENAME
from training.method.trainer import CHECKPOINT_SUBDIR
from training.stage1 import main, train_stage1


@pytest.fixture(scope="module")
def stage1_run(tmp_path_factory, tiny_examples, tiny_config):
    """One default Stage-1 run (tiny_cpu.json, 6 steps) that several tests read: result and out dir."""
    d = tmp_path_factory.mktemp("stage1")
    train = write_examples(d / "data" / "train.jsonl", tiny_examples * 4)
    val = write_examples(d / "data" / "val.jsonl", tiny_examples)
    out = d / "s1"
    return SimpleNamespace(result=train_stage1(tiny_config(train, val), None, out), out=out)


def test_stage1_writes_only_the_best_model_and_its_log(stage1_run):
    result, out = stage1_run.result, stage1_run.out
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "r2d_model.json",
        "r2d_config.json",
        TRAIN_LOG_FILENAME,
    ):
        assert (out / name).is_file(), name
    assert not (out / CHECKPOINT_SUBDIR).exists()
    log = json.loads((out / TRAIN_LOG_FILENAME).read_text())
    eval_losses = {e["step"]: e["eval_loss"] for e in log["history"] if "eval_loss" in e}
    assert result.metric_name == "eval_loss" and result.best_metric == min(eval_losses.values())
    assert result.best_step in eval_losses and result.global_step == 6
    # the last step is evaluated even when it is not a multiple of eval_steps
    assert max(eval_losses) == 6
    assert all("explain_loss" in e for e in log["history"] if "loss" in e)


def test_stage1_model_dir_reloads_and_describes_itself(stage1_run, ktas_labels):
    out = stage1_run.out
    meta = read_model_meta(out)
    assert meta.label_set == tuple(ktas_labels)
    assert meta.extra["stage"] == "stage1" and meta.extra["train_examples"] == 20 and not meta.extra["adapter"]
    model = AutoModelForSeq2SeqLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.config.vocab_size == len(tokenizer)
    assert json.loads((out / "r2d_config.json").read_text())["optim"]["max_steps"] == 6


@pytest.mark.slow  # its own Trainer run (~1 s idle, 2.5-3 s on a loaded 2-core machine)
def test_stage1_reuses_a_given_tokenizer(tmp_path, data_files, tiny_model_dir, tiny_tokenizer, tiny_config):
    out = tmp_path / "s1"
    train_stage1(tiny_config(*data_files), None, out, tokenizer_dir=str(tiny_model_dir))
    assert AutoTokenizer.from_pretrained(out).get_vocab() == tiny_tokenizer.get_vocab()


@pytest.mark.slow  # its own Trainer run (~1 s idle, 2.5-3 s on a loaded 2-core machine)
def test_stage1_from_an_init_dir_keeps_its_label_metadata(tmp_path, data_files, tiny_model_dir, tiny_config):
    out = tmp_path / "s1"
    train_stage1(tiny_config(*data_files), str(tiny_model_dir), out)
    meta, init = read_model_meta(out), read_model_meta(tiny_model_dir)
    assert (meta.task, meta.ordinal, meta.label_names) == (init.task, init.ordinal, init.label_names)
    assert meta.extra["init"] == str(tiny_model_dir)


@pytest.mark.slow  # its own Trainer run (~1 s idle, 2.5-3 s on a loaded 2-core machine)
def test_metadata_from_the_data_manifest_and_the_caller(tmp_path, data_files, tiny_config):
    train, val = data_files
    (train.parent / "manifest.json").write_text(
        json.dumps({"task": "from-manifest", "ordinal": True, "label_names": {"1": "Resuscitation"}})
    )
    out = tmp_path / "s1"
    train_stage1(tiny_config(train, val), None, out, task="from-caller")
    meta = read_model_meta(out)
    assert meta.task == "from-caller"  # the caller wins over the manifest
    assert meta.ordinal is True and meta.label_names == {"1": "Resuscitation"}


def test_stage1_needs_validation_data(tmp_path, data_files, tiny_config):
    cfg = tiny_config(*data_files)
    cfg = replace(cfg, data=replace(cfg.data, val_files=()))
    with pytest.raises(ConfigError, match="data.val_files is empty"):
        train_stage1(cfg, None, tmp_path / "s1")


def test_stage1_needs_rationales(tmp_path, tiny_examples, tiny_config):
    bare = [replace(e, rationale="") for e in tiny_examples]
    train = write_examples(tmp_path / "train.jsonl", bare)
    with pytest.raises(DatasetSchemaError, match="no rationale"):
        train_stage1(tiny_config(train, train), None, tmp_path / "s1")


@pytest.mark.slow  # its own Trainer run (~1 s idle, 2.5-3 s on a loaded 2-core machine)
def test_cli_trains_and_reports(tmp_path, data_files, capsys, tiny_config_file):
    train, val = data_files
    out = tmp_path / "cli"
    code = main(
        [
            "--config",
            str(tiny_config_file),
            "--out",
            str(out),
            "--set",
            f'data.train_files=["{train}"]',
            "--set",
            f'data.val_files=["{val}"]',
            "--task",
            "ktas",
            "--ordinal",
            "--label-name",
            "1=Resuscitation",
            "--log-level",
            "WARNING",
        ]
    )
    assert code == 0 and "stage 1: best eval_loss=" in capsys.readouterr().out
    meta = read_model_meta(out)
    assert (meta.task, meta.ordinal, meta.label_names) == ("ktas", True, {"1": "Resuscitation"})


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--config", "no/such/config.json"], "error: config file no/such/config.json does not exist"),
        (["--label-name", "no-equals-sign"], "error: --label-name 'no-equals-sign' must look like LABEL=NAME"),
        (["--set", "optim.max_steps=0"], "error: optim.max_steps must be >= 1"),
    ],
)
def test_cli_turns_r2d_errors_into_exit_messages(tmp_path, argv, message):
    with pytest.raises(SystemExit) as exc:
        main(["--out", str(tmp_path / "x"), *argv])
    assert str(exc.value.code) == message


def test_the_derived_label_length_is_saved_with_the_model(stage1_run, ktas_labels):
    out = stage1_run.out
    saved = json.loads((out / "r2d_config.json").read_text())["generation"]["max_label_tokens"]
    tok = AutoTokenizer.from_pretrained(out)
    assert saved == max(len(tok(text_target=y)["input_ids"]) for y in ktas_labels)

"""Wiring shared by Stage 1 and Stage 2: data, label set, generation lengths, model metadata, the run itself.

Model loading (full / LoRA / QLoRA) is in training.build.loading. Only the best model ends up in the output
directory, beside `r2d_model.json`, `r2d_config.json` and `train_log.json`.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from r2d.config import DataConfig, GenerationConfig, R2DConfig
from r2d.data import Example, atomic_write_text, label_set, load_examples
from r2d.errors import ConfigError, DatasetSchemaError
from r2d.model.artifacts import ModelMeta, save_model_dir
from r2d.prompts import explain_given_label_prompt, explain_prompt, predict_prompt
from training.corpus.splits import MANIFEST

if TYPE_CHECKING:  # torch-heavy; this module stays light so every CLI can call setup_logging cheaply
    from transformers import PreTrainedTokenizerBase

    from training.build.loading import TrainingModel
    from training.method.trainer import R2DTrainer

logger = logging.getLogger(__name__)

TRAIN_LOG_FILENAME = "train_log.json"
# Beyond this many distinct labels (free-text answers) scoring every candidate for every case costs
# more than generating, and "the label set" is really open: sampling and F1 then use greedy text.
MAX_CLOSED_LABELS = 64


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced: the model directory and how its checkpoint was chosen."""

    out_dir: Path
    metric_name: str  # eval_loss (Stage 1) or eval_macro_f1 (Stage 2)
    best_metric: float | None
    best_step: int | None
    global_step: int
    log_path: Path


# --- data --------------------------------------------------------------------------------------


def load_split(paths: Sequence[str], what: str) -> list[Example]:
    """Concatenate the examples of every file in `paths`. Raises ConfigError if there are none."""
    if not paths:
        raise ConfigError(
            f"{what} is empty; list the data files in the config or with --set '{what}=[\"data/ktas/train.jsonl\"]'"
        )
    examples: list[Example] = []
    for path in paths:
        examples += load_examples(path)
    return examples


def resolve_label_set(
    data: DataConfig, train: Sequence[Example], val: Sequence[Example] = ()
) -> tuple[tuple[str, ...], bool]:
    """(labels, closed): cfg.data.label_set, else the sorted distinct training labels.

    The set is closed when given explicitly or small (<= MAX_CLOSED_LABELS). For a closed set every
    training and validation label must belong to it; raises DatasetSchemaError naming the strays.
    """
    labels = tuple(data.label_set) if data.label_set else tuple(label_set(train))
    closed = bool(data.label_set) or len(labels) <= MAX_CLOSED_LABELS
    if closed:
        strays = sorted({e.label for e in [*train, *val]} - set(labels))
        if strays:
            raise DatasetSchemaError(
                f"label(s) {strays[:10]} are not in the label set {list(labels)}; fix the data or data.label_set"
            )
    else:
        logger.info("%d distinct labels: open label set, greedy generation for sampling and evaluation", len(labels))
    return labels, closed


def token_lengths(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], target: bool) -> list[int]:
    """Tokens per text as the model reads it (special tokens included); `target` for decoder targets."""
    if not texts:
        return []
    enc = tokenizer(text_target=list(texts)) if target else tokenizer(list(texts))
    return [len(ids) for ids in enc["input_ids"]]


def _warn_if_cut(what: str, lengths: Sequence[int], limit: int, key: str) -> None:
    cut = [n for n in lengths if n > limit]
    if cut:
        logger.warning(
            "%d of %d %s are longer than %s=%d tokens and are cut (longest %d); raise it with --set %s=%d",
            len(cut),
            len(lengths),
            what,
            key,
            limit,
            max(cut),
            key,
            max(cut),
        )


_PROMPTS = {
    "stage1": lambda e: explain_prompt(e.case_text),
    "sft": lambda e: predict_prompt(e.case_text),
    "dss": lambda e: explain_prompt(e.case_text),
    "r2d": lambda e: explain_given_label_prompt(e.case_text, e.label),
}  # the mode's longest prompt


def resolve_generation(
    generation: GenerationConfig,
    tokenizer: PreTrainedTokenizerBase,
    labels: Sequence[str],
    examples: Sequence[Example],
    mode: str,
) -> GenerationConfig:
    """`generation` with its data-derived lengths filled in, warning whenever a limit cuts the data.

    max_label_tokens 0 becomes the longest label (of `labels` and the examples) after tokenisation, `</s>`
    included, so no label target or candidate is ever cut and two labels never become one. A set value is
    kept; labels, rationales and the mode's prompts longer than their limits are counted in a warning.
    """
    label_lengths = token_lengths(tokenizer, sorted(set(labels) | {e.label for e in examples}), target=True)
    g = generation
    if g.max_label_tokens <= 0:
        g = replace(g, max_label_tokens=max(label_lengths))
        logger.info("generation.max_label_tokens = %d (the longest label)", g.max_label_tokens)
    _warn_if_cut("labels", label_lengths, g.max_label_tokens, "generation.max_label_tokens")
    if mode != "sft":
        rationales = [e.rationale for e in examples if e.rationale]
        _warn_if_cut(
            "rationales",
            token_lengths(tokenizer, rationales, target=True),
            g.max_rationale_tokens,
            "generation.max_rationale_tokens",
        )
    _warn_if_cut(
        f"{mode} prompts",
        token_lengths(tokenizer, [_PROMPTS[mode](e) for e in examples], target=False),
        g.max_input_tokens,
        "generation.max_input_tokens",
    )
    return g


# --- metadata and the run ------------------------------------------------------------------------


def data_manifest(train_files: Sequence[str]) -> dict[str, Any]:
    """The manifest.json that training.prepare_data writes beside the first training file, or {}.

    Raises DatasetSchemaError if it exists but is not a JSON object.
    """
    if not train_files:
        return {}
    path = Path(train_files[0]).parent / MANIFEST
    if not path.is_file():
        return {}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DatasetSchemaError(f"{path} is not valid JSON ({e}); re-run training.prepare_data") from e
    if not isinstance(manifest, dict):
        raise DatasetSchemaError(f"{path} must hold a JSON object; re-run training.prepare_data")
    return manifest


def meta_defaults(
    train_files: Sequence[str], task: str | None, ordinal: bool | None, label_names: dict[str, str] | None
) -> dict[str, Any]:
    """task/ordinal/label_names: the caller's values, else the data manifest's (else None = the init model's)."""
    manifest = data_manifest(train_files)
    names = manifest.get("label_names")
    return {
        "task": task if task is not None else manifest.get("task"),
        "ordinal": ordinal if ordinal is not None else manifest.get("ordinal"),
        "label_names": label_names if label_names is not None else (names if isinstance(names, dict) else None),
    }


def build_meta(
    labels: Sequence[str],
    init_meta: ModelMeta | None,
    task: str | None = None,
    ordinal: bool | None = None,
    label_names: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> ModelMeta:
    """ModelMeta from the caller's values, else the init directory's, else defaults."""
    prior = init_meta or ModelMeta(label_set=())
    return ModelMeta(
        label_set=tuple(labels),
        label_names=dict(label_names) if label_names is not None else dict(prior.label_names),
        ordinal=ordinal if ordinal is not None else prior.ordinal,
        task=task if task is not None else prior.task,
        extra=dict(extra or {}),
    )


def run_training(
    trainer: R2DTrainer, loaded: TrainingModel, out_dir: str | Path, cfg: R2DConfig, meta: ModelMeta
) -> TrainResult:
    """Train, save the best model with its metadata, config and train_log.json; remove the checkpoints."""
    from training.method.trainer import CHECKPOINT_SUBDIR

    out = Path(out_dir)
    checkpoints = out / CHECKPOINT_SUBDIR
    if trainer.is_world_process_zero():
        shutil.rmtree(checkpoints, ignore_errors=True)  # left by an interrupted run of ours
    try:
        trainer.train()
        state = trainer.state
        metric = f"eval_{trainer.args.metric_for_best_model}"
        best_step = getattr(state, "best_global_step", None)
        log_path = out / TRAIN_LOG_FILENAME
        if trainer.is_world_process_zero():
            extra = {
                **meta.extra,
                "base_model": loaded.base_model,
                "adapter": loaded.base_model is not None,
                "metric_for_best_model": metric,
                "best_metric": state.best_metric,
                "best_step": best_step,
                "global_step": state.global_step,
            }
            model = trainer.accelerator.unwrap_model(trainer.model)
            save_model_dir(model, loaded.tokenizer, out, replace(meta, extra=extra), cfg)
            log = {
                "stage": meta.extra.get("stage"),
                "method": meta.extra.get("method"),
                "metric_for_best_model": metric,
                "best_metric": state.best_metric,
                "best_step": best_step,
                "global_step": state.global_step,
                "history": state.log_history,
            }
            atomic_write_text(log_path, json.dumps(log, indent=2) + "\n")
        trainer.accelerator.wait_for_everyone()
    finally:
        if trainer.is_world_process_zero():
            shutil.rmtree(checkpoints, ignore_errors=True)
    logger.info("best %s = %s at step %s; model in %s", metric, state.best_metric, best_step, out)
    return TrainResult(out, metric, state.best_metric, best_step, state.global_step, log_path)

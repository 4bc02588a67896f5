"""Wiring shared by Stage 1 and Stage 2: data, label set, model loading (full / LoRA / QLoRA), the run itself.

A base model is a local directory or a hub id and goes through the same `from_pretrained` call; no
`init` means a new T5 from `cfg.arch` with a tokenizer fitted to the training texts. Only the best
model ends up in the output directory, beside `r2d_model.json`, `r2d_config.json` and `train_log.json`.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import logging
import shutil
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, BitsAndBytesConfig, PreTrainedTokenizerBase

from r2d.artifacts import ModelMeta, read_model_meta, save_model_dir
from r2d.config import AdapterConfig, DataConfig, GenerationConfig, R2DConfig
from r2d.data import Example, atomic_write_text, label_set, load_examples
from r2d.errors import ConfigError, DatasetSchemaError, ModelLoadError
from r2d.prompts import PROMPT_VERSION, explain_given_label_prompt, explain_prompt, predict_prompt
from r2d.tokenizer import train_tokenizer
from training.prepare_data import MANIFEST
from training.scratch import new_t5
from training.trainer import CHECKPOINT_SUBDIR, R2DTrainer

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


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to train, its tokenizer, what an adapter sits on, and the init dir's metadata."""

    model: Any
    tokenizer: PreTrainedTokenizerBase
    base_model: str | None  # hub id or absolute directory under a LoRA adapter; None for full models
    init_meta: ModelMeta | None


# --- data --------------------------------------------------------------------------------------


def load_split(paths: Sequence[str], what: str) -> list[Example]:
    """Concatenate the examples of every file in `paths`. Raises ConfigError if there are none."""
    if not paths:
        raise ConfigError(f"{what} is empty; list the data files in the config or with "
                          f"--set '{what}=[\"data/ktas/train.jsonl\"]'")
    examples: list[Example] = []
    for path in paths:
        examples += load_examples(path)
    return examples


def resolve_label_set(data: DataConfig, train: Sequence[Example],
                      val: Sequence[Example] = ()) -> tuple[tuple[str, ...], bool]:
    """(labels, closed): cfg.data.label_set, else the sorted distinct training labels.

    The set is closed when given explicitly or small (<= MAX_CLOSED_LABELS). For a closed set every
    training and validation label must belong to it; raises DatasetSchemaError naming the strays.
    """
    labels = tuple(data.label_set) if data.label_set else tuple(label_set(train))
    closed = bool(data.label_set) or len(labels) <= MAX_CLOSED_LABELS
    if closed:
        strays = sorted({e.label for e in [*train, *val]} - set(labels))
        if strays:
            raise DatasetSchemaError(f"label(s) {strays[:10]} are not in the label set {list(labels)}; "
                                     "fix the data or data.label_set")
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
        logger.warning("%d of %d %s are longer than %s=%d tokens and are cut (longest %d); raise it with "
                       "--set %s=%d", len(cut), len(lengths), what, key, limit, max(cut), key, max(cut))


_PROMPTS = {"stage1": lambda e: explain_prompt(e.case_text), "sft": lambda e: predict_prompt(e.case_text),
            "dss": lambda e: explain_prompt(e.case_text),
            "r2d": lambda e: explain_given_label_prompt(e.case_text, e.label)}  # the mode's longest prompt


def resolve_generation(generation: GenerationConfig, tokenizer: PreTrainedTokenizerBase, labels: Sequence[str],
                       examples: Sequence[Example], mode: str) -> GenerationConfig:
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
        _warn_if_cut("rationales", token_lengths(tokenizer, rationales, target=True), g.max_rationale_tokens,
                     "generation.max_rationale_tokens")
    _warn_if_cut(f"{mode} prompts", token_lengths(tokenizer, [_PROMPTS[mode](e) for e in examples], target=False),
                 g.max_input_tokens, "generation.max_input_tokens")
    return g


# --- models ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_peft_deprecations() -> Iterator[None]:
    # peft 0.21 reads `is_gradient_checkpointing`, which transformers 5.24 deprecates with a FutureWarning
    # (our pytest config makes those errors). Only that message is silenced; the call itself is fine.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def quantization_config(adapter: AdapterConfig, bf16: bool) -> BitsAndBytesConfig | None:
    """NF4 4-bit settings for a QLoRA base, or None. Raises ModelLoadError if bitsandbytes is missing."""
    if not adapter.quantize_base_4bit:
        return None
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModelLoadError("adapter.quantize_base_4bit needs bitsandbytes: pip install bitsandbytes "
                             "(or set adapter.quantize_base_4bit=false)")
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              # T5 overflows in fp16; bf16 where the GPU has it, else fp32
                              bnb_4bit_compute_dtype=torch.bfloat16 if bf16 else torch.float32)


def _resolve_init(init: str) -> str:
    # a local directory becomes absolute, so an adapter's base_model_name_or_path works from anywhere
    path = Path(init).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"--init {init} is a file; pass a model directory or a hub id")
        return str(path.resolve())
    return init


def _from_pretrained(name: str, cfg: R2DConfig) -> Any:
    q = quantization_config(cfg.adapter, cfg.optim.bf16)
    kwargs: dict[str, Any] = {"dtype": torch.float32}  # master weights in fp32; bf16 is autocast by the Trainer
    if q is not None:
        kwargs = {"quantization_config": q, "dtype": q.bnb_4bit_compute_dtype}
        if torch.cuda.is_available():
            from accelerate import PartialState
            kwargs["device_map"] = {"": PartialState().local_process_index}  # one full copy per DDP rank
    try:
        model = AutoModelForSeq2SeqLM.from_pretrained(name, **kwargs)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot load a seq2seq model from {name!r}: not a model directory, and not a hub "
                             f"id this machine can download ({e})") from e
    if q is not None:
        _keep_cpu_4bit_trainable(model)
    return model


def _keep_cpu_4bit_trainable(model: Any) -> None:
    # On CPUs with AVX512-BF16, bitsandbytes repacks a 4-bit weight for a faster kernel the first time
    # it runs in eval mode without gradients (our label scoring does) and never unpacks it; the packed
    # kernel needs out_features % 32 == 0 and is meant for inference. Training keeps the plain layout.
    from bitsandbytes.nn import Linear4bit
    for module in model.modules():
        if isinstance(module, Linear4bit):
            module.support_avx512bf16_for_cpu = False


def _with_lora(model: Any, adapter: AdapterConfig) -> Any:
    from peft import LoraConfig, TaskType, get_peft_model, prepare_model_for_kbit_training
    if adapter.quantize_base_4bit:
        # no gradient checkpointing: it is slow on CPU and its enabling call is deprecated in transformers 5
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    config = LoraConfig(task_type=TaskType.SEQ_2_SEQ_LM, r=adapter.r, lora_alpha=adapter.alpha,
                        lora_dropout=adapter.dropout, target_modules=list(adapter.target_modules))
    with _quiet_peft_deprecations():
        return get_peft_model(model, config)


def _load_adapter_dir(init: str, cfg: R2DConfig) -> tuple[Any, str]:
    from peft import PeftModel, prepare_model_for_kbit_training
    adapter_cfg = json.loads((Path(init) / "adapter_config.json").read_text(encoding="utf-8"))
    base = adapter_cfg.get("base_model_name_or_path")
    if not base:
        raise ModelLoadError(f"{init}/adapter_config.json has no base_model_name_or_path; cannot rebuild its base")
    model = _from_pretrained(base, cfg)
    if cfg.adapter.quantize_base_4bit:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    with _quiet_peft_deprecations():
        model = PeftModel.from_pretrained(model, init, is_trainable=cfg.adapter.use_lora)
    if not cfg.adapter.use_lora:
        model = model.merge_and_unload()  # continue as a full fine-tune of base + adapter
    return model, base


def load_model_for_training(init: str | None, cfg: R2DConfig, corpus: Sequence[str],
                            tokenizer_dir: str | None = None) -> LoadedModel:
    """Build or load the model to train, per cfg.adapter (full, LoRA, or QLoRA).

    init None: new T5 from cfg.arch, tokenizer from `tokenizer_dir` or fitted to `corpus`.
    init a directory or hub id: from_pretrained (an adapter directory brings its base back).
    Raises ConfigError for LoRA on a random base, ModelLoadError when nothing can be loaded.
    """
    if init is None:
        if cfg.adapter.use_lora:
            raise ConfigError("adapter.use_lora needs a pretrained base (--init DIR_OR_HUB_ID): "
                              "an adapter on random weights could never be reloaded")
        tokenizer = (_load_tokenizer(tokenizer_dir) if tokenizer_dir
                     else train_tokenizer(corpus, vocab_size=cfg.arch.vocab_size))
        return LoadedModel(new_t5(tokenizer, cfg.arch, seed=cfg.optim.seed), tokenizer, None, None)
    name = _resolve_init(init)
    is_local = Path(name).is_dir()
    if is_local and (Path(name) / "adapter_config.json").is_file():
        model, base = _load_adapter_dir(name, cfg)
    else:
        model, base = _from_pretrained(name, cfg), name
        if cfg.adapter.use_lora:
            model = _with_lora(model, cfg.adapter)
    tokenizer = _load_tokenizer(tokenizer_dir or name)
    init_meta = read_model_meta(name) if is_local else None
    if init_meta is not None and init_meta.prompt_version != PROMPT_VERSION:
        logger.warning("%s was trained with prompts %s; this code uses %s", name, init_meta.prompt_version,
                       PROMPT_VERSION)
    return LoadedModel(model, tokenizer, base if cfg.adapter.use_lora else None, init_meta)


def _load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot load a tokenizer from {name!r} ({e})") from e


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


def meta_defaults(train_files: Sequence[str], task: str | None, ordinal: bool | None,
                  label_names: dict[str, str] | None) -> dict[str, Any]:
    """task/ordinal/label_names: the caller's values, else the data manifest's (else None = the init model's)."""
    manifest = data_manifest(train_files)
    names = manifest.get("label_names")
    return {"task": task if task is not None else manifest.get("task"),
            "ordinal": ordinal if ordinal is not None else manifest.get("ordinal"),
            "label_names": label_names if label_names is not None else (names if isinstance(names, dict) else None)}


def build_meta(labels: Sequence[str], init_meta: ModelMeta | None, task: str | None = None,
               ordinal: bool | None = None, label_names: dict[str, str] | None = None,
               extra: dict[str, Any] | None = None) -> ModelMeta:
    """ModelMeta from the caller's values, else the init directory's, else defaults."""
    prior = init_meta or ModelMeta(label_set=())
    return ModelMeta(label_set=tuple(labels),
                     label_names=dict(label_names) if label_names is not None else dict(prior.label_names),
                     ordinal=ordinal if ordinal is not None else prior.ordinal,
                     task=task if task is not None else prior.task,
                     extra=dict(extra or {}))


def run_training(trainer: R2DTrainer, loaded: LoadedModel, out_dir: str | Path, cfg: R2DConfig,
                 meta: ModelMeta) -> TrainResult:
    """Train, save the best model with its metadata, config and train_log.json; remove the checkpoints."""
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
            extra = {**meta.extra, "base_model": loaded.base_model, "adapter": loaded.base_model is not None,
                     "metric_for_best_model": metric, "best_metric": state.best_metric, "best_step": best_step,
                     "global_step": state.global_step}
            model = trainer.accelerator.unwrap_model(trainer.model)
            save_model_dir(model, loaded.tokenizer, out, replace(meta, extra=extra), cfg)
            log = {"stage": meta.extra.get("stage"), "method": meta.extra.get("method"),
                   "metric_for_best_model": metric, "best_metric": state.best_metric, "best_step": best_step,
                   "global_step": state.global_step, "history": state.log_history}
            atomic_write_text(log_path, json.dumps(log, indent=2) + "\n")
        trainer.accelerator.wait_for_everyone()
    finally:
        if trainer.is_world_process_zero():
            shutil.rmtree(checkpoints, ignore_errors=True)
    logger.info("best %s = %s at step %s; model in %s", metric, state.best_metric, best_step, out)
    return TrainResult(out, metric, state.best_metric, best_step, state.global_step, log_path)


# --- command line ------------------------------------------------------------------------------------


def build_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The flags both stages share; each stage adds its own."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--config",
                   help="JSON config (a small diff against the defaults), e.g. training/configs/ktas_cpu.json")
    p.add_argument("--out", required=True, help="output model directory (only the best model is kept)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value, e.g. --set optim.max_steps=50 (repeatable)")
    p.add_argument("--task", help="task name stored with the model (default: the init model's)")
    p.add_argument("--ordinal", action="store_true", default=None,
                   help="labels are ordinal, larger = less urgent (enables under-triage metrics)")
    p.add_argument("--label-name", dest="label_names", action="append", default=None, metavar="LABEL=NAME",
                   help="a human name shown beside a label, e.g. --label-name 1=Resuscitation (repeatable)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def meta_hints(args: argparse.Namespace) -> dict[str, Any]:
    """task/ordinal/label_names keyword arguments from parsed flags. Raises ConfigError for a bad --label-name."""
    names = None
    if args.label_names is not None:
        names = {}
        for item in args.label_names:
            label, sep, name = item.partition("=")
            if not sep or not label.strip() or not name.strip():
                raise ConfigError(f"--label-name {item!r} must look like LABEL=NAME")
            names[label.strip()] = name.strip()
    return {"task": args.task, "ordinal": args.ordinal, "label_names": names}


def is_main_process() -> bool:
    """False on every DDP rank but the first (torchrun / accelerate launch), so CLIs print once."""
    from accelerate import PartialState
    return PartialState().is_main_process


def setup_logging(level: str) -> None:
    """Entry points only: one line per record with time, level and module."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

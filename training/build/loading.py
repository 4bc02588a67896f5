"""Model loading for training: a new T5, or a local directory / hub id, full, LoRA or QLoRA (NF4 base).

A base model is a local directory or a hub id and goes through the same `from_pretrained` call; no
`init` means a new T5 from `cfg.arch` with a tokenizer fitted to the training texts. An adapter
directory brings its base back (adapter_config.json names it). Inference loads with r2d.model.modeling.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, BitsAndBytesConfig, PreTrainedTokenizerBase

from r2d.config import AdapterConfig, R2DConfig
from r2d.errors import ConfigError, ModelLoadError
from r2d.model.artifacts import ModelMeta, read_model_meta
from r2d.model.modeling import quiet_peft_deprecations
from r2d.model.quantize import nf4_bnb_config
from r2d.model.tokenizer import train_tokenizer
from r2d.prompts import PROMPT_VERSION
from training.build.scratch import new_t5

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingModel:
    """A model ready to train, its tokenizer, what an adapter sits on, and the init dir's metadata.

    (r2d.model.modeling.LoadedModel is the inference counterpart.)
    """

    model: Any
    tokenizer: PreTrainedTokenizerBase
    base_model: str | None  # hub id or absolute directory under a LoRA adapter; None for full models
    init_meta: ModelMeta | None


def quantization_config(adapter: AdapterConfig, bf16: bool) -> BitsAndBytesConfig | None:
    """NF4 4-bit settings for a QLoRA base, or None. Raises ModelLoadError if bitsandbytes is missing."""
    if not adapter.quantize_base_4bit:
        return None
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModelLoadError(
            "adapter.quantize_base_4bit needs bitsandbytes: pip install bitsandbytes "
            "(or set adapter.quantize_base_4bit=false)"
        )
    # QLoRA's recipe (double quantisation); T5 overflows in fp16: bf16 where the GPU has it, else fp32
    return nf4_bnb_config(torch.bfloat16 if bf16 else torch.float32, double_quant=True)


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
        raise ModelLoadError(
            f"cannot load a seq2seq model from {name!r}: not a model directory, and not a hub "
            f"id this machine can download ({e})"
        ) from e
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
    config = LoraConfig(
        task_type=TaskType.SEQ_2_SEQ_LM,
        r=adapter.r,
        lora_alpha=adapter.alpha,
        lora_dropout=adapter.dropout,
        target_modules=list(adapter.target_modules),
    )
    with quiet_peft_deprecations():
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
    with quiet_peft_deprecations():
        model = PeftModel.from_pretrained(model, init, is_trainable=cfg.adapter.use_lora)
    if not cfg.adapter.use_lora:
        model = model.merge_and_unload()  # continue as a full fine-tune of base + adapter
    return model, base


def load_model_for_training(
    init: str | None, cfg: R2DConfig, corpus: Sequence[str], tokenizer_dir: str | None = None
) -> TrainingModel:
    """Build or load the model to train, per cfg.adapter (full, LoRA, or QLoRA).

    init None: new T5 from cfg.arch, tokenizer from `tokenizer_dir` or fitted to `corpus`.
    init a directory or hub id: from_pretrained (an adapter directory brings its base back).
    Raises ConfigError for LoRA on a random base, ModelLoadError when nothing can be loaded.
    """
    if init is None:
        if cfg.adapter.use_lora:
            raise ConfigError(
                "adapter.use_lora needs a pretrained base (--init DIR_OR_HUB_ID): "
                "an adapter on random weights could never be reloaded"
            )
        tokenizer = (
            _load_tokenizer(tokenizer_dir) if tokenizer_dir else train_tokenizer(corpus, vocab_size=cfg.arch.vocab_size)
        )
        return TrainingModel(new_t5(tokenizer, cfg.arch, seed=cfg.optim.seed), tokenizer, None, None)
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
        logger.warning(
            "%s was trained with prompts %s; this code uses %s", name, init_meta.prompt_version, PROMPT_VERSION
        )
    return TrainingModel(model, tokenizer, base if cfg.adapter.use_lora else None, init_meta)


def _load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot load a tokenizer from {name!r} ({e})") from e

"""The model directory: a Hugging Face checkpoint plus what Reason2Decide needs to use it.

Beside `config.json`, weights and tokenizer files, a Reason2Decide directory holds
`r2d_model.json` (label set, label names, prompt version, task) and `r2d_config.json`
(the resolved training config), so a checkpoint describes itself, as nanoGPT's do.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from r2d.config import R2DConfig, save_config
from r2d.errors import ModelLoadError
from r2d.prompts import PROMPT_VERSION

META_FILENAME = "r2d_model.json"
META_FORMAT = "r2d-model-1"

QUANTIZED_MARKER = "r2d_quantized.json"  # a directory written by r2d.model.modeling.save_quantized_model_dir
QUANTIZED_WEIGHTS = "r2d_4bit.safetensors"  # not model.safetensors: plain from_pretrained must not misread it


@dataclass(frozen=True)
class ModelMeta:
    """What a Reason2Decide checkpoint predicts and how to read its labels."""

    label_set: tuple[str, ...]
    # human names shown beside labels, e.g. {"1": "Resuscitation"}
    label_names: dict[str, str] = field(default_factory=dict)
    # ordinal labels where a larger label means less urgent (KTAS 1 = most urgent): enables under-triage
    ordinal: bool = False
    task: str = ""
    prompt_version: str = PROMPT_VERSION
    # free-form provenance: data checksum, training steps, metrics
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"format": META_FORMAT, **asdict(self), "label_set": list(self.label_set)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelMeta:
        data = {k: v for k, v in data.items() if k != "format"}
        try:
            return cls(**{**data, "label_set": tuple(data["label_set"])})
        except (KeyError, TypeError) as e:
            raise ModelLoadError(
                f"{META_FILENAME} is malformed ({e}); re-export the model with training/stage2.py"
            ) from e


def save_model_dir(
    model: Any, tokenizer: Any, directory: str | Path, meta: ModelMeta, cfg: R2DConfig | None = None
) -> Path:
    """Save weights, tokenizer, r2d_model.json and (if given) r2d_config.json into directory."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / META_FILENAME).write_text(json.dumps(meta.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if cfg is not None:
        save_config(cfg, out)
    return out


def read_model_meta(directory: str | Path) -> ModelMeta | None:
    """The ModelMeta of a local directory, or None when the directory has no r2d_model.json."""
    path = Path(directory) / META_FILENAME
    if not path.is_file():
        return None
    try:
        return ModelMeta.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except json.JSONDecodeError as e:
        raise ModelLoadError(f"{path} is not valid JSON: {e}") from e


def model_source(directory: str | Path) -> tuple[str, str | None]:
    """(model.name_or_path, model.adapter_path) that load a directory: an adapter directory (LoRA, as
    training.improve writes) loads on top of the base its adapter_config.json names; any other is itself."""
    adapter_config = Path(directory) / "adapter_config.json"
    if not adapter_config.is_file():
        return str(directory), None
    try:
        base = json.loads(adapter_config.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except json.JSONDecodeError as e:
        raise ModelLoadError(f"{adapter_config} is not valid JSON: {e}") from e
    if not base:
        raise ModelLoadError(f"{adapter_config} names no base_model_name_or_path; cannot load its base")
    return str(base), str(directory)

"""One frozen config tree, the only config code in the project.

Every knob is a dataclass field with a default and the reason for it. `load_config` reads JSON
and `section.key=value` overrides, rejects unknown keys and wrong types (as nanoGPT's configurator
does) and returns a new frozen object. Functions take the narrowest section they need.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import types
import typing
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from r2d.errors import ConfigError
from r2d.limits import MAX_CASE_CHARS

logger = logging.getLogger(__name__)

CONFIG_FILENAME = "r2d_config.json"
QUANTIZATIONS = ("auto", "4bit", "int8", "none")
BACKENDS = ("auto", "torch", "onnx", "ct2")
METHODS = ("r2d", "sft", "dss")


@dataclass(frozen=True)
class ModelConfig:
    # a local directory or a hub id; the committed default model makes a fresh clone work offline
    name_or_path: str = "assets/models/r2d-ktas-small"
    # LoRA adapter directory on top of name_or_path, if the checkpoint is an adapter
    adapter_path: str | None = None
    # auto picks the fastest measured path per device (see README figures); 4bit = bitsandbytes NF4
    quantization: str = "auto"
    # fp32 on CPU: bf16 matmuls are slow without AVX512_BF16, and T5 overflows in fp16
    compute_dtype: str = "float32"
    # "auto" = cuda when available, else cpu
    device: str = "auto"
    # torch threads for CPU inference; 0 leaves torch's default (all cores)
    num_threads: int = 0
    # inference engine: torch = transformers (+ bitsandbytes for 4bit/int8); onnx = ONNX Runtime with 4-bit
    # matrices (float32 with quantization=none), exported once from the local model dir into onnx_cache_dir;
    # ct2 = CTranslate2 int8 (float32 with quantization=none), converted into ct2_cache_dir. auto = onnx on CPU
    # when onnxruntime is installed and quantization is auto or 4bit (chosen by measurement against CTranslate2
    # int8 and bitsandbytes 4-bit, benchmarks/README.md), else torch
    backend: str = "auto"
    # where converted CTranslate2 models are kept; "" = $R2D_CT2_CACHE, else ~/.cache/r2d/ct2
    ct2_cache_dir: str = ""
    # where ONNX exports (model.backend=onnx) are kept; "" = $R2D_ONNX_CACHE, else ~/.cache/r2d/onnx
    onnx_cache_dir: str = ""


@dataclass(frozen=True)
class GenerationConfig:
    # longest tokenised case kept; longer inputs are refused by the app, truncated in training
    max_input_tokens: int = 256
    # 0 = derived from the data: training sets it to the longest label after tokenisation (</s> included)
    # and saves that number with the model; a smaller value cuts labels, and training warns how many
    max_label_tokens: int = 0
    # rationales longer than this are cut in training targets and in generation
    max_rationale_tokens: int = 128
    # greedy by default: deterministic, the same text streamed or not
    num_beams: int = 1
    # 0 = no n-gram blocking: a block of 3 makes 167 of the 1,267 gold KTAS rationales impossible to generate
    # (they repeat a 3-token piece, e.g. digits of two vitals, under the default model's tokenizer)
    no_repeat_ngram_size: int = 0
    # fact-checked decoding: 0 = off (one decoded rationale). N > 1 = beam search returns N candidates and the
    # one the case contradicts least is shown (r2d.checks.factcheck.least_contradicted); its remaining problems are
    # still shown. 8 candidates roughly doubled the default model's validation fidelity (0.35 -> 0.68, 60 cases)
    fact_check_candidates: int = 0
    # decoding that cannot invent a number (r2d.model.number_guard): a rationale may write only the case's numbers and
    # the rules' fixed limits. A decoding lever, not the model's own fidelity; torch backend only
    constrain_numbers: bool = False


@dataclass(frozen=True)
class AdapterConfig:
    # full fine-tune by default: our own small models are cheap to train fully
    use_lora: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    # peft's default T5 targets
    target_modules: tuple[str, ...] = ("q", "v")
    # QLoRA: load the frozen base in 4-bit (needs bitsandbytes; LoRA weights stay in full precision)
    quantize_base_4bit: bool = False


@dataclass(frozen=True)
class ArchConfig:
    """Shape of a T5 trained from scratch (the embedded default model)."""

    # sized so that the whole model stays a few MB and trains on a 2-core CPU in minutes
    vocab_size: int = 2000
    d_model: int = 128
    d_kv: int = 32
    d_ff: int = 384
    num_layers: int = 3
    num_decoder_layers: int = 3
    num_heads: int = 4
    dropout_rate: float = 0.1


@dataclass(frozen=True)
class OptimConfig:
    # the authors' 5e-5, for fine-tuning a pretrained T5; a model trained from random weights needs a larger step,
    # which its config sets (ktas_cpu.json and default_model.json: 1e-3)
    learning_rate: float = 5e-5
    weight_decay: float = 0.0
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    max_steps: int = 1000
    # evaluate and maybe keep a checkpoint this often
    eval_steps: int = 100
    # linear decay as in the authors' code; warmup for the learning rate, not for alpha
    lr_warmup_fraction: float = 0.0
    seed: int = 42
    # bf16 only where the hardware has it (GPU); CPU trains in fp32
    bf16: bool = False
    # dataloader workers; 0 keeps tokenisation in the main process (2-core machines)
    num_workers: int = 0


@dataclass(frozen=True)
class Stage2Config:
    # r2d = Reason2Decide; sft = predict only; dss = distilling step-by-step (explain without label)
    method: str = "r2d"
    # final weight of the prediction loss (paper: 0.7)
    alpha: float = 0.7
    # alpha rises 0 -> alpha over this fraction of max_steps (paper: 5%)
    alpha_warmup_fraction: float = 0.05
    # scheduled sampling: pi(t) = 0 before this fraction of max_steps ...
    sampling_start_fraction: float = 0.05
    # ... then rises linearly, as the authors' code does, to 1.0 at this fraction (5% + 60% = 65%);
    # sampling_cap stops it first (0.9 at 59% of the steps with the defaults)
    sampling_end_fraction: float = 0.65
    # never condition only on predictions: some gold labels keep the rationale anchored (paper: 0.9)
    sampling_cap: float = 0.9
    # R2D-C: scale pi(t) by sigmoid(k * (confidence - threshold)); the threshold is the warm-up's mean
    # confidence at step W, then the mean of each window of confidence_refresh_steps steps (authors: 1,000)
    confidence_gated: bool = False
    confidence_sharpness: float = 10.0
    confidence_refresh_steps: int = 1000
    # R2D-C rationale -> label cycle loss weight, applied after the W warm-up; 0 turns it off (R2D-C: 0.1)
    cycle_loss_weight: float = 0.0
    # Gumbel temperature max(end, start * exp(-ln2 * t / max_steps)), the authors' 1.0 -> 0.5
    gumbel_temperature_start: float = 1.0
    gumbel_temperature_end: float = 0.5
    # early stopping on val macro-F1 from this fraction of steps on, the best reset there (paper: 65%, patience 5)
    early_stopping_patience: int = 5
    early_stopping_after_fraction: float = 0.65


@dataclass(frozen=True)
class DataConfig:
    # several files are concatenated: e.g. the KTAS train split plus a nurse-post-processed export
    train_files: tuple[str, ...] = ()
    # validation picks the best checkpoint (Stage 1: loss; Stage 2: label macro-F1)
    val_files: tuple[str, ...] = ()
    # closed label set; empty = the sorted distinct labels of the training files
    label_set: tuple[str, ...] = ()


@dataclass(frozen=True)
class AppConfig:
    # loopback only: case text never leaves the laptop
    host: str = "127.0.0.1"
    port: int = 7860
    # the review database (SQLite, WAL); relative paths are under the working directory
    db_path: str = "r2d_reviews.sqlite3"
    # longest case text accepted, in characters; huge pastes are refused before tokenising
    max_case_chars: int = MAX_CASE_CHARS
    # largest batch upload, in rows
    max_batch_rows: int = 2000
    # below this top-label probability the app shows a low-confidence note beside the suggestion
    low_probability: float = 0.5
    # Stage-2 exports from the app go into timestamped folders here (relative = under the working directory)
    export_dir: str = "r2d_exports"
    # cases predicted per model call in a batch upload; also how often the progress bar and the DB advance
    batch_size: int = 8
    # "Improve the model" runs (training.improve in a background process) go here, one folder each
    runs_dir: str = "r2d_runs"
    # the original training data a run adds the reviews to (a prepare_data output: train/val/test.jsonl)
    improve_data_dir: str = "data/ktas"
    # Stage-2 steps of a run (LoRA on the embedded model; the README gives the measured time per step)
    improve_steps: int = 200
    # the KTAS data.csv the app prepares improve_data_dir from (training.prepare_data) when that folder lacks
    # its splits, so a run never needs a terminal; relative = under the working directory
    improve_source: str = "../shared/data/ktas/data.csv"
    # public test cases each model is scored on in a run's comparison (a seeded sample; 0 = all of them): the
    # whole split made the comparison take most of a short run. Held-out reviewed cases are always all scored
    improve_test_cases: int = 100
    # seconds per Stage-2 step and per case scored by one model, on one loaded core (the README's measurement):
    # the estimate a reviewer sees before starting a run, and how the progress bar splits training and scoring;
    # scoring errs long, since a busy machine scores several times slower than a quiet one
    improve_step_s: float = 1.5
    improve_case_s: float = 1.5


@dataclass(frozen=True)
class R2DConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    arch: ArchConfig = field(default_factory=ArchConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    data: DataConfig = field(default_factory=DataConfig)
    app: AppConfig = field(default_factory=AppConfig)

    def __post_init__(self) -> None:
        validate(self)


def validate(cfg: R2DConfig) -> None:
    """Reject values that are the right type but cannot work. Raises ConfigError."""
    if cfg.model.quantization not in QUANTIZATIONS:
        raise ConfigError(f"model.quantization must be one of {QUANTIZATIONS}, got {cfg.model.quantization!r}")
    if cfg.model.backend not in BACKENDS:
        raise ConfigError(f"model.backend must be one of {BACKENDS}, got {cfg.model.backend!r}")
    if cfg.model.backend == "onnx" and cfg.model.quantization == "int8":
        raise ConfigError(
            "model.backend=onnx has no int8 mode: set model.quantization=auto or 4bit (4-bit) or none "
            "(float32), or model.backend=ct2 for CTranslate2 int8"
        )
    if cfg.model.backend == "ct2" and cfg.model.quantization == "4bit":
        raise ConfigError(
            "model.backend=ct2 has no 4-bit mode: set model.quantization=auto or int8 (CTranslate2 "
            "int8) or none (float32), or model.backend=torch for bitsandbytes 4-bit"
        )
    if cfg.stage2.method not in METHODS:
        raise ConfigError(f"stage2.method must be one of {METHODS}, got {cfg.stage2.method!r}")
    s = cfg.stage2
    if not 0.0 <= s.alpha <= 1.0:
        raise ConfigError(f"stage2.alpha must be in [0, 1], got {s.alpha}")
    if not 0.0 <= s.sampling_start_fraction <= s.sampling_end_fraction <= 1.0:
        raise ConfigError("stage2 needs 0 <= sampling_start_fraction <= sampling_end_fraction <= 1")
    if not 0.0 <= s.sampling_cap <= 1.0:
        raise ConfigError(f"stage2.sampling_cap must be in [0, 1], got {s.sampling_cap}")
    if cfg.adapter.quantize_base_4bit and not cfg.adapter.use_lora:
        raise ConfigError(
            "adapter.quantize_base_4bit (QLoRA) needs adapter.use_lora=true: a 4-bit base cannot be fully fine-tuned"
        )
    if cfg.generation.fact_check_candidates < 0 or cfg.generation.num_beams < 1:
        raise ConfigError("generation.fact_check_candidates must be >= 0 and generation.num_beams >= 1")
    for name in ("batch_size", "max_steps", "eval_steps", "gradient_accumulation_steps"):
        if getattr(cfg.optim, name) < 1:
            raise ConfigError(f"optim.{name} must be >= 1")
    if cfg.app.improve_test_cases < 0 or cfg.app.improve_step_s <= 0 or cfg.app.improve_case_s <= 0:
        raise ConfigError(
            "app.improve_test_cases must be >= 0 (0 = the whole test split), and "
            "app.improve_step_s and app.improve_case_s > 0"
        )


# --- reading and writing -------------------------------------------------------------------


def _check_type(value: Any, annotation: Any, where: str) -> Any:
    """Return value coerced to annotation (int -> float, list -> tuple) or raise ConfigError."""
    hint = annotation
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        hint = next(o for o in options if o is not type(None))
        origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
        return tuple(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if hint in (int, str, float) and (not isinstance(value, hint) or isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {type(value).__name__} {value!r}")
    return value


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {', '.join(where + '.' + k if where else k for k in unknown)}; "
            f"known: {', '.join(sorted(known))}"
        )
    kwargs = {}
    for name, value in data.items():
        path = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(hints[name]):
            kwargs[name] = _build(hints[name], value, path)
        else:
            kwargs[name] = _check_type(value, hints[name], path)
    return cls(**kwargs)


# keys that earlier versions wrote into r2d_config.json and that nothing ever read: saved model directories
# (the committed one's until it was rewritten, runs/ of older builds) must still load, so these are dropped
# with a note instead of being rejected like other unknown keys
RETIRED_KEYS = {"data": ("test_files",)}


def _drop_retired(data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    for section, keys in RETIRED_KEYS.items():
        node = out.get(section)
        if isinstance(node, dict) and any(k in node for k in keys):
            logger.info(
                "ignoring retired config key(s) %s (nothing reads them)",
                ", ".join(f"{section}.{k}" for k in keys if k in node),
            )
            out[section] = {k: v for k, v in node.items() if k not in keys}
    return out


def config_from_dict(data: dict[str, Any]) -> R2DConfig:
    """Build a config from a (possibly partial) nested dict. Raises ConfigError."""
    return _build(R2DConfig, _drop_retired(data) if isinstance(data, dict) else data, "")


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw  # bare strings need no quotes: model.name_or_path=google/flan-t5-base
    return key.strip().split("."), value


def _set_overrides(data: dict[str, Any], overrides: Sequence[str]) -> None:
    for text in overrides:
        keys, value = _parse_override(text)
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {k} is not a section")
        node[keys[-1]] = value


def apply_overrides(cfg: R2DConfig, overrides: Sequence[str]) -> R2DConfig:
    """A copy of cfg with `section.key=value` overrides applied. Raises ConfigError like load_config."""
    data = config_to_dict(cfg)
    _set_overrides(data, overrides)
    return config_from_dict(data)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> R2DConfig:
    """Defaults, then the JSON file at `path` (if any), then `section.key=value` overrides.

    Raises ConfigError for a missing file, bad JSON, unknown keys or wrong types.
    """
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ConfigError(f"config file {p} is not valid JSON: {e}") from e
    _set_overrides(data, overrides)
    return config_from_dict(data)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain JSON-ready dict of a config (tuples become lists)."""
    return json.loads(json.dumps(asdict(cfg)))


def save_config(cfg: R2DConfig, directory: str | Path) -> Path:
    """Write the resolved config beside a checkpoint, so the checkpoint describes itself."""
    path = Path(directory) / CONFIG_FILENAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config_to_dict(cfg), indent=2) + "\n", encoding="utf-8")
    return path


def with_section(cfg: R2DConfig, **sections: Any) -> R2DConfig:
    """A copy of cfg with whole sections replaced (frozen objects are never mutated)."""
    return replace(cfg, **sections)

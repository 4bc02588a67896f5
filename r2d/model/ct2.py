"""CTranslate2 backend: the same Predictor on a CTranslate2 conversion of the model (CPU speed path).

A local transformers T5 directory (+ optional LoRA adapter, merged first) is converted once with
ctranslate2's TransformersConverter into int8 (or float32 with quantization=none) and kept in a cache
folder keyed by the source files' names, sizes and mtimes, the CTranslate2 version and the precision, so
later loads only read it. Conversion reads local files only; nothing is downloaded.

CT2Predictor keeps every contract of r2d.model.inference.Predictor: labels are scored as r2d.model.scoring does (each
candidate's token log-probs, `</s>` included, through r2d.model.scoring.scores_from_token_logprobs), rationales
are greedy or beam search from the same prompts and lengths, streaming goes token by token when greedy,
and fact_check_candidates > 1 picks among that many beam hypotheses with r2d.checks.factcheck.least_contradicted.
One difference: Translator.score_batch runs the encoder once per (case, label) pair, not once per case.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from r2d.config import GenerationConfig, ModelConfig
from r2d.errors import ModelLoadError
from r2d.limits import MAX_CASE_CHARS
from r2d.model.artifacts import QUANTIZED_MARKER
from r2d.model.inference import OnToken, Predictor
from r2d.model.label_scores import LabelScores, scores_from_token_logprobs
from r2d.model.source import (
    LoadedModel,
    _has_tokenizer,
    _meta_for,
    check_adapter_dir,
    check_model_dir,
    conversion_cache,
    files_digest,
    local_full_precision_dir,
    model_id_of,
    resolve_device,
)

logger = logging.getLogger(__name__)

# model.quantization -> CTranslate2 weight type (it has no 4-bit; config.validate refuses that pairing)
COMPUTE_TYPES = {"auto": "int8", "int8": "int8", "none": "float32"}
# bump when the conversion itself changes, so cached conversions made by older code are not reused
CONVERSION_VERSION = 1
# Beam search keeps going until beam_size * BEAM_PATIENCE hypotheses have finished. With CTranslate2's default
# (1) it stops at the first beam_size finished, mostly stubs ("2", ""), so the fact check chose among other
# candidates than transformers' beam search gives; 4 makes the two engines' candidates nearly the same, and more
# patience bought nothing on the example cases
BEAM_PATIENCE = 4


def ct2_available() -> bool:
    """Whether the ctranslate2 package can be imported (without importing it)."""
    return importlib.util.find_spec("ctranslate2") is not None


def _import_ct2() -> Any:
    try:
        import ctranslate2
    except ImportError as e:
        raise ModelLoadError(
            "model.backend=ct2 needs CTranslate2, which is not installed: `pip install -r "
            "requirements.txt` (ctranslate2>=4.8,<5), or set model.backend=torch"
        ) from e
    return ctranslate2


def cache_dir(model_cfg: ModelConfig) -> Path:
    """model.ct2_cache_dir, else $R2D_CT2_CACHE, else ~/.cache/r2d/ct2 ($XDG_CACHE_HOME respected)."""
    return conversion_cache(model_cfg.ct2_cache_dir, "R2D_CT2_CACHE", "ct2")


def cache_key(source: Path, adapter: Path | None, compute_type: str, ct2_version: str) -> str:
    """A hex digest of what a conversion depends on: the source files (and the adapter's), the CTranslate2
    version, the weight type and CONVERSION_VERSION."""
    return files_digest(source, adapter, str(CONVERSION_VERSION), ct2_version, compute_type)


def convert(model_cfg: ModelConfig, compute_type: str) -> Path:
    """The cached CTranslate2 directory of model_cfg's model (+ adapter) in `compute_type`, converted now if
    missing. Raises ModelLoadError when ctranslate2 is missing, the source is not a local model directory,
    or the conversion fails (nothing half-written is left in the cache)."""
    ctranslate2 = _import_ct2()
    source = Path(model_cfg.name_or_path)
    if not local_full_precision_dir(model_cfg):
        raise ModelLoadError(
            f"model.backend=ct2 converts a local full-precision model directory; {source} is a hub "
            f"id, missing, or a pre-quantized 4-bit directory ({QUANTIZED_MARKER}): pass the "
            "directory it came from, or set model.backend=torch"
        )
    adapter = Path(model_cfg.adapter_path) if model_cfg.adapter_path else None
    if adapter is not None:
        check_adapter_dir(adapter)
    tokenizer_source = adapter if adapter is not None and _has_tokenizer(adapter) else source
    check_model_dir(source, need_tokenizer=tokenizer_source == source)
    root = cache_dir(model_cfg)
    key = cache_key(source, adapter, compute_type, ctranslate2.__version__)
    out = root / f"{source.resolve().name}-{compute_type}-{key}"
    if (out / "model.bin").is_file():
        return out
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".converting-", dir=root))
    try:
        _converter(ctranslate2, source, adapter, tokenizer_source).convert(
            str(scratch / "model"), quantization=compute_type, force=True
        )
        os.replace(scratch / "model", out)  # atomic: a concurrent load sees a whole directory or none
    except OSError as e:
        if not (out / "model.bin").is_file():  # another process may have won the race; its result is as good
            raise ModelLoadError(f"cannot write the CTranslate2 conversion of {source} to {out}: {e}") from e
    except Exception as e:  # the converter raises ValueError, KeyError, RuntimeError... for models it cannot take
        raise ModelLoadError(
            f"converting {source} to CTranslate2 failed ({type(e).__name__}: {e}); set model.backend=torch"
        ) from e
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    logger.info("converted %s to CTranslate2 %s in %s", source, compute_type, out)
    return out


def _converter(ctranslate2: Any, source: Path, adapter: Path | None, tokenizer_source: Path) -> Any:
    """A TransformersConverter that reads the (adapter-merged) model we load, the right tokenizer, and keeps
    the decoder-output scaling the model's own config says (CT2 4.8 scales every tied T5 by d_model**-0.5;
    transformers 5 ties every T5 and records the scaling in `scale_decoder_outputs`)."""
    from ctranslate2.converters import TransformersConverter
    from transformers import AutoTokenizer

    class Converter(TransformersConverter):
        def load_model(self, model_class: Any, model_name_or_path: str, **kwargs: Any) -> Any:
            if adapter is None:
                return super().load_model(model_class, model_name_or_path, **kwargs)
            from r2d.model.modeling import _load_full

            return _load_full(str(source), adapter, kwargs.get("dtype") or _float32())

        def load_tokenizer(self, tokenizer_class: Any, model_name_or_path: str, **kwargs: Any) -> Any:
            return AutoTokenizer.from_pretrained(str(tokenizer_source))

        def _load(self) -> Any:
            spec = super()._load()
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(str(source))
            if not getattr(config, "scale_decoder_outputs", True):  # T5 v1.1 / Flan-T5 configs: no scaling
                from ctranslate2.specs import model_spec

                spec.decoder.scale_outputs = model_spec.OPTIONAL
            return spec

    return Converter(str(source))


def _float32() -> Any:
    import torch

    return torch.float32


def load_ct2(model_cfg: ModelConfig, label_set: Sequence[str] | None = None) -> LoadedModel:
    """model_cfg's model as a ctranslate2.Translator (converted and cached on first use) with its tokenizer and
    r2d_model.json. model.num_threads sets CTranslate2's intra-op threads (0 = its default). Raises ModelLoadError."""
    ctranslate2 = _import_ct2()
    if model_cfg.quantization not in COMPUTE_TYPES:
        raise ModelLoadError(
            f"model.backend=ct2 has no {model_cfg.quantization!r} mode: set model.quantization="
            "auto or int8 (int8) or none (float32), or model.backend=torch"
        )
    compute_type = COMPUTE_TYPES[model_cfg.quantization]
    device = resolve_device(model_cfg.device)
    directory = convert(model_cfg, compute_type)
    source = Path(model_cfg.name_or_path)
    adapter = Path(model_cfg.adapter_path) if model_cfg.adapter_path else None
    meta = _meta_for([d for d in (adapter, source) if d is not None], label_set, str(source))
    kind, _, index = device.partition(":")
    try:
        translator = ctranslate2.Translator(
            str(directory),
            device=kind,
            device_index=int(index or 0),
            compute_type=compute_type,
            inter_threads=1,
            intra_threads=max(0, model_cfg.num_threads),
        )
    except (RuntimeError, ValueError) as e:
        raise ModelLoadError(f"CTranslate2 cannot load {directory} on {device}: {e}") from e
    from transformers import AutoTokenizer

    tokenizer_dir = adapter if adapter is not None and _has_tokenizer(adapter) else source
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    model_id = model_id_of(meta, str(source), False, adapter)
    logger.info("loaded %s (CTranslate2 %s) on %s", model_id, compute_type, device)
    return LoadedModel(translator, tokenizer, meta, model_id, f"ct2-{compute_type}", device, backend="ct2")


class CT2Predictor(Predictor):
    """r2d.model.inference.Predictor on a ctranslate2.Translator (LoadedModel.backend == "ct2"); same public API."""

    backend = "ct2"

    def __init__(self, loaded: LoadedModel, generation: GenerationConfig, max_case_chars: int = MAX_CASE_CHARS) -> None:
        if generation.constrain_numbers:
            raise ModelLoadError(
                "generation.constrain_numbers needs model.backend=torch or auto: CTranslate2 takes no logits processor"
            )
        super().__init__(loaded, generation, max_case_chars)
        self.translator = loaded.model
        # extra translate_batch options (the benchmark forces a length with min_decoding_length); empty in the app
        self.decode_options: dict[str, Any] = {}
        self._targets = self._label_targets()

    def _label_targets(self) -> list[tuple[list[str], bool]]:
        """Each label's target pieces without the final `</s>` (score_batch appends it), and whether the
        tokenizer's own target ended with `</s>` (when not, its appended log-prob is dropped: r2d.model.scoring
        scores exactly the tokens tokenize_targets gives)."""
        g, eos = self.generation, self.tokenizer.eos_token_id
        cut = g.max_label_tokens > 0
        ids = self.tokenizer(
            text_target=list(self.label_set), max_length=g.max_label_tokens if cut else None, truncation=cut
        )["input_ids"]
        return [
            (self.tokenizer.convert_ids_to_tokens(t[:-1] if t and t[-1] == eos else t), bool(t) and t[-1] == eos)
            for t in ids
        ]

    def _pieces(self, prompts: Sequence[str]) -> list[list[str]]:
        ids = self.tokenizer(list(prompts), max_length=self.generation.max_input_tokens, truncation=True)["input_ids"]
        return [self.tokenizer.convert_ids_to_tokens(t) for t in ids]

    def _score(self, prompts: Sequence[str]) -> list[LabelScores]:
        from r2d.model.scoring import SCORING_PAIRS

        sources = self._pieces(prompts)
        pairs = [(src, target) for src in sources for target in self._targets]
        results = self.translator.score_batch(
            [s for s, _ in pairs], [t for _, (t, _) in pairs], max_batch_size=SCORING_PAIRS, max_input_length=0
        )
        token_logps = [
            list(r.log_probs) if with_eos else list(r.log_probs)[:-1] for r, (_, (_, with_eos)) in zip(results, pairs)
        ]
        return scores_from_token_logprobs([self.label_set] * len(prompts), token_logps)

    def _rationale_candidates(
        self, prompts: Sequence[str], on_token: OnToken | None = None, cases: Sequence[str] = ()
    ) -> list[list[str]]:
        g, k = self.generation, max(1, self._candidates)
        options: dict[str, Any] = {
            "beam_size": max(g.num_beams, k) if k > 1 else g.num_beams,
            "num_hypotheses": k,
            "max_decoding_length": g.max_rationale_tokens,
            "min_decoding_length": 0,
            "no_repeat_ngram_size": g.no_repeat_ngram_size,
            "max_input_length": 0,
            "patience": BEAM_PATIENCE if max(g.num_beams, k) > 1 else 1,
            # as the torch path: <pad> (the decoder start) is never generated
            "suppress_sequences": [[self.tokenizer.pad_token]],
        }
        if on_token is not None:  # greedy only (the Predictor asks for tokens only when it streams)
            options["callback"] = _step_callback(on_token, self.tokenizer.convert_tokens_to_ids)
        results = self.translator.translate_batch(self._pieces(prompts), **(options | self.decode_options))
        return [[self._decode(self.tokenizer.convert_tokens_to_ids(h)) for h in r.hypotheses] for r in results]


def _step_callback(on_token: OnToken, token_id: Any) -> Any:
    """CTranslate2's per-step callback: it calls once per row and step, and on_token gets that row's new id.

    It must not hold the Predictor: CTranslate2 may drop its last reference to the callback on one of the
    translator's own threads, and if that freed the Translator, its destructor would join the thread it runs
    on ("Resource deadlock avoided", the process aborts)."""
    return lambda step: bool(on_token([token_id(step.token)]))

"""Which Predictor runs a model: load_predictor resolves model.backend and loads the model on that engine;
predictor_for wraps a model already loaded in its engine's Predictor. The one place that knows both engines,
so neither engine's module imports the other's."""

from __future__ import annotations

from r2d.config import GenerationConfig, ModelConfig
from r2d.limits import MAX_CASE_CHARS
from r2d.model import ct2
from r2d.model.inference import Predictor
from r2d.model.modeling import LoadedModel, load_model_and_tokenizer, resolve_backend, resolve_device


def predictor_for(loaded: LoadedModel, generation: GenerationConfig, max_case_chars: int = MAX_CASE_CHARS) -> Predictor:
    """The Predictor for the loaded model's engine: CT2Predictor for ct2, Predictor for torch."""
    cls = ct2.CT2Predictor if loaded.backend == "ct2" else Predictor
    return cls(loaded, generation, max_case_chars)


def load_predictor(
    model_cfg: ModelConfig, generation: GenerationConfig, max_case_chars: int = MAX_CASE_CHARS
) -> Predictor:
    """Load model_cfg's model on the engine model_cfg.backend resolves to (r2d.model.modeling.resolve_backend)
    and wrap it in that engine's Predictor. Raises ModelLoadError."""
    # the number guard is a transformers logits processor: CTranslate2 has no hook for one
    choice = "torch" if generation.constrain_numbers and model_cfg.backend == "auto" else model_cfg.backend
    backend = resolve_backend(
        choice,
        model_cfg.quantization,
        resolve_device(model_cfg.device),
        ct2.ct2_available(),
        ct2.convertible(model_cfg),
    )
    loaded = ct2.load_ct2(model_cfg) if backend == "ct2" else load_model_and_tokenizer(model_cfg)
    return predictor_for(loaded, generation, max_case_chars)

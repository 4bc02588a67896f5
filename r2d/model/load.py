"""Which Predictor runs a model: load_predictor resolves model.backend and loads the model on that engine;
predictor_for wraps a model already loaded in its engine's Predictor. The one place that knows every engine,
so no engine's module imports another's. The engines' libraries are imported only when a model loads on
them: the ONNX Runtime path (the CPU default) never imports torch or transformers."""

from __future__ import annotations

from r2d.config import GenerationConfig, ModelConfig
from r2d.limits import MAX_CASE_CHARS
from r2d.model import ct2, ort
from r2d.model.inference import Predictor
from r2d.model.source import LoadedModel, local_full_precision_dir, resolve_backend, resolve_device


def predictor_for(loaded: LoadedModel, generation: GenerationConfig, max_case_chars: int = MAX_CASE_CHARS) -> Predictor:
    """The Predictor for the loaded model's engine: TorchPredictor, ORTPredictor or CT2Predictor."""
    if loaded.backend == "onnx":
        return ort.ORTPredictor(loaded, generation, max_case_chars)
    if loaded.backend == "ct2":
        return ct2.CT2Predictor(loaded, generation, max_case_chars)
    from r2d.model.torch_predictor import TorchPredictor

    return TorchPredictor(loaded, generation, max_case_chars)


def load_predictor(
    model_cfg: ModelConfig, generation: GenerationConfig, max_case_chars: int = MAX_CASE_CHARS
) -> Predictor:
    """Load model_cfg's model on the engine model_cfg.backend resolves to (r2d.model.source.resolve_backend)
    and wrap it in that engine's Predictor. Raises ModelLoadError."""
    # the number guard is a transformers logits processor: ONNX Runtime and CTranslate2 take none
    choice = "torch" if generation.constrain_numbers and model_cfg.backend == "auto" else model_cfg.backend
    backend = resolve_backend(
        choice,
        model_cfg.quantization,
        resolve_device(model_cfg.device),
        ct2.ct2_available(),
        local_full_precision_dir(model_cfg),
        ort.ort_available(),
    )
    if backend == "onnx":
        loaded = ort.load_ort(model_cfg)
    elif backend == "ct2":
        loaded = ct2.load_ct2(model_cfg)
    else:
        from r2d.model.modeling import load_model_and_tokenizer

        loaded = load_model_and_tokenizer(model_cfg)
    return predictor_for(loaded, generation, max_case_chars)

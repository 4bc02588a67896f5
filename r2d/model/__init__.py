"""The model: loading (source, modeling, quantize, ort, ct2), scoring a closed label set, the Predictor (label +
rationale), its decoding levers (number_guard), the tokenizer and the model directory's metadata (artifacts).

Its public faces are loaded on first use, so `from r2d.model.artifacts import ...` stays free of torch."""

from __future__ import annotations

from typing import Any

_FACES = {
    "Predictor": "r2d.model.inference",
    "TorchPredictor": "r2d.model.torch_predictor",
    "Prediction": "r2d.model.inference",
    "LabelScores": "r2d.model.scoring",
    "load_predictor": "r2d.model.load",
    "predictor_for": "r2d.model.load",
}
__all__ = list(_FACES)


def __getattr__(name: str) -> Any:
    if name not in _FACES:
        raise AttributeError(f"module 'r2d.model' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_FACES[name]), name)

"""The model in use: the Review tab's suggestions come from it, the Improve tab switches it, the header names it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from r2d.checks.consistency import load_calibration
from r2d.config import R2DConfig, with_section
from r2d.model.artifacts import model_source
from r2d.review import session as rv
from r2d.review.jobs import MODEL_SUBDIR, ImproveRuns, run_model_id
from ui.common import load_app_predictor


class ModelInUse:
    """The predictor every tab reads at each event (another page may have switched it), with the folder it came
    from and how far its consistency check can be trusted."""

    def __init__(self, predictor: rv.PredictorLike, cfg: R2DConfig) -> None:
        self.predictor, self.cfg = predictor, cfg
        self.model_dir = cfg.model.name_or_path  # what "Improve the model" starts from; changes on a switch
        self.calibration = load_calibration(self.model_dir)

    def use_run(self, runs: ImproveRuns, run_id: str) -> None:
        """Load a finished run's model for every later suggestion and remember it across restarts.
        Raises TrainingRunError (no such finished run) or ModelLoadError."""
        new_dir = runs.new_model_dir(run_id)
        base, adapter = model_source(new_dir)
        cfg = with_section(self.cfg, model=dataclasses.replace(self.cfg.model, name_or_path=base, adapter_path=adapter))
        predictor = load_app_predictor(cfg)
        predictor.model_id = run_model_id(predictor.model_id, run_id)
        self.predictor, self.model_dir = predictor, str(new_dir)
        self.calibration = load_calibration(new_dir)  # a new model's consistency check is not the old one's
        runs.remember(run_id)

    def revert(self, runs: ImproveRuns) -> None:
        """Back to the model the app was started with, now and after a restart. Raises ModelLoadError."""
        self.predictor = load_app_predictor(self.cfg)
        self.model_dir = self.cfg.model.name_or_path
        self.calibration = load_calibration(self.model_dir)
        runs.forget()

    @property
    def improved(self) -> bool:
        return self.model_dir != self.cfg.model.name_or_path

    def in_run(self, out_dir: Path) -> bool:
        """Whether the model in use is the one a run wrote into out_dir."""
        return Path(self.model_dir) == out_dir / MODEL_SUBDIR

    def line(self) -> str:
        """The header's line: which model, on which backend, how its rationale is chosen."""
        p = self.predictor
        engines = {"onnx": "ONNX Runtime", "ct2": "CTranslate2", "torch": "transformers"}
        engine = engines.get(getattr(p, "backend", "torch"), "transformers")
        line = f"Model `{p.model_id}` · backend `{engine}` · quantization `{p.quantization}`"
        if self.improved:
            line += " · an improved model (Improve tab: 'Back to the starting model')"
        n = p.generation.fact_check_candidates
        if n > 1:
            line += (
                f" · rationale: of {n} candidates the model wrote, the one the fact check finds fewest problems "
                "in (what it still gets wrong is listed beside it)"
            )
        return line

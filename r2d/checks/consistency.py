"""How far the consistency line can be trusted: measured on gold rationales, per model.

The consistency check re-predicts the label from the rationale alone (r2d.review.session.check_consistency). A model
that reads every rationale as "1 — Resuscitation" warns on nearly every case, a nurse's own "non-urgent, no
threat" included. So each model is measured once on gold (case, label, rationale) rows: every
rationale is checked once against its gold label and once against a wrong label (drawn with a seeded RNG). A
warning on the gold pair is a false alarm, one on the wrong pair is a catch. For each probability threshold t
(warn only when the rationale-alone label differs from the chosen one *and* has probability >= t),
precision(t) = catches / (catches + false alarms) on this balanced set; real reviews, where most labels are
right, see fewer catches per false alarm, so the figure is an upper bound.

The app warns (⚠) only at probabilities where precision reaches MIN_PRECISION; below that, or for a model
never measured, a disagreement is shown as a plain hint. The measurement is kept next to the model as
CALIBRATION_FILENAME (`python -m training.calibrate_consistency --model DIR`).
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from r2d.data import Example
from r2d.errors import DatasetSchemaError

logger = logging.getLogger(__name__)

CALIBRATION_FILENAME = "consistency_calibration.json"
MIN_PRECISION = 0.8  # a warning must be right at least 4 times in 5 on the balanced gold set to be shown as one
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


class RationaleScorer(Protocol):
    label_set: tuple[str, ...]

    def predict_label_from_rationale(self, rationale: str) -> Any: ...


@dataclass(frozen=True)
class Calibration:
    """What the consistency check is worth for one model, measured on n gold rationales."""

    model_id: str
    source: str  # the gold rows measured (file or split)
    n: int
    contradicts_gold: float  # share of gold pairs whose rationale alone points to another label (any probability)
    top_labels: dict[str, int]  # how often each label was the rationale-alone label
    precision: dict[str, float | None]  # threshold (as text) -> precision of a warning there (None: no warning)
    warnings: dict[str, int]  # threshold -> warnings on the 2n pairs
    warn_min_probability: float | None  # the lowest threshold reaching MIN_PRECISION; None = never warn
    min_precision: float = MIN_PRECISION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line for a hint: how often the check contradicts gold rationales."""
        return (
            f"on {self.n} gold rationales this check pointed away from the expert label "
            f"{self.contradicts_gold:.0%} of the time"
        )


def calibrate(
    scorer: RationaleScorer, examples: Sequence[Example], model_id: str, source: str, seed: int = 0
) -> Calibration:
    """Measure the check on gold examples (see the module docstring). Raises DatasetSchemaError when none
    of them has a rationale and a label in the scorer's label set."""
    gold = [e for e in examples if e.rationale.strip() and e.label in scorer.label_set]
    if not gold:
        raise DatasetSchemaError(f"{source}: no gold rows with a rationale and a label in {scorer.label_set}")
    rng = random.Random(seed)
    top, tops = [], {}
    for e in gold:
        scores = scorer.predict_label_from_rationale(e.rationale)
        probability = dict(zip(scores.labels, scores.probabilities))[scores.best]
        top.append((scores.best, probability, e.label, rng.choice([y for y in scorer.label_set if y != e.label])))
        tops[scores.best] = tops.get(scores.best, 0) + 1
    precision, warnings = {}, {}
    for t in THRESHOLDS:
        false_alarms = sum(best != gold_label and p >= t for best, p, gold_label, _ in top)
        catches = sum(best != wrong and p >= t for best, p, _, wrong in top)
        warnings[str(t)] = false_alarms + catches
        precision[str(t)] = catches / (catches + false_alarms) if catches + false_alarms else None
    reached = [t for t in THRESHOLDS if (precision[str(t)] or 0.0) >= MIN_PRECISION]
    return Calibration(
        model_id,
        source,
        len(gold),
        sum(b != g for b, _, g, _ in top) / len(gold),
        dict(sorted(tops.items())),
        precision,
        warnings,
        reached[0] if reached else None,
    )


def save_calibration(calibration: Calibration, model_dir: str | Path) -> Path:
    """Write CALIBRATION_FILENAME into the model directory."""
    path = Path(model_dir) / CALIBRATION_FILENAME
    path.write_text(json.dumps(calibration.to_dict(), indent=2) + "\n", encoding="utf-8")
    return path


def load_calibration(model_dir: str | Path) -> Calibration | None:
    """The model's measured calibration, or None when it was never measured (or the file is unreadable)."""
    path = Path(model_dir) / CALIBRATION_FILENAME
    if not path.is_file():
        return None
    try:
        return Calibration(**json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as e:
        logger.warning("ignoring %s: %s", path, e)
        return None


def consistency_line(
    label: str, probability: float, agrees: bool, message: str, model_id: str, calibration: Calibration | None
) -> str:
    """What the screen shows for one check (r2d.review.session.ConsistencyResult's fields): a ⚠ warning only for a
    disagreement at a probability where this model's warnings were measured to reach MIN_PRECISION; a plain
    hint, with the measured figure, for a model whose check is unreliable or was never measured."""
    if calibration is None or calibration.model_id != model_id:
        return f"Hint (the consistency check of this model was not measured, so it is no warning): {message}"
    if calibration.warn_min_probability is None:
        return (
            f"Hint (unreliable for this model: {calibration.summary()}, so it is no warning): "
            f"the rationale alone points to {label} ({probability:.0%})."
        )
    if agrees:
        return message
    if probability >= calibration.warn_min_probability:
        return f"**⚠ {message}**"
    return (
        f"Hint: {message.removeprefix('Warning: ')} (below {calibration.warn_min_probability:.0%}, where this "
        f"check's warnings were right less than {calibration.min_precision:.0%} of the time)"
    )

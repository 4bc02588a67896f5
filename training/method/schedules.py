"""Stage 2 schedules as pure functions of the optimiser step, and the per-example label mix.

alpha(t) weights the predict loss against the explain loss; pi(t) is the chance that an example's
explain task is conditioned on the model's own label instead of the gold one (scheduled sampling).
R2D-C scales pi(t) by the model's confidence against a windowed threshold and anneals a Gumbel-softmax
temperature, both as in the authors' follow-up code (quamranhasan/Reason2Decide-C, src/r2dc_stage2.py). Nothing
here touches a model or the global RNG: randomness comes from a generator the caller seeds.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import torch

from r2d.config import Stage2Config


def warmup_steps(max_steps: int, s: Stage2Config) -> int:
    """W = int(alpha_warmup_fraction * max_steps): the authors' warm-up, shared by alpha, R2D-C's
    confidence calibration and the start of its cycle loss (their `cycle_warmup_steps = alpha_warmup_steps`)."""
    return int(s.alpha_warmup_fraction * max_steps)


def alpha_at(step: int, max_steps: int, s: Stage2Config) -> float:
    """alpha * min(1, step / W) (the authors' warm-up).

    Step 0 gives 0 (explain loss only); a zero-length warm-up gives alpha from the first step.
    """
    warmup = warmup_steps(max_steps, s)
    if warmup <= 0:
        return s.alpha
    return s.alpha * min(1.0, step / warmup)


def sampling_probability(step: int, max_steps: int, s: Stage2Config) -> float:
    """pi(t): 0 before sampling_start_fraction, then a linear ramp, clipped at sampling_cap.

    The ramp is the authors' min(cap, (t - start) / (end - start)): it would reach 1 at
    sampling_end_fraction, so with the defaults pi hits the 0.9 cap at 59% of the steps and stays there.
    An empty ramp (start == end) jumps straight to the cap.
    """
    start = s.sampling_start_fraction * max_steps
    end = s.sampling_end_fraction * max_steps
    if step < start:
        return 0.0
    if end <= start:
        return s.sampling_cap
    return min(s.sampling_cap, (step - start) / (end - start))


def gated_probability(pi: float, confidence: float, threshold: float, sharpness: float) -> float:
    """R2D-C: pi * sigmoid(sharpness * (confidence - threshold)); confident predictions are used more."""
    # sigmoid(z) = (1 + tanh(z / 2)) / 2: the same value, and tanh cannot overflow for very large |z|
    # (one expression instead of an exp() per sign, whose two branches agree wherever they meet)
    return pi * 0.5 * (1.0 + math.tanh(0.5 * sharpness * (confidence - threshold)))


def gumbel_temperature(step: int, max_steps: int, start: float, end: float) -> float:
    """R2D-C cycle-loss temperature, the authors' max(end, start * exp(-ln2 * step / max_steps)).

    The decay rate ln2 / max_steps is theirs and does not depend on `start` or `end`: with their
    1.0 -> 0.5 the temperature halves over the run (0.707 at mid-run) and meets the floor at the last step.
    """
    return max(end, start * math.exp(-math.log(2) * step / max(1, max_steps)))


def _uniforms(n: int, generator: torch.Generator | random.Random) -> list[float]:
    if isinstance(generator, random.Random):
        return [generator.random() for _ in range(n)]
    if isinstance(generator, torch.Generator):
        return torch.rand(n, generator=generator).tolist()
    raise TypeError(f"generator must be a torch.Generator or random.Random, got {type(generator).__name__}")


def mix_labels(
    gold: Sequence[str],
    predicted: Sequence[str],
    pi: float | Sequence[float],
    generator: torch.Generator | random.Random,
) -> tuple[list[str], list[bool]]:
    """Per example, take the predicted label with probability pi (one independent draw each), else gold.

    `pi` is one probability for all examples or one per example (R2D-C gating). Returns the mixed
    labels and which examples used the prediction (True even where prediction == gold).
    pi = 0 never uses a prediction and pi = 1 always does (draws are in [0, 1)).
    Raises ValueError for misaligned inputs or a probability outside [0, 1].
    """
    n = len(gold)
    probs = [float(pi)] * n if isinstance(pi, (int, float)) else [float(p) for p in pi]
    if len(predicted) != n or len(probs) != n:
        raise ValueError(f"gold ({n}), predicted ({len(predicted)}) and pi ({len(probs)}) must align")
    if any(not 0.0 <= p <= 1.0 for p in probs):
        raise ValueError(f"sampling probabilities must be in [0, 1], got {probs}")
    used = [u < p for u, p in zip(_uniforms(n, generator), probs)]
    return [pr if use else g for g, pr, use in zip(gold, predicted, used)], used


class ConfidenceThreshold:
    """R2D-C's threshold, as the authors' follow-up code keeps it (their `confidence_tracker`).

    Confidences are collected from step 0. At step W the threshold is calibrated to the mean confidence of
    the warm-up and the collection restarts; then, every `window_steps` steps after W, it becomes the mean
    of the window just ended (that boundary step included) and the collection restarts again. A batch is
    gated with the threshold in force when it arrives: a refresh applies from the next step on, except at W,
    where the freshly calibrated value is used at once (it gates nothing: pi(W) = 0). Before W the threshold
    is 1.0, the authors' "never use a prediction" (pi is 0 there anyway).
    """

    def __init__(self, warmup_steps: int, window_steps: int) -> None:
        if window_steps < 1:
            raise ValueError(f"window_steps must be >= 1, got {window_steps}")
        self.warmup_steps, self.window_steps = warmup_steps, window_steps
        self.threshold = 1.0
        self._total, self._count = 0.0, 0
        self._next_refresh: int | None = None  # None until calibrated at W

    def update(self, step: int, confidences: Sequence[float]) -> float:
        """Add this batch's confidences (optimiser step `step`); return the threshold to gate them with."""
        self._total += float(sum(confidences))
        self._count += len(confidences)
        if step < self.warmup_steps:
            return 1.0
        if self._next_refresh is None:
            self._refresh()
            self._next_refresh = step + self.window_steps
            return self.threshold
        in_force = self.threshold
        if step >= self._next_refresh:  # once per boundary, also under gradient accumulation
            self._refresh()
            self._next_refresh += self.window_steps * ((step - self._next_refresh) // self.window_steps + 1)
        return in_force

    def _refresh(self) -> None:
        if self._count:
            self.threshold = self._total / self._count
        self._total, self._count = 0.0, 0

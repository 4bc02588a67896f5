"""Stage 2 schedules as pure functions of the optimiser step, and the per-example label mix.

alpha(t) weights the predict loss against the explain loss; pi(t) is the chance that an example's
explain task is conditioned on the model's own label instead of the gold one (scheduled sampling).
R2D-C scales pi(t) by the model's confidence and anneals a Gumbel-softmax temperature. Nothing
here touches a model or the global RNG: randomness comes from a generator the caller seeds.
"""
from __future__ import annotations

import math
import random
from typing import Sequence

import torch

from r2d.config import Stage2Config


def alpha_at(step: int, max_steps: int, s: Stage2Config) -> float:
    """alpha * min(1, step / W) with W = alpha_warmup_fraction * max_steps (the authors' warm-up).

    Step 0 gives 0 (explain loss only); a zero-length warm-up gives alpha from the first step.
    """
    warmup = s.alpha_warmup_fraction * max_steps
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
    z = sharpness * (confidence - threshold)
    # the two branches keep exp() from overflowing for very large |z|
    gate = 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
    return pi * gate


def gumbel_temperature(step: int, max_steps: int, start: float, end: float) -> float:
    """R2D-C cycle-loss temperature, linear from `start` at step 0 to `end` at max_steps, then `end`."""
    if max_steps <= 0:
        return end
    return start + (end - start) * min(1.0, step / max_steps)


def _uniforms(n: int, generator: torch.Generator | random.Random) -> list[float]:
    if isinstance(generator, random.Random):
        return [generator.random() for _ in range(n)]
    if isinstance(generator, torch.Generator):
        return torch.rand(n, generator=generator).tolist()
    raise TypeError(f"generator must be a torch.Generator or random.Random, got {type(generator).__name__}")


def mix_labels(gold: Sequence[str], predicted: Sequence[str], pi: float | Sequence[float],
               generator: torch.Generator | random.Random) -> tuple[list[str], list[bool]]:
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


class RunningConfidence:
    """R2D-C's threshold: the running mean confidence, re-read every `refresh_steps` optimiser steps.

    Until the first refresh the threshold follows the running mean (so it exists from step 0);
    afterwards it is frozen between refreshes, as in the authors' follow-up code.
    """

    def __init__(self, refresh_steps: int) -> None:
        if refresh_steps < 1:
            raise ValueError(f"refresh_steps must be >= 1, got {refresh_steps}")
        self.refresh_steps = refresh_steps
        self.total = 0.0
        self.count = 0
        self.threshold = 0.5  # no confidence seen yet: the middle of [0, 1]
        self._last_refresh = -1

    @property
    def mean(self) -> float:
        """Mean of every confidence seen so far (the current threshold before any)."""
        return self.total / self.count if self.count else self.threshold

    def update(self, step: int, confidences: Sequence[float]) -> float:
        """Add this batch's confidences; return the threshold to gate them with."""
        self.total += float(sum(confidences))
        self.count += len(confidences)
        window = step // self.refresh_steps
        if window == 0 or window != self._last_refresh:
            self.threshold = self.mean
            self._last_refresh = window
        return self.threshold

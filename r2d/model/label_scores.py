"""Label scores from token log-probabilities: the one normalisation every engine shares (no torch).

A label's score is its sequence log-likelihood (the sum of its token log-probs, `</s>` included); the
probabilities are the softmax of those sums over the candidates; the confidence is the geometric-mean token
probability of the best label. r2d.model.scoring says why each is what it is. All in float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LabelScores:
    """Scores of one case over its candidate labels."""

    labels: tuple[str, ...]
    log_likelihoods: tuple[float, ...]  # sum of token log-probs of each label, </s> included (ranks labels)
    probabilities: tuple[float, ...]  # softmax over the candidates' log-likelihoods; sums to 1
    confidence: float  # geometric-mean token probability of the best label (R2D-C's; length-comparable)

    @property
    def best(self) -> str:
        return self.labels[self.best_index]

    @property
    def best_index(self) -> int:
        return max(range(len(self.labels)), key=self.log_likelihoods.__getitem__)


def scores_from_token_logprobs(
    candidates: Sequence[Sequence[str]], token_logps: Sequence[Sequence[float]]
) -> list[LabelScores]:
    """LabelScores from each (case, candidate) pair's token log-probs (`</s>` included), pairs grouped by case
    in candidate order: the sums, softmax and confidence of every engine (r2d.model.scoring's
    score_candidates, the ONNX Runtime and CTranslate2 predictors).
    Raises ValueError when the pair count does not match the candidates."""
    if len(token_logps) != sum(len(c) for c in candidates):
        raise ValueError(f"{len(token_logps)} scored pairs for {sum(len(c) for c in candidates)} candidates")
    if any(len(t) == 0 for t in token_logps):
        raise ValueError("a scored candidate has no tokens (not even </s>)")
    sums = [float(np.asarray(t, dtype=np.float32).sum(dtype=np.float32)) for t in token_logps]
    return group_scores(candidates, sums, [s / len(t) for s, t in zip(sums, token_logps)])


def group_scores(
    candidates: Sequence[Sequence[str]], seq_logp: list[float], mean_logp: list[float]
) -> list[LabelScores]:
    """Each case's LabelScores from its candidates' summed (seq_logp) and mean (mean_logp) token log-probs."""
    results, start = [], 0
    for cands in candidates:
        ll = np.asarray(seq_logp[start : start + len(cands)], dtype=np.float32)
        exp = np.exp(ll - ll.max())
        probs = (exp / exp.sum(dtype=np.float32)).tolist()
        best = int(ll.argmax())
        results.append(
            LabelScores(
                labels=tuple(cands),
                log_likelihoods=tuple(ll.tolist()),
                probabilities=tuple(probs),
                confidence=float(np.exp(np.float32(mean_logp[start + best]))),
            )
        )
        start += len(cands)
    return results

"""Label and rationale metrics: pure Python (no torch), so reports and tests import them cheaply.

Label metrics follow scikit-learn's conventions, which the authors' evaluation used
(`f1_score(gold, pred, average="macro")`): macro-F1 averages per-class F1 over the sorted union of
gold and predicted labels, and a class that is never predicted has precision 0 (not undefined).
Severe under-triage counts emergencies (gold KTAS 1-2) predicted 4-5; its rate is a share of the emergencies.
BLEU is the paper's: NLTK sentence BLEU-4 with smoothing method4 on `nltk.word_tokenize` of the
lowercased texts, exactly, where NLTK's Punkt data is installed; it is not on PyPI, so on a machine
without it the Punkt sentence split is replaced by a split after ., ! or ? and whitespace and each
sentence goes through the same NLTK word tokenizer (`bleu_tokenizer()` says which ran; the two differ
only where Punkt would not end a sentence, e.g. after an abbreviation). NLTK is imported where BLEU is
computed, not with this module (about 1,900 modules). Consistency and sufficiency are the
Reason2Decide-C definitions (consistency() and sufficiency() below; docs/EVALUATION.md, "How each figure
is computed").
"""

from __future__ import annotations

import functools
import logging
import re
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from r2d.data import _label_key
from r2d.errors import R2DError

logger = logging.getLogger(__name__)

# severe under-triage: an emergency (KTAS 1 resuscitation, 2 emergency) called less urgent or non-urgent (4, 5)
EMERGENCY_MAX = 2
NON_URGENT_MIN = 4

# where Punkt is missing: a sentence ends at ., ! or ? followed by whitespace
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


class MetricInputError(R2DError, ValueError):
    """Metric inputs that cannot be scored: empty, of different lengths, or outside the label set."""


@dataclass(frozen=True)
class ClassScores:
    """Per-class precision/recall/F1 (0.0 where undefined, as scikit-learn's zero_division=0)."""

    precision: float
    recall: float
    f1: float
    support: int  # gold examples of this class
    predicted: int  # examples predicted as this class

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TriageErrors:
    """Under-triage (predicted less urgent than gold) and over-triage (more urgent) over all cases."""

    under_triage_rate: float
    over_triage_rate: float
    under_triage: int
    over_triage: int
    n: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SevereUnderTriage:
    """Emergencies (gold KTAS 1-2) predicted less urgent (KTAS 4-5): the error triage must never make."""

    count: int  # emergencies predicted 4-5
    emergencies: int  # gold 1-2
    rate: float | None  # count / emergencies (a share of the emergencies, not of all cases); None without any

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- input checks --------------------------------------------------------------------------------


def _check_pair(first: Sequence[Any], second: Sequence[Any], names: tuple[str, str]) -> None:
    if len(first) == 0 or len(second) == 0:
        raise MetricInputError(f"cannot score empty lists ({names[0]}: {len(first)}, {names[1]}: {len(second)})")
    if len(first) != len(second):
        raise MetricInputError(
            f"{names[0]} has {len(first)} items but {names[1]} has {len(second)}; they must be aligned one to one"
        )


def sort_labels(labels: Sequence[str] | set[str]) -> list[str]:
    """Distinct labels, numbers in numeric order ("2" before "10"), then text alphabetically."""
    return sorted(set(labels), key=_label_key)


def _resolve_labels(gold: Sequence[str], pred: Sequence[str], labels: Sequence[str] | None) -> list[str]:
    """The label list to score over; raises MetricInputError if gold/pred use labels outside it."""
    if labels is None:
        return sort_labels(set(gold) | set(pred))
    if len(labels) == 0:
        raise MetricInputError("labels is empty; pass None to use the labels that occur")
    if len(set(labels)) != len(labels):
        raise MetricInputError(f"labels has duplicates: {list(labels)}")
    outside = sort_labels((set(gold) | set(pred)) - set(labels))
    if outside:
        raise MetricInputError(
            f"label(s) {outside} occur in gold or predictions but not in the label set "
            f"{list(labels)}; check the data against the model's label set"
        )
    return list(labels)


# --- label metrics -------------------------------------------------------------------------------


def accuracy(gold: Sequence[str], pred: Sequence[str]) -> float:
    """Share of exact label matches. Raises MetricInputError for empty or misaligned lists."""
    _check_pair(gold, pred, ("gold", "pred"))
    return sum(g == p for g, p in zip(gold, pred)) / len(gold)


def per_class_f1(
    gold: Sequence[str], pred: Sequence[str], labels: Sequence[str] | None = None
) -> dict[str, ClassScores]:
    """Precision, recall, F1, support and predicted count per label, in label order.

    `labels` defaults to the sorted union of gold and predicted labels. Undefined ratios are 0.0.
    Raises MetricInputError for empty/misaligned lists or labels outside `labels`.
    """
    _check_pair(gold, pred, ("gold", "pred"))
    names = _resolve_labels(gold, pred, labels)
    tp = Counter(g for g, p in zip(gold, pred) if g == p)
    support, predicted = Counter(gold), Counter(pred)
    scores = {}
    for label in names:
        precision = tp[label] / predicted[label] if predicted[label] else 0.0
        recall = tp[label] / support[label] if support[label] else 0.0
        # 2tp / (2tp + fp + fn): equals the harmonic mean, and is 0 (not 0/0) when tp = 0
        denominator = predicted[label] + support[label]
        f1 = 2 * tp[label] / denominator if denominator else 0.0
        scores[label] = ClassScores(precision, recall, f1, support[label], predicted[label])
    return scores


def macro_f1(gold: Sequence[str], pred: Sequence[str], labels: Sequence[str] | None = None) -> float:
    """Unweighted mean of per-class F1 (scikit-learn's average="macro").

    Averaged over `labels` if given, else over the union of gold and predicted labels. A class of
    `labels` that occurs in neither gold nor pred is excluded (its F1 is 0/0, not 0): a test file
    without any KTAS-1 case must not lose a fifth of its score. A class in gold that is never
    predicted, or predicted but absent from gold, counts with F1 0, exactly as in scikit-learn.
    Raises MetricInputError for empty/misaligned lists or labels outside `labels`.
    """
    scores = per_class_f1(gold, pred, labels)
    present = [s.f1 for s in scores.values() if s.support or s.predicted]
    return sum(present) / len(present)


def confusion_matrix(
    gold: Sequence[str], pred: Sequence[str], labels: Sequence[str] | None = None
) -> tuple[list[str], list[list[int]]]:
    """(labels, counts) where counts[i][j] = cases with gold labels[i] predicted as labels[j].

    Raises MetricInputError for empty/misaligned lists or labels outside `labels`.
    """
    _check_pair(gold, pred, ("gold", "pred"))
    names = _resolve_labels(gold, pred, labels)
    index = {label: i for i, label in enumerate(names)}
    counts = [[0] * len(names) for _ in names]
    for g, p in zip(gold, pred):
        counts[index[g]][index[p]] += 1
    return names, counts


def triage_errors(gold: Sequence[str], pred: Sequence[str], ordinal: bool = True) -> TriageErrors:
    """Under- and over-triage rates for ordinal labels where a LARGER number is LESS urgent (KTAS 1-5).

    Under-triage = predicted label number > gold (the dangerous error); over-triage = smaller.
    Raises MetricInputError for empty/misaligned lists, `ordinal=False` (the rates mean nothing for an
    unordered label set such as yes/no/maybe) or labels that are not numbers.
    """
    pairs = _ordinal_pairs(gold, pred, ordinal)
    under = sum(p > g for g, p in pairs)
    over = sum(p < g for g, p in pairs)
    return TriageErrors(under / len(pairs), over / len(pairs), under, over, len(pairs))


def severe_under_triage(gold: Sequence[str], pred: Sequence[str], ordinal: bool = True) -> SevereUnderTriage:
    """Emergencies (gold level <= EMERGENCY_MAX, KTAS 1-2) predicted at level >= NON_URGENT_MIN (KTAS 4-5).

    The rate is the share of the emergencies so called (None when gold holds no emergency), not a share of
    all cases. Raises MetricInputError as triage_errors does (empty, misaligned, unordered or non-numeric).
    """
    pairs = _ordinal_pairs(gold, pred, ordinal)
    emergencies = [p for g, p in pairs if g <= EMERGENCY_MAX]
    count = sum(p >= NON_URGENT_MIN for p in emergencies)
    return SevereUnderTriage(count, len(emergencies), count / len(emergencies) if emergencies else None)


def _ordinal_pairs(gold: Sequence[str], pred: Sequence[str], ordinal: bool) -> list[tuple[float, float]]:
    _check_pair(gold, pred, ("gold", "pred"))
    if not ordinal:
        raise MetricInputError(
            "under/over-triage needs ordinal labels (a larger number = less urgent); this label set is not ordinal"
        )
    try:
        return [(float(g), float(p)) for g, p in zip(gold, pred)]
    except ValueError as e:
        raise MetricInputError(f"under/over-triage needs numeric labels such as KTAS 1-5: {e}") from e


# --- rationale metrics ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _has_punkt() -> bool:
    import nltk

    for resource in ("tokenizers/punkt_tab/english/", "tokenizers/punkt/english.pickle"):
        try:
            nltk.data.find(resource)
            return True
        except LookupError:
            continue
    return False


def bleu_tokenizer() -> str:
    """What bleu_tokens runs on this machine, for reports."""
    if _has_punkt():
        return "nltk.word_tokenize(text.lower()) (the paper's)"
    return (
        "nltk.word_tokenize(sentence, preserve_line=True) per sentence of text.lower(), sentences split "
        "after . ! ? + whitespace (NLTK's Punkt data is not installed)"
    )


def bleu_tokens(text: str) -> list[str]:
    """The paper's BLEU tokens, nltk.word_tokenize(text.lower()); without Punkt, the closest NLTK-only match."""
    from nltk.tokenize import word_tokenize

    text = text.lower()
    if _has_punkt():
        return word_tokenize(text)
    return [token for sentence in _SENTENCE_END.split(text) for token in word_tokenize(sentence, preserve_line=True)]


def sentence_bleu(reference: str, hypothesis: str) -> float:
    """NLTK sentence BLEU-4 of hypothesis against one reference, smoothing method4, in [0, 1].

    An empty hypothesis or reference scores 0.0 (nothing matches).
    """
    from nltk.translate.bleu_score import SmoothingFunction
    from nltk.translate.bleu_score import sentence_bleu as nltk_sentence_bleu

    ref, hyp = bleu_tokens(reference), bleu_tokens(hypothesis)
    if not ref or not hyp:
        return 0.0
    with warnings.catch_warnings():
        # NLTK warns on every short sentence lacking some n-gram order; smoothing already handles it
        warnings.simplefilter("ignore", UserWarning)
        return float(nltk_sentence_bleu([ref], hyp, smoothing_function=SmoothingFunction().method4))


def mean_sentence_bleu(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Mean of sentence_bleu over aligned pairs (the authors' "average BLEU", not corpus BLEU).

    Raises MetricInputError for empty or misaligned lists.
    """
    _check_pair(references, hypotheses, ("references", "hypotheses"))
    return sum(sentence_bleu(r, h) for r, h in zip(references, hypotheses)) / len(references)


def consistency(first_pred: Sequence[str], repredicted: Sequence[str]) -> float:
    """R2D-C consistency: share where the label re-predicted from the generated rationale alone
    equals the model's first prediction. Raises MetricInputError for empty or misaligned lists."""
    _check_pair(first_pred, repredicted, ("first_pred", "repredicted"))
    return sum(a == b for a, b in zip(first_pred, repredicted)) / len(first_pred)


def sufficiency(gold: Sequence[str], repredicted: Sequence[str]) -> float:
    """R2D-C sufficiency: share where the label re-predicted from the generated rationale alone
    equals the gold label. Raises MetricInputError for empty or misaligned lists."""
    _check_pair(gold, repredicted, ("gold", "repredicted"))
    return sum(a == b for a, b in zip(gold, repredicted)) / len(gold)

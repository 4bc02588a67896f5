"""Agreement between reviewers on the cases two or more of them labelled: Cohen's and Fleiss' kappa.

Small, exact implementations (checked against the worked examples of Cohen 1960 / Fleiss 1971 as
reproduced on Wikipedia) rather than a scikit-learn or statsmodels dependency for two formulas.
Fleiss' kappa uses the usual generalisation to a varying number of raters per case (each case's
agreement is averaged over its own rater pairs); with the same number of raters everywhere it is
exactly Fleiss (1971).
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from r2d.review.store import ReviewRecord


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's kappa of two raters over the same items; None when undefined (no items, or chance agreement 1)."""
    if len(a) != len(b):
        raise ValueError(f"two raters need the same items: {len(a)} vs {len(b)} labels")
    n = len(a)
    if n == 0:
        return None
    observed = sum(x == y for x, y in zip(a, b)) / n
    count_a, count_b = Counter(a), Counter(b)
    chance = sum(count_a[k] * count_b[k] for k in count_a) / (n * n)
    return None if chance == 1.0 else (observed - chance) / (1.0 - chance)


def fleiss_kappa(table: Sequence[Mapping[str, int]]) -> float | None:
    """Fleiss' kappa from per-item category counts ({label: raters}); items with fewer than 2 raters are left
    out. None when undefined (no item, or every rating in one category)."""
    rows = [row for row in table if sum(row.values()) >= 2]
    if not rows:
        return None
    per_item = []
    totals: Counter = Counter()
    for row in rows:
        n = sum(row.values())
        per_item.append(sum(c * (c - 1) for c in row.values()) / (n * (n - 1)))
        totals.update(row)
    observed = sum(per_item) / len(per_item)
    grand = sum(totals.values())
    chance = sum((c / grand) ** 2 for c in totals.values())
    return None if chance == 1.0 else (observed - chance) / (1.0 - chance)


@dataclass(frozen=True)
class PairAgreement:
    reviewers: tuple[str, str]
    n_cases: int
    agreement: float  # share of shared cases with the same label
    kappa: float | None


@dataclass(frozen=True)
class Agreement:
    """Agreement on the cases with two or more reviewers' current reviews."""

    n_cases: int  # cases with >= 2 reviewers
    n_reviewers: int
    observed: float | None  # mean share of agreeing rater pairs per case
    fleiss: float | None
    pairs: tuple[PairAgreement, ...] = field(default=())  # Cohen's kappa per pair of reviewers, most shared first
    disagreements: tuple[tuple[ReviewRecord, ...], ...] = field(default=())  # per case, its reviews


def agreement(reviews: Sequence[ReviewRecord]) -> Agreement:
    """Agreement of every reviewer's current review (store.reviewer_reviews()) on the final label."""
    by_case: dict[str, list[ReviewRecord]] = defaultdict(list)
    for r in reviews:
        by_case[r.case_id].append(r)
    shared = {case: rs for case, rs in by_case.items() if len(rs) >= 2}
    tables = [Counter(r.final_label for r in rs) for rs in shared.values()]
    per_case = [
        sum(c * (c - 1) for c in t.values()) / (len(rs) * (len(rs) - 1)) for t, rs in zip(tables, shared.values())
    ]
    return Agreement(
        n_cases=len(shared),
        n_reviewers=len({r.reviewer for rs in shared.values() for r in rs}),
        observed=sum(per_case) / len(per_case) if per_case else None,
        fleiss=fleiss_kappa(tables),
        pairs=_pairs(shared),
        disagreements=tuple(tuple(rs) for rs in shared.values() if len({r.final_label for r in rs}) > 1),
    )


def _pairs(shared: Mapping[str, Sequence[ReviewRecord]]) -> tuple[PairAgreement, ...]:
    labels: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for rs in shared.values():
        by_reviewer = {r.reviewer: r.final_label for r in rs}
        for x, y in itertools.combinations(sorted(by_reviewer), 2):
            labels[(x, y)].append((by_reviewer[x], by_reviewer[y]))
    pairs = [
        PairAgreement(
            pair, len(v), sum(a == b for a, b in v) / len(v), cohen_kappa([a for a, _ in v], [b for _, b in v])
        )
        for pair, v in labels.items()
    ]
    return tuple(sorted(pairs, key=lambda p: (-p.n_cases, p.reviewers)))

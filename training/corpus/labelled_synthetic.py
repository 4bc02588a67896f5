"""Synthetic Stage-2 cases whose KTAS level the triage facts fix: the first-order modifiers.

KTAS has 18 resuscitation cases in its training split, and the model called unresponsive and pulseless
patients "less urgent". KTAS's first-order modifiers (consciousness, haemodynamics, breathing, pain;
r2d.checks.rules.first_order_modifiers) set the most urgent level a finding calls for, whatever the complaint.
A case drawn by training.corpus.synthetic whose floor from consciousness, circulation or breathing is KTAS 1
or 2 is labelled with that floor: nothing more urgent exists for 1, and for 2 the sampled facts hold
nothing that calls for 1. Pain is left out of the floor here (KTAS's severe-pain row is for central
pain, which the facts do not record), and cases with a milder or no modifier are left out, since their
level depends on the complaint (second-order modifiers), which the facts sampled here do not decide.
The rationale is the usual label-free rule rationale.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

from r2d.checks.rules import urgency_floor, write_rationale
from r2d.data import Example
from training.corpus.synthetic import STYLES, case_text, sample_facts

FIXED_LEVELS = ("1", "2")  # the floors that fix a level without the complaint


def modifier_labelled_examples(
    n: int, complaints: Sequence[str], seed: int, max_draws: int | None = None
) -> list[Example]:
    """n synthetic adult cases labelled by their first-order-modifier floor (KTAS 1 or 2), deterministic per
    seed, in every style of training.corpus.synthetic. Raises RuntimeError if max_draws draws (default 200 n) give
    fewer than n (the sampler would have stopped producing critical findings)."""
    rng, out, draws = random.Random(seed), [], 0
    limit = max_draws if max_draws is not None else 200 * max(1, n)
    while len(out) < n:
        draws += 1
        if draws > limit:
            raise RuntimeError(f"only {len(out)} of {n} modifier-labelled cases in {limit} draws")
        facts = sample_facts(rng, complaints)
        level = urgency_floor(replace(facts, pain_score=None))
        if level not in FIXED_LEVELS:
            continue
        text = case_text(rng, facts, rng.choice(STYLES))
        out.append(Example(text, level, write_rationale(facts), "rules", f"modifier-{seed}-{len(out)}"))
    return out

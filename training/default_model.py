"""The recipe of the embedded default model: KTAS triage, Stage 1 then Stage 2, written into assets/.

    python -m training.default_model                       # own tokenizer + small T5 from scratch (CPU, minutes)
    python -m training.default_model --init google/flan-t5-base --out assets/models/r2d-ktas-flan-base   # with a network

No pretrained T5 can be installed on our machines, so the default model starts from random weights with
a tokenizer fitted to the KTAS training texts. Every step is the project's own pipeline, unchanged:
training.prepare_data (KTAS -> stratified JSONL splits), training.stage1, training.stage2 and
training.evaluate on the held-out test split. The output directory gets the model, its config, its
test report and a MODEL_CARD.md whose figures come from that report.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from r2d.config import R2DConfig, load_config
from r2d.data import atomic_write_text
from r2d.errors import R2DError
from r2d.sources import KTAS_LABEL_NAMES
from training import evaluate, prepare_data
from training.common import setup_logging

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "training" / "configs" / "default_model.json"
DEFAULT_OUT = ROOT / "assets" / "models" / "r2d-ktas-small"
DEFAULT_KTAS = ROOT.parent / "shared" / "data" / "ktas" / "data.csv"
REPORT_FILENAME = "eval_report.json"
CARD_FILENAME = "MODEL_CARD.md"
KTAS_META = {"task": "ktas-triage", "ordinal": True, "label_names": KTAS_LABEL_NAMES}


def prepare_splits(ktas_csv: Path, work: Path, seed: int) -> dict[str, Path]:
    """Write the stratified KTAS splits with training.prepare_data; return split -> file."""
    out = work / "data"
    code = prepare_data.main(["ktas", "--source", str(ktas_csv), "--out", str(out), "--seed", str(seed)])
    if code != 0:
        raise R2DError(f"preparing KTAS data from {ktas_csv} failed")
    return {split: out / f"{split}.jsonl" for split in ("train", "val", "test")}


def stage_configs(cfg: R2DConfig, files: dict[str, Path], stage1_steps: int,
                  stage2_steps: int) -> tuple[R2DConfig, R2DConfig]:
    """The same config for both stages but for their data files and step counts."""
    data = replace(cfg.data, train_files=(str(files["train"]),), val_files=(str(files["val"]),),
                   test_files=(str(files["test"]),))
    base = replace(cfg, data=data)
    return (replace(base, optim=replace(cfg.optim, max_steps=stage1_steps)),
            replace(base, optim=replace(cfg.optim, max_steps=stage2_steps)))


def evaluate_on_test(model_dir: Path, test_file: Path, out: Path, quantization: str) -> dict[str, Any]:
    """The evaluation command's own code path, on the held-out split."""
    args = evaluate.parse_args(["--model", str(model_dir), "--data", str(test_file), "--out", str(out),
                                "--quantization", quantization, "--batch-size", "16"])
    report = evaluate.run(args)
    atomic_write_text(out, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return report


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


def model_card(report: dict[str, Any], manifest: dict[str, Any], cfg: R2DConfig, command: str) -> str:
    """MODEL_CARD.md text; every figure is read from the evaluation report or the data manifest."""
    m = report["metrics"]
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    rows = "\n".join(f"| {label} {KTAS_LABEL_NAMES.get(label, '')} | {fmt(s['f1'])} | {s['support']} |"
                     for label, s in report["per_class"].items())
    a = cfg.arch
    return f"""# r2d-ktas-small: the embedded Reason2Decide triage model

**Research prototype, not a medical device.** Trained from scratch on 886 public KTAS cases; it is far weaker
than a triage nurse and must not be used for patient care.

- Task: KTAS level (1 = resuscitation ... 5 = non-urgent) from a triage narrative, with a rationale.
- Method: Reason2Decide, Stage 1 (`explain`) then Stage 2 (`predict` + `given label ... explain`, scheduled sampling).
- Architecture: T5 (gated-GELU) trained from random weights, d_model {a.d_model}, {a.num_layers}+{a.num_decoder_layers} layers,
  {a.num_heads} heads, own Unigram tokenizer of {a.vocab_size} pieces fitted to the training texts.
- Data: KTAS (Moon et al., PLOS ONE 2019), source sha256 `{next(iter(manifest.get('source_files', {}).values()), 'n/a')}`,
  stratified split seed {manifest.get('seed')}: train/val/test = {manifest['counts']['train']['total']}/{manifest['counts']['val']['total']}/{manifest['counts']['test']['total']}.
  Rationales are rule-written from the triage facts (`rationale_source=rules`): the model learns to state the
  findings that drive urgency, not clinical reasoning written by nurses.
- Rebuild: `{command}`

## Held-out test results (n = {report['n']}, quantization {report['quantization']})

| metric | value |
| --- | --- |
| accuracy | {fmt(m.get('accuracy'))} |
| macro-F1 | {fmt(m.get('macro_f1'))} |
| under-triage rate | {fmt(m.get('under_triage_rate'))} |
| over-triage rate | {fmt(m.get('over_triage_rate'))} |
| BLEU vs rule rationale | {fmt(m.get('bleu'))} |
| consistency | {fmt(m.get('consistency'))} |
| sufficiency | {fmt(m.get('sufficiency'))} |

| class | F1 | support |
| --- | --- | --- |
{rows}

The paper reports macro-F1 60.58 for T5-Large on its own (private) triage data; this model is roughly 100x
smaller, starts from no pretraining, and is scored on a different data set. See docs/EVALUATION.md.
"""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.default_model", description=__doc__.split("\n\n")[0])
    p.add_argument("--ktas", type=Path, default=DEFAULT_KTAS, help="KTAS data.csv (default: ../shared/data/ktas)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the finished model goes")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "default_model", help="data splits and stage outputs")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    p.add_argument("--init", default=None, help="start Stage 1 from this model dir or hub id instead of a new T5")
    p.add_argument("--stage1-steps", type=int, default=None, help="default: the config's optim.max_steps")
    p.add_argument("--stage2-steps", type=int, default=None, help="default: the config's optim.max_steps")
    p.add_argument("--seed", type=int, default=None, help="data split and training seed (default: optim.seed)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """Prepare data, train both stages, evaluate on test, publish. Raises R2DError."""
    cfg = load_config(args.config, args.overrides)
    if args.seed is not None:
        cfg = replace(cfg, optim=replace(cfg.optim, seed=args.seed))
    files = prepare_splits(args.ktas, args.work, cfg.optim.seed)
    cfg1, cfg2 = stage_configs(cfg, files, args.stage1_steps or cfg.optim.max_steps,
                               args.stage2_steps or cfg.optim.max_steps)
    from training.stage1 import train_stage1  # torch-heavy imports only once the arguments are good
    from training.stage2 import train_stage2
    s1 = train_stage1(cfg1, args.init, args.work / "stage1", **KTAS_META)
    s2 = train_stage2(cfg2, str(s1.out_dir), args.work / "stage2", **KTAS_META)
    report = evaluate_on_test(s2.out_dir, files["test"], s2.out_dir / REPORT_FILENAME, quantization="none")
    manifest = json.loads((files["train"].parent / prepare_data.MANIFEST).read_text(encoding="utf-8"))
    atomic_write_text(s2.out_dir / CARD_FILENAME, model_card(report, manifest, cfg2, command))
    publish(s2.out_dir, args.out)
    logger.info("default model written to %s", args.out)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    command = "python -m training.default_model " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        report = run(args, command.strip())
    except R2DError as e:
        sys.exit(f"error: {e}")
    print(evaluate.format_table(report))
    print(f"model written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

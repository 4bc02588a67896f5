"""The CUDA paths the README promises, measured on a GPU: a QLoRA Stage-2 step and 4-bit inference.

    python benchmarks/gpu_checks.py --out gpu_checks.json      # on a CUDA machine with bitsandbytes

At flan-t5-base shape (random weights, T5's 32,128-token vocabulary; benchmarks/bench_inference.py builds
it): (1) two QLoRA Stage-2 steps through training.stage2 with training/configs/flan_t5_base_qlora.json
(4-bit NF4 base, LoRA on every projection, bf16) on KTAS, with the peak GPU memory; (2) the Predictor on
CUDA at 4-bit and at bf16: label ms (label-set scoring), ms per rationale token (64 tokens forced),
GPU memory after loading. Prints and writes a JSON of figures; asserts nothing (no timed tests).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def qlora_step(model_dir: Path, data_dir: Path, out: Path) -> dict:
    import torch

    from r2d.config import load_config
    from training.stage2 import train_stage2

    overrides = [
        f'data.train_files=["{data_dir / "train.jsonl"}"]',
        f'data.val_files=["{data_dir / "val.jsonl"}"]',
        "optim.max_steps=2",
        "optim.eval_steps=2",
        "optim.batch_size=8",
        "optim.gradient_accumulation_steps=1",
        "optim.num_workers=0",
    ]
    cfg = load_config(ROOT / "training" / "configs" / "flan_t5_base_qlora.json", overrides)
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    result = train_stage2(cfg, str(model_dir), out)
    return {
        "seconds_for_2_steps_and_1_eval": round(time.perf_counter() - t0, 1),
        "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20),
        "best_macro_f1": result.best_metric,
        "adapter_saved": (Path(out) / "adapter_config.json").is_file(),
    }


def inference(model_dir: Path, quantization: str, cases: list[str]) -> dict:
    import torch

    from r2d.config import GenerationConfig, ModelConfig
    from r2d.model.load import load_predictor
    from r2d.model.scoring import tokenize_inputs
    from r2d.prompts import explain_given_label_prompt

    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated()
    cfg = ModelConfig(
        name_or_path=str(model_dir), device="cuda", quantization=quantization, compute_dtype="bfloat16", backend="torch"
    )
    predictor = load_predictor(cfg, GenerationConfig(max_rationale_tokens=64))
    loaded_mib = (torch.cuda.memory_allocated() - before) / 2**20
    model, tok = predictor.model, predictor.tokenizer
    labels, per_token = [], []
    for i, case in enumerate(cases):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        label = predictor.predict_label(case).best
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        enc = tokenize_inputs(tok, [explain_given_label_prompt(case, label)], 256, "cuda")
        with torch.no_grad():
            model.generate(**enc, max_new_tokens=64, min_new_tokens=64, do_sample=False)
        torch.cuda.synchronize()
        if i:  # the first case warms up
            labels.append((t1 - t0) * 1000)
            per_token.append((time.perf_counter() - t1) * 1000 / 64)
    return {
        "quantization": predictor.quantization,
        "label_ms": round(statistics.median(labels), 1),
        "ms_per_token": round(statistics.median(per_token), 2),
        "weights_gpu_mib": round(loaded_mib),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True, help="a prepare_data ktas folder (train/val.jsonl)")
    p.add_argument("--cases", type=int, default=6)
    args = p.parse_args(argv)
    import bench_inference
    import torch
    import transformers

    from r2d.data import load_examples

    figures: dict = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    with tempfile.TemporaryDirectory() as tmp:
        dirs = bench_inference.build_dirs(Path(tmp), "base", ["fp32"])
        cases = [e.case_text for e in load_examples(args.data / "val.jsonl")[: args.cases + 1]]
        for name, run in (
            ("inference_4bit", lambda: inference(dirs["full"], "4bit", cases)),
            ("inference_bf16", lambda: inference(dirs["full"], "none", cases)),
            ("qlora_stage2", lambda: qlora_step(dirs["full"], args.data, Path(tmp) / "qlora")),
        ):
            try:
                figures[name] = run()
            except Exception as e:  # a check that fails is a figure too; the others still run
                figures[name] = {"error": f"{type(e).__name__}: {e}"}
            print(name, figures[name], flush=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

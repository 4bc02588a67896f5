#!/usr/bin/env bash
# One call on a lent GPU machine (torch and transformers preinstalled, no internet), everything at once:
#   - the default model's build (training.gpu_build: 3 seeds side by side, the best on validation packed),
#   - the method comparison at the config's own budget (training.report: SFT, DSS, Reason2Decide, R2D-C x
#     both initialisations x seeds 0-2, one process per seed and initialisation) and PubMedQA end to end,
#   - the CUDA checks (benchmarks/gpu_checks.py) and the gpu-marked tests.
# Carried beside the working tree (.git/info/exclude ignores both):
#   .whl/site          bitsandbytes 0.50.2 unpacked with only its CUDA 13.0 and CPU libraries, and nltk (BLEU)
#   .gpu/shared_data   ../shared/data/ktas and pubmedqa (the machine has no ../shared)
# What must come back is written under $OUT (at most 8 files of 16 MB). Every step has a deadline, so the
# call ends inside its limit with whatever finished; the report is rendered here from the runs that did.
set -u
export PYTHONPATH="$PWD/.whl/site:$PWD" PYTHONUNBUFFERED=1 R2D_SHARED_DATA="$PWD/.gpu/shared_data" HF_HUB_OFFLINE=1
export OMP_NUM_THREADS=2
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
STAGE1_MINUTES=${STAGE1_MINUTES:-2.8}; DEADLINE=${DEADLINE:-6.2}; REPORT_S=${REPORT_S:-380}
KTAS="$R2D_SHARED_DATA/ktas/data.csv"
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
} > "$OUT/session.log" 2>&1
python3 -m training.gpu_build --out "$OUT" --work /tmp/r2d_gpu_build --ktas "$KTAS" --workers 3 \
    --stage1-minutes "$STAGE1_MINUTES" --deadline-minutes "$DEADLINE" > /tmp/gpu_build.log 2>&1 &
BUILD=$!
for seed in 0 1 2; do for init in stage1 random; do
  OMP_NUM_THREADS=1 timeout "$REPORT_S" python3 -m training.report --work /tmp/r2d_report --ktas "$KTAS" \
      --seeds $seed --inits $init --out /tmp/report_${seed}_$init.md > /tmp/report_${seed}_$init.log 2>&1 &
done; done
OMP_NUM_THREADS=1 timeout "$REPORT_S" python3 -m training.report --work /tmp/r2d_report --ktas "$KTAS" --seeds 0 \
    --ktas-render-only --pubmedqa --pubmedqa-source "$R2D_SHARED_DATA/pubmedqa" --pubmedqa-stage1-steps 400 \
    --pubmedqa-stage2-steps 400 --out /tmp/report_pqa.md > /tmp/report_pqa.log 2>&1 &
python3 -m training.prepare_data ktas --source "$KTAS" --out /tmp/ktas_checks > /dev/null 2>&1
timeout 150 python3 benchmarks/gpu_checks.py --out "$OUT/gpu_checks.json" --data /tmp/ktas_checks > /tmp/checks.log 2>&1
timeout 90 python3 -m pytest -m gpu tests/test_quantized.py -q -p no:cacheprovider > /tmp/pytest_gpu.log 2>&1
echo "torchrun: $(command -v torchrun || echo absent)" >> /tmp/pytest_gpu.log
wait; date -u >> "$OUT/session.log"
tar czf "$OUT/report_runs.tgz" -C /tmp --exclude='*.safetensors' --exclude='checkpoints' --exclude='*.bin' \
    r2d_report $(cd /tmp && ls report_*.log report_*.md 2>/dev/null)
for f in /tmp/gpu_build.log /tmp/checks.log /tmp/pytest_gpu.log /tmp/r2d_gpu_build/seed*.log; do
  echo "=== $f"; grep -v -e 'it/s\]' -e 's/it\]' "$f" | tail -c 15000
done >> "$OUT/session.log" 2>&1
ls -la "$OUT" >> "$OUT/session.log"

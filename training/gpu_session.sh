#!/usr/bin/env bash
# One call on a lent GPU machine (torch and transformers preinstalled, no internet): the default model's
# build (training.gpu_build, 3 seeds side by side), the CUDA checks (benchmarks/gpu_checks.py) and the
# gpu-marked tests, at once. Carried beside the working tree (.git/info/exclude ignores both):
#   .whl/site     bitsandbytes 0.50.2 unpacked with only its CUDA 13.0 and CPU libraries, and nltk (BLEU)
#   .gpu/shared_data   ../shared/data/ktas and pubmedqa (the machine has no ../shared)
# Everything that must come back is written under $OUT (at most 8 files of 16 MB).
set -u
export PYTHONPATH="$PWD/.whl/site:$PWD" PYTHONUNBUFFERED=1 R2D_SHARED_DATA="$PWD/.gpu/shared_data" HF_HUB_OFFLINE=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
STAGE1_MINUTES=${STAGE1_MINUTES:-3.0}; DEADLINE=${DEADLINE:-6.6}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/session.log"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" >> "$OUT/session.log"
python3 -m training.gpu_build --out "$OUT" --work /tmp/r2d_gpu_build --ktas "$R2D_SHARED_DATA/ktas/data.csv" \
    --stage1-minutes "$STAGE1_MINUTES" --deadline-minutes "$DEADLINE" > /tmp/gpu_build.log 2>&1 &
BUILD=$!
python3 -m training.prepare_data ktas --source "$R2D_SHARED_DATA/ktas/data.csv" --out /tmp/ktas_checks > /dev/null 2>&1
timeout 200 python3 benchmarks/gpu_checks.py --out "$OUT/gpu_checks.json" --data /tmp/ktas_checks > /tmp/checks.log 2>&1
timeout 120 python3 -m pytest -m gpu tests/test_quantized.py -q -p no:cacheprovider > /tmp/pytest_gpu.log 2>&1
command -v torchrun >> /tmp/pytest_gpu.log
wait $BUILD; echo "gpu_build exit $?" >> "$OUT/session.log"
# the logs, each cut to its end, in one file
for f in /tmp/gpu_build.log /tmp/checks.log /tmp/pytest_gpu.log /tmp/r2d_gpu_build/seed*.log; do
  echo "=== $f"; grep -v -e 'it/s\]' -e 's/it\]' "$f" | tail -c 20000
done >> "$OUT/session.log" 2>&1
ls -la "$OUT" >> "$OUT/session.log"

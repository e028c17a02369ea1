#!/usr/bin/env bash
# Measure how far TF32 and bf16 move each experiment's curves from float32: run every named
# experiment (default: every config) at fp32 and at each other precision, each into its own
# folder, then `adamrepro compare` each against fp32 (the largest relative change of the
# selected runs' training cost, against the spread between seeds; README "Precision").
#
#     scripts/measure_precision.sh                        # paper scale on the GPU, every config
#     scripts/measure_precision.sh logreg_mnist mlp       # these experiments only
#     SCALE=quick DEVICE=cpu scripts/measure_precision.sh logreg_mnist   # bf16 on a CPU
#
# Variables: SCALE (paper), DEVICE (cuda), OUT (results/precision-<scale>: runs go to
# OUT/fp32, OUT/tf32, OUT/bf16; the comparisons to OUT/<precision>/compare/<experiment>.csv),
# PRECISIONS (tf32 bf16; bf16 alone on a CPU, where tf32 is fp32), SEEDS (the config's at
# paper scale, else 2: the seed spread needs two), RUN_FLAGS (extra `run` flags, e.g.
# --unverified-data for ../shared/data's CIFAR-10, or --time-budget 8 to work in chunks).
# Resumable like `adamrepro run`: run it again to finish what an interruption left.
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE="${SCALE:-paper}"
DEVICE="${DEVICE:-cuda}"
OUT="${OUT:-results/precision-$SCALE}"
ADAMREPRO="${ADAMREPRO:-python -m adamrepro}"
RUN_FLAGS="${RUN_FLAGS:-}"
if [ "$DEVICE" = cpu ]; then
    PRECISIONS="${PRECISIONS:-bf16}"
else
    PRECISIONS="${PRECISIONS:-tf32 bf16}"
fi
if [ -n "${SEEDS:-}" ]; then
    SEED_FLAG="--seeds $SEEDS"
elif [ "$SCALE" = paper ]; then
    SEED_FLAG=""
else
    SEED_FLAG="--seeds 2"
fi
if [ "$#" -gt 0 ]; then
    EXPERIMENTS=("$@")
else
    EXPERIMENTS=()
    for config in configs/*.yaml; do EXPERIMENTS+=("$(basename "$config" .yaml)"); done
fi

uptime
for experiment in "${EXPERIMENTS[@]}"; do
    for precision in fp32 $PRECISIONS; do
        echo "== $experiment at $precision"
        # shellcheck disable=SC2086  # SEED_FLAG and RUN_FLAGS hold separate words
        $ADAMREPRO run "$experiment" --scale "$SCALE" --device "$DEVICE" \
            --precision "$precision" --out "$OUT/$precision" --quiet $SEED_FLAG $RUN_FLAGS
    done
done
experiment_flags=()
for experiment in "${EXPERIMENTS[@]}"; do experiment_flags+=(-e "$experiment"); done
for precision in $PRECISIONS; do
    $ADAMREPRO compare "$OUT/fp32" "$OUT/$precision" "${experiment_flags[@]}"
done
uptime

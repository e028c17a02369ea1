#!/usr/bin/env bash
# Measure how far TF32 and bf16 move each experiment's curves from float32: run every named
# experiment (default: every config) at fp32, then each method's selected point at fp32 and
# at each other precision, each into its own folder, and `adamrepro compare` each against
# fp32 (the largest relative change of the selected runs' training cost, against the spread
# between seeds; README "Precision").
#
#     scripts/measure_precision.sh                        # paper scale on the GPU, every config
#     scripts/measure_precision.sh logreg_mnist mlp       # these experiments only
#     SCALE=quick DEVICE=cpu scripts/measure_precision.sh logreg_mnist   # bf16 on a CPU
#     BASE=results scripts/measure_precision.sh logreg_mnist   # select from existing fp32 results
#
# The comparison reads the selected runs alone, so with SELECTED=1 (the default) only they
# are trained at the other precisions (`run --only-selected`): at paper scale 18 of the CNN's
# 72 runs per precision. They are trained at fp32 once more too, into OUT/fp32-selected, the
# side they are compared with: with dropout a run's masks come from its group, so both sides
# must train the same groups for the masks to be equal and the difference to be the
# arithmetic alone. SELECTED=0 trains the whole grid at every precision (for a look at every
# point, e.g. Fig. 4's grid) and compares with the fp32 sweep itself.
#
# Variables: SCALE (paper), DEVICE (cuda), OUT (results/precision-<scale>: runs go to
# OUT/fp32, OUT/fp32-selected, OUT/tf32, OUT/bf16; the comparisons to
# OUT/<precision>/compare/<experiment>.csv), BASE (a folder of fp32 results of the same
# configs and scale to select from, e.g. results at paper scale, instead of training
# OUT/fp32), SELECTED (1), PRECISIONS (tf32 bf16; bf16 alone on a CPU, where tf32 is fp32),
# SEEDS (the config's at paper scale, else 2: the seed spread needs two; the selected points
# are trained again with the fp32 side's seeds, BASE's or OUT/fp32's, unless SEEDS is set), RUN_FLAGS (extra
# `run` flags, e.g. --unverified-data for ../shared/data's CIFAR-10, or --time-budget 8 to
# work in chunks).
# Resumable like `adamrepro run`: run it again to finish what an interruption left.
set -euo pipefail
# -h, --help: the comment above (what the script does, the variables it reads), nothing run
case "${1:-}" in -h | --help) sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"; exit 0 ;; esac
# this script's own folder, through a symlink too (one in ~/bin was not the repo's scripts/)
scripts_dir=$(dirname -- "$(readlink -f -- "$0" 2>/dev/null || printf '%s\n' "$0")")
# OUT, BASE and ADAMREPRO_DATA as given are read from the folder the script is called from,
# not from the repo root it works in (BASE=mybase, a folder there, was "not a folder"; a
# relative ADAMREPRO_DATA was the repo's folder of that name)
# shellcheck source=scripts/lib/paths.sh
. "$scripts_dir/lib/paths.sh"
from_caller measure_precision OUT BASE ADAMREPRO_DATA
cd "$scripts_dir/.."
SCALE="${SCALE-paper}"  # set but empty: refused below
DEVICE="${DEVICE:-cuda}"
OUT="${OUT:-results/precision-$SCALE}"
ADAMREPRO="${ADAMREPRO:-python -m adamrepro}"
RUN_FLAGS="${RUN_FLAGS:-}"
if [ "$DEVICE" = cpu ]; then
    PRECISIONS="${PRECISIONS:-bf16}"
else
    PRECISIONS="${PRECISIONS:-tf32 bf16}"
fi
SELECTED="${SELECTED:-1}"
BASE="${BASE:-}"

# Every value checked before the first training: a mistake is one line naming the variable and
# the fix, exit 2, nothing trained or written (found by `run` alone, PRECISIONS=fp16 or an
# unknown second experiment came after the whole fp32 sweep: hours at paper scale; a
# SELECTED=yes trained the whole grid).
refuse() {
    echo "measure_precision: $*" >&2
    exit 2
}
case "$SCALE" in smoke | quick | paper) ;; *)
    refuse "SCALE=$SCALE is not one of smoke|quick|paper; e.g. SCALE=quick" ;;
esac
case "$DEVICE" in auto | cpu | cuda) ;; *)
    refuse "DEVICE=$DEVICE is not one of auto|cpu|cuda; e.g. DEVICE=cpu" ;;
esac
[ -n "${PRECISIONS//[[:space:]]/}" ] \
    || refuse "PRECISIONS names no precision; give tf32, bf16 or both (PRECISIONS=\"tf32 bf16\"), or leave it unset"
for precision in $PRECISIONS; do
    case "$precision" in
        tf32 | bf16) ;;
        fp32) refuse "PRECISIONS=$PRECISIONS: fp32 is the side every other precision is compared with, trained always; give tf32, bf16 or both" ;;
        *) refuse "PRECISIONS=$PRECISIONS: $precision is not tf32 or bf16; e.g. PRECISIONS=\"tf32 bf16\"" ;;
    esac
done
case "$SELECTED" in 0 | 1) ;; *)
    refuse "SELECTED=$SELECTED is not 0 or 1; SELECTED=1 trains the selected points alone at the other precisions, SELECTED=0 the whole grid" ;;
esac
# 10#: bash reads 08 and 09 as octal, and said so in a raw error of its own
if [ -n "${SEEDS:-}" ] && ! [[ "$SEEDS" =~ ^[0-9]+$ && $((10#$SEEDS)) -ge 2 ]]; then
    refuse "SEEDS=$SEEDS is not a number of seeds of at least 2 (the seed spread needs two); e.g. SEEDS=2, or leave it unset"
fi
if [ -n "${SEEDS:-}" ]; then SEEDS=$((10#$SEEDS)); fi
if [ -e "$OUT" ] && [ ! -d "$OUT" ]; then
    refuse "OUT=$OUT is a file; give OUT a folder (new or holding this script's results), or leave it unset"
fi
if [ -n "$BASE" ] && [ ! -d "$BASE" ]; then
    refuse "BASE=$BASE is not a folder; give BASE the --out folder of fp32 results of these experiments, or leave it unset to train them"
fi
if [ "$#" -gt 0 ]; then
    known=$(for config in configs/*.yaml; do basename "$config" .yaml; done | tr '\n' ' ')
    for experiment in "$@"; do
        if [[ ! "$experiment" =~ ^[A-Za-z0-9_.-]+$ ]] || [ ! -f "configs/$experiment.yaml" ]; then
            refuse "unknown experiment '$experiment'; name experiments of configs/: ${known% }"
        fi
    done
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
# Each experiment's fp32 results in BASE, at SCALE, else it would stop there after the ones
# before it (another scale was found by `run` alone)
if [ -n "$BASE" ]; then
    for experiment in "${EXPERIMENTS[@]}"; do
        [ -f "$BASE/$experiment/best.csv" ] \
            || refuse "BASE=$BASE has no results of $experiment ($BASE/$experiment/best.csv is missing); give BASE the --out folder of a finished 'adamrepro run $experiment' at SCALE=$SCALE"
        held=$(grep -o '"scale": *"[a-z]*"' "$BASE/$experiment/config.json" 2>/dev/null \
            | head -n 1 | sed 's/.*"\([a-z]*\)"$/\1/' || true)
        [ -z "$held" ] || [ "$held" = "$SCALE" ] \
            || refuse "BASE=$BASE holds $experiment at $held scale, and SCALE=$SCALE; give SCALE=$held, or a BASE of $SCALE-scale results"
        # the reference is fp32: a bf16 BASE measured bf16 against itself ("identical")
        trained_at=$(grep -o '"precision": *"[a-z0-9]*"' "$BASE/$experiment/config.json" \
            2>/dev/null | head -n 1 | sed 's/.*"\([a-z0-9]*\)"$/\1/' || true)
        [ -z "$trained_at" ] || [ "$trained_at" = fp32 ] \
            || refuse "BASE=$BASE holds $experiment trained at $trained_at precision; give BASE the --out folder of fp32 results (the reference the other precisions are measured against), or leave it unset to train them"
        # the fewest seeds of a selected point (best.csv's n_seeds): the comparison needs two
        # on the fp32 side, BASE's own, or with SELECTED=1 its points trained again with SEEDS
        # (else with BASE's seeds); `compare` said so only after the other precisions trained
        fewest=$(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "n_seeds") c = i; next }
                         c && (m == "" || $c + 0 < m) { m = $c + 0 } END { print m }' \
                     "$BASE/$experiment/best.csv")
        if [ -n "$fewest" ] && [ "$fewest" -lt 2 ] && ! { [ "$SELECTED" = 1 ] && [ -n "${SEEDS:-}" ]; }; then
            refuse "BASE=$BASE holds $experiment with 1 seed a point: no seed spread to compare the precisions against; give a BASE run with --seeds 2 or more$([ "$SELECTED" = 1 ] && echo ", or SEEDS=2 to train its selected points again with two")"
        fi
    done
fi

train() {  # EXPERIMENT PRECISION OUT-FOLDER [more run flags]
    # no --quiet: a terminal shows the bars, a log a line a minute (adamrepro/progress.py)
    # shellcheck disable=SC2086  # SEED_FLAG and RUN_FLAGS hold separate words
    $ADAMREPRO run "$1" --scale "$SCALE" --device "$DEVICE" --precision "$2" --out "$3" \
        $SEED_FLAG $RUN_FLAGS "${@:4}"
}
cat /proc/loadavg  # the load averages (uptime is missing from some bare images)
for experiment in "${EXPERIMENTS[@]}"; do
    base="${BASE:-$OUT/fp32}"
    if [ -z "$BASE" ]; then
        echo "== $experiment at fp32"
        train "$experiment" fp32 "$OUT/fp32"
    fi
    if [ "$SELECTED" = 1 ]; then
        for precision in fp32 $PRECISIONS; do
            folder="$OUT/$precision"
            if [ "$precision" = fp32 ]; then folder="$OUT/fp32-selected"; fi
            echo "== $experiment at $precision, the points selected in $base"
            # every seed of the base's points unless SEEDS says otherwise (--only-selected's
            # own default): a BASE of 3 seeds and the default --seeds 2 left one without a twin
            SEED_FLAG="${SEEDS:+--seeds $SEEDS}" \
                train "$experiment" "$precision" "$folder" --only-selected "$base"
        done
    else
        for precision in $PRECISIONS; do
            echo "== $experiment at $precision"
            train "$experiment" "$precision" "$OUT/$precision"
        done
    fi
done
reference="${BASE:-$OUT/fp32}"
if [ "$SELECTED" = 1 ]; then reference="$OUT/fp32-selected"; fi
experiment_flags=()
for experiment in "${EXPERIMENTS[@]}"; do experiment_flags+=(-e "$experiment"); done
for precision in $PRECISIONS; do
    $ADAMREPRO compare "$reference" "$OUT/$precision" "${experiment_flags[@]}"
done
cat /proc/loadavg  # the load averages (uptime is missing from some bare images)

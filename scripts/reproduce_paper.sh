#!/usr/bin/env bash
# Reproduce the whole paper on a GPU: every experiment config at paper scale, then the figures
# and the report, into results/ (the committed paper-scale folder; results/<scale> at another
# SCALE; OUT=DIR to write elsewhere).
#
#     scripts/reproduce_paper.sh                          # every config, as long as it takes
#     BUDGET_MINUTES=8 scripts/reproduce_paper.sh         # stop cleanly after 8 minutes
#     CONFIGS="configs/logreg_mnist.yaml configs/mlp.yaml" scripts/reproduce_paper.sh
#
# Resumable: `adamrepro run` skips every run already finished (runs/<run_id>.json) and resumes
# a group from its last checkpoint, so after an interruption (a crash, a kill, a lost node, a
# spent budget) running the script again does only what is left. BUDGET_MINUTES is for the
# whole script: each experiment gets what is left of it as `--time-budget`, and once it is
# spent the script draws the figures and the report of what exists and exits with code 3
# (work left), as `adamrepro run` does. An experiment that exits 3 with a minute or more of
# the budget left (`run --split-to-fit` left runs that would not finish) does not stop the
# script: the next experiment gets what is left.
# Data: the default folder ($ADAMREPRO_DATA, else $XDG_CACHE_HOME/adamrepro/data or
# ~/.cache/adamrepro/data); the datasets the configs read are fetched if missing.
set -euo pipefail
# -h, --help: the comment above (what the script does, the variables it reads), nothing run
case "${1:-}" in -h | --help) sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"; exit 0 ;; esac
# this script's own folder, through a symlink too (one in ~/bin was not the repo's scripts/)
scripts_dir=$(dirname -- "$(readlink -f -- "$0" 2>/dev/null || printf '%s\n' "$0")")
# OUT and ADAMREPRO_DATA as given are read from the folder the script is called from, not
# from the repo root it works in (OUT=afile there was not found a file, and the results
# would have gone under the repo); CONFIGS name the repo's configs/, as the examples do
# shellcheck source=scripts/lib/paths.sh
. "$scripts_dir/lib/paths.sh"
from_caller reproduce_paper OUT ADAMREPRO_DATA
cd "$scripts_dir/.."
refuse() {  # one line naming the variable and the fix, exit 2, before anything is fetched or run
    echo "reproduce_paper: $*" >&2
    exit 2
}
# Its settings are variables: an argument (a config's path, a flag) was ignored, and the
# whole paper began to train
if [ "$#" -gt 0 ]; then
    refuse "takes no arguments (got '$1'); its settings are variables, e.g." \
        "CONFIGS=configs/mlp.yaml $0 (--help lists them)"
fi
DEVICE="${DEVICE:-cuda}"
ADAMREPRO="${ADAMREPRO:-python -m adamrepro}"
SCALE="${SCALE-paper}"  # set but empty: refused below  # smoke or quick to try the script on a CPU
# As the Makefile: results/ holds the committed paper-scale folders, so a smaller scale goes
# to results/<scale> (run refuses to replace one scale's tables with another's).
if [ "$SCALE" = paper ]; then OUT="${OUT:-results}"; else OUT="${OUT:-results/$SCALE}"; fi
case "$SCALE" in smoke | quick | paper) ;; *)
    refuse "SCALE=$SCALE is not one of smoke|quick|paper; e.g. SCALE=smoke to try the script on a CPU" ;;
esac
case "$DEVICE" in auto | cpu | cuda) ;; *)
    refuse "DEVICE=$DEVICE is not one of auto|cpu|cuda; e.g. DEVICE=cpu" ;;
esac
# `run`'s own refusal named its flag (--device cpu), which this script's user cannot pass
if [ "$DEVICE" = cuda ]; then
    cuda=0
    python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 3)" 2>/dev/null \
        || cuda=$?
    [ "$cuda" != 3 ] || refuse "DEVICE=cuda (the default): no CUDA device is available here;" \
        "set DEVICE=cpu (or DEVICE=auto) to run on this machine's CPU"
fi
if [ -e "$OUT" ] && [ ! -d "$OUT" ]; then
    refuse "OUT=$OUT is a file; give OUT a results folder (new or holding results), or leave it unset"
fi
# A data folder that is a file, or under one: fetch's own refusal named its --data-dir flag,
# which this script does not take (it passes fetch none; its user sets ADAMREPRO_DATA)
if [ -n "${ADAMREPRO_DATA:-}" ]; then
    above="$ADAMREPRO_DATA"
    while [ ! -e "$above" ] && [ "$above" != / ]; do above=$(dirname -- "$above"); done
    if [ -e "$above" ] && [ ! -d "$above" ]; then
        what="is a file"
        [ "$above" = "$ADAMREPRO_DATA" ] || what="is under a file ($above)"
        refuse "ADAMREPRO_DATA=$ADAMREPRO_DATA $what; give ADAMREPRO_DATA a data folder (new or holding the datasets), or leave it unset"
    fi
fi
# Empty or unset: every config. Set to blanks alone it names none: a mistake, not "every".
if [ -n "${CONFIGS:-}" ] && [ -z "${CONFIGS//[[:space:]]/}" ]; then
    refuse "CONFIGS names no config; e.g. CONFIGS=\"configs/logreg_mnist.yaml configs/mlp.yaml\", or leave it unset for every config"
fi
# The cheap experiments first, so that a short budget finishes whole figures; then any other.
FIRST="logreg_mnist logreg_imdb mlp_sfo vae_bias_correction extensions mlp cnn_cifar10"
if [ -z "${CONFIGS:-}" ]; then
    CONFIGS=""
    for name in $FIRST; do [ -f "configs/$name.yaml" ] && CONFIGS="$CONFIGS configs/$name.yaml"; done
    for config in configs/*.yaml; do
        case " $FIRST " in *" $(basename "$config" .yaml) "*) ;; *) CONFIGS="$CONFIGS $config" ;; esac
    done
fi
# Extra `run` flags, e.g. RUN_FLAGS=--unverified-data where CIFAR-10 is ../shared/data's
# re-encoded copy (the readers that always check their files ignore it).
RUN_FLAGS="${RUN_FLAGS:-}"
# --data-dir reached `run` and not `fetch`, which fetched into the default folder meanwhile
if passes_data_dir "$RUN_FLAGS"; then
    refuse "RUN_FLAGS passes --data-dir, which fetch would not get; set ADAMREPRO_DATA=DIR instead"
fi
BUDGET_MINUTES="${BUDGET_MINUTES:-}"
# A number of minutes above 0 (awk would read abc or -1 as 0: one pass, then "budget spent").
if [ -n "$BUDGET_MINUTES" ] && ! { [[ "$BUDGET_MINUTES" =~ ^([0-9]+[.]?[0-9]*|[.][0-9]+)$ ]] \
        && awk -v b="$BUDGET_MINUTES" 'BEGIN { exit !(b + 0 > 0) }'; }; then
    refuse "BUDGET_MINUTES=$BUDGET_MINUTES is not a number of minutes above 0; e.g. BUDGET_MINUTES=8, or leave it unset for no budget"
fi
BUDGET_SPENT=3  # adamrepro run's exit code when --time-budget stopped it with work left

start=$(date +%s)
status=0
first=$(echo "$CONFIGS" | awk '{ print $1 }')
# The datasets of these configs alone: a machine sent some datasets runs the experiments on them.
# shellcheck disable=SC2086  # one word per config
fetched=$($ADAMREPRO fetch $CONFIGS)
echo "$fetched"
# A copy that is not the official data (../shared's CIFAR-10 went through JPEG) is read only
# with --unverified-data: without it that experiment was refused when its turn came, which
# at paper scale (the CNN last) was after hours of the others' training.
if grep -q "(not the official data" <<< "$fetched" && [[ " $RUN_FLAGS " != *" --unverified-data "* ]]
then
    unofficial=$(grep "(not the official data" <<< "$fetched" | awk '{ print $1 }' | paste -sd, -)
    refuse "the data folder's $unofficial is not the official data (fetch said why, above); pass RUN_FLAGS=--unverified-data for a copy you trust, or put the official files in place"
fi
for config in $CONFIGS; do
    budget=()
    if [ -n "$BUDGET_MINUTES" ]; then
        left=$(awk -v b="$BUDGET_MINUTES" -v s="$(( $(date +%s) - start ))" \
                   'BEGIN { l = b - s / 60; printf "%.3f", (l > 0 ? l : 0) }')
        # The first experiment runs whatever is left, as `run` always trains one group:
        # a budget too short for anything still advances the paper.
        if [ "$config" = "$first" ] || awk -v l="$left" 'BEGIN { exit !(l > 0) }'; then
            budget=(--time-budget "$(awk -v l="$left" 'BEGIN { print (l > 0 ? l : 0.001) }')")
        else
            echo "== $config: the budget of $BUDGET_MINUTES minutes is spent; run again to go on"
            status=$BUDGET_SPENT
            break
        fi
    fi
    echo "== $config"
    # shellcheck disable=SC2086  # RUN_FLAGS holds separate words
    $ADAMREPRO run "$config" --scale "$SCALE" --device "$DEVICE" --out "$OUT" "${budget[@]}" \
        $RUN_FLAGS || status=$?
    if [ "$status" -ne 0 ]; then
        [ "$status" -eq "$BUDGET_SPENT" ] || exit "$status"
        # Work left, yet a minute or more of the budget: `run --split-to-fit` (in RUN_FLAGS)
        # left runs that would not finish for the next command; the next experiment's
        # groups may fit. Less than that: the budget stopped it; stop here.
        awk -v b="$BUDGET_MINUTES" -v s="$(( $(date +%s) - start ))" \
            'BEGIN { exit !(b != "" && b - s / 60 >= 1) }' || break
    fi
done
echo "== training took $(( $(date +%s) - start )) s"
if ls "$OUT"/*/curves.csv >/dev/null 2>&1; then  # a budget may end before any table
    $ADAMREPRO plot --out "$OUT"
    $ADAMREPRO report --out "$OUT"
fi
exit "$status"

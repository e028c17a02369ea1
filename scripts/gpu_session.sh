#!/usr/bin/env bash
# One job on an offline GPU machine: set up from .bundle/ (scripts/offline_bundle.sh), run the
# stages named, and pack what they wrote into one archive, even when a stage fails or the
# budget runs out. Made for lent or preemptible machines with a short time limit and a cap on
# what comes back; every stage resumes where the last job stopped.
#
#     scripts/gpu_session.sh tests kernels precision paper   # stages run in the order given
#     SESSION_MINUTES=9.5 scripts/gpu_session.sh tests sfo paper   # a job killed at 10 minutes
#
# A stage is NAME or NAME=ARG (a part of it: precision=mlp, bench=mlp,mlp:bf16, paper=
# logreg_mnist,mlp); stages joined by '+' run at once, each into RESULTS/stage-<stage>.log,
# shown when all are done (tests+precision=mlp+precision=cnn_cifar10: what checks
# correctness or measures curves, not speed, can share a GPU that quick sweeps leave idle).
# No argument runs the paper stage. A mistake is refused in one line, exit 2, before anything
# runs or is written: an unknown or empty stage, an ARG to tests or sfo (which take none), an
# experiment without a configs/NAME.yaml, a precision not fp32, tf32 or bf16, a DEVICE, SCALE,
# KERNEL_VARIANTS or number that is not one, a RESULTS that is a file, an ARCHIVE whose
# folder is missing or cannot be written to. A failed pack exits 1.
#
# Stages:
#   tests   the CUDA tests (pytest -m cuda: CUDA graphs equal eager, every optimizer on the GPU)
#   bench   `adamrepro bench` of every config at paper scale, a few passes each (ARG or
#           BENCH_CONFIGS: the configs, each NAME or NAME:PRECISION; BENCH_PASSES, default 3;
#           BENCH_FLAGS: more bench flags, e.g. --reference-runs 1)
#   precision  scripts/measure_precision.sh on ARG or PRECISION_EXPERIMENTS (default: mlp
#              cnn_cifar10, where the arithmetic is the time; PRECISION_SCALE, default quick,
#              smoke at SCALE=smoke)
#              into RESULTS/precision-<scale>/; PRECISION_BASE=results (with
#              PRECISION_SCALE=paper) measures on the selected points of the paper results
#              there instead of a sweep of its own (at quick scale Fig. 3's CNN is a quarter
#              of the paper's width: only this measures the paper's network)
#   kernels    scripts/bench_kernels.py: the kernel switches and the precisions tf32 and bf16
#              on logreg_mnist, mlp (KERNEL_STEPS, default 100) and cnn_cifar10 (30 steps)
#              into RESULTS/kernels/ (ARG: other experiments; KERNEL_VARIANTS: some
#              variants, e.g. "plain tf32 bf16", which compile nothing)
#   sfo     scripts/bench_sfo.py: one SFO step at the paper's size (MLP 1000-1000, N = 468;
#           at SCALE=smoke 16-16 and N = 4), SFO_STEPS timed steps (default 100) after the
#           subspace first fills, into RESULTS/bench/
#   paper   scripts/reproduce_paper.sh (BUDGET_MINUTES for the stage, CONFIGS to choose);
#           with a budget, `run --split-to-fit`: the checkpoints are not packed, so a group
#           that would not finish within the job is halved rather than cut off and lost
# Environment: BUNDLE (default .bundle: the wheels, the data and the names of its datasets),
# ARCHIVE (default gpu-session.tar.gz; where the archive goes, outside RESULTS,
# in a folder that exists; split into ARCHIVE.partNN of PART_KIB, default 15360, when larger, an earlier job's parts removed;
# it holds RESULTS by its path in the repo, e.g. results/smoke/, or, outside the repo, by
# its own name, so that `cat ARCHIVE.part* | tar xz` in the repo puts it back),
# PYTHON (default python3), BUDGET_MINUTES, CONFIGS, RESULTS (the results folder, default
# results, or results/<scale> at another SCALE; not OUT, which a lent machine may set to the folder that comes back: the
# archive goes there, e.g. ARCHIVE=$OUT/gpu.tar.gz), BENCH_PASSES (default 3), ADAMREPRO_DATA
# (default ./data); DEVICE=cpu SCALE=smoke try it on a CPU.
# SESSION_MINUTES: the job's own limit (a lent machine's per-command limit, a queue's wall
# time). Each stage then runs under `timeout` with what is left of it less PACK_SECONDS
# (default 45) for packing, a stage that would get less than a minute is skipped, and the
# paper stage's budget is at most what is left less the figures and report (90 s), so the
# archive is always written before the job is killed.
set -uo pipefail
# -h, --help: the comment above (what the script does, the variables it reads), nothing run
case "${1:-}" in -h | --help) sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"; exit 0 ;; esac
# this script's own folder, through a symlink too (one in ~/bin was not the repo's scripts/)
scripts_dir=$(dirname -- "$(readlink -f -- "$0" 2>/dev/null || printf '%s\n' "$0")")
# A relative RESULTS, ARCHIVE, BUNDLE or ADAMREPRO_DATA names a path from where the job was
# started, as reproduce_paper.sh and measure_precision.sh read theirs (not from the repo).
# shellcheck source=scripts/lib/paths.sh
. "$scripts_dir/lib/paths.sh" || exit 2
from_caller gpu_session RESULTS ARCHIVE BUNDLE ADAMREPRO_DATA
cd "$scripts_dir/.." || exit 2
# Every mistake in the command or the environment is refused here, in one line and exit 2,
# before the setup or any stage runs and before anything is written: on a lent machine a
# mistake found later costs the device time of the setup and of every stage before it.
refuse() { echo "gpu_session: $*" >&2; exit 2; }
whole() {  # NAME MIN EXAMPLE: the variable NAME, when set, is a whole number of at least MIN
    local value="${!1:-}"
    [ -z "$value" ] && return 0
    if [[ "$value" =~ ^[0-9]{1,9}$ ]] && [ $(( 10#$value )) -ge "$2" ]; then return 0; fi
    refuse "$1=$value is not a whole number of at least $2; give e.g. $1=$3, or leave it unset"
}
minutes() {  # NAME: the variable NAME, when set, is a positive number (of minutes)
    local value="${!1:-}"
    [ -z "$value" ] && return 0
    if [[ "$value" =~ ^([0-9]+\.?[0-9]*|\.[0-9]+)$ ]] \
            && awk -v m="$value" 'BEGIN { exit !(m > 0) }'; then return 0; fi
    refuse "$1=$value is not a positive number of minutes; give e.g. $1=9.5, or leave it unset"
}
one_of() {  # NAME VALUE CHOICES...: VALUE, which NAME gave, is one of CHOICES
    local name="$1" value="$2" choice
    shift 2
    for choice in "$@"; do [ "$value" = "$choice" ] && return 0; done
    refuse "$name=$value is not one of: $*; give one of these"
}
words() {  # LIST [SEPARATORS]: its words, split at white space and SEPARATORS (default ','),
    local IFS=$' \t\n'"${2-,}"  # into the array `items`
    read -r -d '' -a items <<< "$1" || true
}
configs_known=$(for config in configs/*.yaml; do basename "$config" .yaml; done | xargs)
experiments() {  # WHERE LIST [precision]: each name in LIST is a bundled config's (with
    local item   # `precision`, NAME or NAME:PRECISION)
    words "$2"
    for item in "${items[@]}"; do
        if [ "${3:-}" = precision ] && [ "$item" != "${item%%:*}" ]; then
            case "${item#*:}" in fp32|tf32|bf16) ;; *)
                refuse "$1: the precision of $item is not fp32, tf32 or bf16;" \
                       "give e.g. ${item%%:*}:bf16" ;;
            esac
            item="${item%%:*}"
        fi
        case "$item" in */*|"") ;; *) [ -f "configs/$item.yaml" ] && continue ;; esac
        refuse "$1: no experiment '$item' (no configs/$item.yaml); the bundled ones:" \
               "$configs_known"
    done
}
PYTHON="${PYTHON:-python3}"
BUNDLE_GIVEN="${BUNDLE:-}"
BUNDLE="${BUNDLE:-.bundle}"  # what scripts/offline_bundle.sh made (another: a test's)
command -v "${PYTHON%% *}" > /dev/null \
    || refuse "PYTHON=$PYTHON is not a command here; give the Python to use, e.g. PYTHON=python3"
# A BUNDLE named but missing (a typo) was found by pip, in its own words, after RESULTS and
# an archive were made; where PYTHON has every package it was ignored without a word.
if [ -n "${BUNDLE_GIVEN:-}" ] && [ ! -d "$BUNDLE" ]; then
    refuse "BUNDLE=$BUNDLE is not a folder; give the folder scripts/offline_bundle.sh made" \
           "(default .bundle), or leave it unset"
fi
ARCHIVE="${ARCHIVE:-gpu-session.tar.gz}"
export DEVICE="${DEVICE-cuda}" SCALE="${SCALE-paper}"  # set but empty: refused below
one_of DEVICE "$DEVICE" auto cpu cuda
one_of SCALE "$SCALE" smoke quick paper
[ -z "${PRECISION_SCALE:-}" ] || one_of PRECISION_SCALE "$PRECISION_SCALE" smoke quick paper
# A try at SCALE=smoke measures precision at smoke scale too: at quick scale the four
# arithmetic-bound experiments took a CPU's whole 9.6-minute job, so nothing after them ran.
if [ "$SCALE" = smoke ]; then PRECISION_SCALE="${PRECISION_SCALE:-smoke}"; fi
PRECISION_SCALE="${PRECISION_SCALE:-quick}"
# results/ holds the committed paper-scale folders: a smaller SCALE writes results/<scale>.
if [ "$SCALE" = paper ]; then RESULTS="${RESULTS:-results}"; else RESULTS="${RESULTS:-results/$SCALE}"; fi
export ADAMREPRO_DATA="${ADAMREPRO_DATA:-$PWD/data}"
# the bundle's data is unpacked into ADAMREPRO_DATA: a --data-dir in RUN_FLAGS reached the
# precision stage's `run`, reading another folder, and was refused by the paper stage alone
if passes_data_dir "${RUN_FLAGS:-}"; then
    refuse "RUN_FLAGS passes --data-dir, which the setup would not fill; set ADAMREPRO_DATA=DIR instead"
fi
export PYTHONUNBUFFERED=1
minutes SESSION_MINUTES
minutes BUDGET_MINUTES
whole PACK_SECONDS 0 45
whole PART_KIB 1 15360
whole BENCH_PASSES 1 3
whole KERNEL_STEPS 1 100
whole KERNEL_STEPS_CNN 1 30
whole SFO_STEPS 1 100
# as PRECISIONS and SELECTED: scripts/measure_precision.sh's, judged as it judges them (the
# seed spread needs two seeds; fp32 is the side the others are compared with, always trained)
whole SEEDS 2 2
PART_KIB=$(( 10#${PART_KIB:-15360} ))
words "${PRECISIONS:-}" ""
for item in "${items[@]}"; do one_of PRECISIONS "$item" tf32 bf16; done
[ -z "${SELECTED:-}" ] || one_of SELECTED "$SELECTED" 0 1
if [ -n "${KERNEL_VARIANTS:-}" ]; then
    # the names of adamrepro.bench.kernels.VARIANTS (scripts/bench_kernels.py --variants),
    # read from its source: importing it needs torch and the bundle's wheels
    variants=$($PYTHON -c '
import ast
for node in ast.parse(open("adamrepro/bench/kernels.py").read()).body:
    if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "VARIANTS":
        print(" ".join(key.value for key in node.value.keys))')
    [ -n "$variants" ] || refuse "found no VARIANTS in adamrepro/bench/kernels.py"
    words "$KERNEL_VARIANTS"
    # shellcheck disable=SC2086  # one word per variant
    for item in "${items[@]}"; do one_of KERNEL_VARIANTS "$item" $variants; done
fi
[ -z "${BENCH_CONFIGS:-}" ] || experiments BENCH_CONFIGS "$BENCH_CONFIGS" precision
[ -z "${PRECISION_EXPERIMENTS:-}" ] || experiments PRECISION_EXPERIMENTS "$PRECISION_EXPERIMENTS"
words "${CONFIGS:-}" ""
for item in "${items[@]}"; do
    [ -f "$item" ] || refuse "CONFIGS names $item, which is not a file; give config files," \
                             "e.g. CONFIGS=\"configs/logreg_mnist.yaml configs/mlp.yaml\""
done
if [ -n "${PRECISION_BASE:-}" ] && [ ! -d "$PRECISION_BASE" ]; then
    refuse "PRECISION_BASE=$PRECISION_BASE is not a folder; give a folder of fp32 results," \
           "e.g. PRECISION_BASE=results, or leave it unset"
fi
# RESULTS: a folder, or one that can be made (its first existing parent a writable folder)
if [ -e "$RESULTS" ] && [ ! -d "$RESULTS" ]; then
    refuse "RESULTS=$RESULTS is a file, not a folder; give a folder, e.g. RESULTS=results/gpu"
fi
parent="$RESULTS"
while [ ! -e "$parent" ]; do parent=$(dirname "$parent"); done
if [ ! -d "$parent" ] || [ ! -w "$parent" ]; then
    refuse "RESULTS=$RESULTS cannot be made: $parent is not a writable folder; give another"
fi
# ARCHIVE: a file, outside RESULTS, in a folder that exists and can be written to
case "$(realpath -m "$ARCHIVE")/" in
    "$(realpath -m "$RESULTS")"/*)
        refuse "ARCHIVE=$ARCHIVE lies inside RESULTS=$RESULTS, which it packs;" \
               "put it elsewhere (e.g. ARCHIVE=\$OUT/gpu.tar.gz on a lent machine)" ;;
esac
archive_dir=$(dirname "$ARCHIVE")
if [ ! -d "$archive_dir" ]; then
    refuse "ARCHIVE=$ARCHIVE: its folder $archive_dir does not exist; create it first or" \
           "put the archive in an existing one (e.g. ARCHIVE=\$OUT/gpu.tar.gz on a lent machine)"
elif ! probe=$(mktemp -p "$archive_dir" .gpu_session.XXXXXX 2> /dev/null) \
        || ! rm -f "$probe"; then  # (not `-w`: for root, /proc is writable)
    refuse "ARCHIVE=$ARCHIVE: its folder $archive_dir cannot be written to; put the archive" \
           "in another (e.g. ARCHIVE=\$OUT/gpu.tar.gz on a lent machine)"
elif [ -d "$ARCHIVE" ]; then
    refuse "ARCHIVE=$ARCHIVE is a folder; name the archive's file, e.g." \
           "ARCHIVE=${ARCHIVE%/}/gpu.tar.gz"
fi
# No argument: the paper stage. An argument is a stage, NAME or NAME=ARG, or stages joined by
# '+'; ARG is names joined by ',' (bench: NAME or NAME:PRECISION).
if [ "$#" -eq 0 ]; then set -- paper; fi
known="tests bench precision kernels sfo paper"
for group in "$@"; do  # refused before anything runs: a typo costs no device time
    case "$group" in
        "") refuse "an empty stage name; name one of: $known (no argument at all: paper)" ;;
        *[[:space:]]*) refuse "stage '$group' holds white space; give each stage its own" \
                              "argument, join stages by '+' and names by ','" ;;
        +*|*+|*++*) refuse "'$group' joins an empty stage by '+'; join stages as NAME+NAME" ;;
    esac
    IFS=+ read -r -a stages <<< "$group"
    for stage in "${stages[@]}"; do
        name="${stage%%=*}"
        case "$name" in
            tests|sfo)
                [ "$stage" = "$name" ] || refuse "the $name stage takes no part ('$stage');" \
                                                 "give it as $name alone" ;;
            bench|precision|kernels|paper)
                [ "$stage" = "$name" ] && continue
                case ",${stage#*=}," in *,,*)
                    refuse "'$stage' names an empty experiment; give $name=NAME[,NAME...]" \
                           "(bundled: $configs_known), or $name alone" ;;
                esac
                if [ "$name" = bench ]; then experiments "$stage" "${stage#*=}" precision
                else experiments "$stage" "${stage#*=}"; fi ;;
            "") refuse "stage '$stage' has no name; known: $known" ;;
            *) refuse "unknown stage $name; known: $known" ;;
        esac
    done
done
# Each stage's experiments read datasets the bundle holds: one without IMDB (all three and
# the repo exceed the 64 MiB a lent machine takes) failed the paper stage after the setup,
# on a download that cannot succeed offline. The dataset of a config is read with the
# machine's pyyaml, else from the bundled configs' one-line `dataset: {name: ...}`.
dataset_of() {
    $PYTHON -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["dataset"]["name"])' \
        "$1" 2> /dev/null || sed -n 's/^dataset:.*name: *\([A-Za-z0-9_]*\).*/\1/p' "$1"
}
needs_bundled() {  # STAGE NAME...: each experiment NAME (or a config file) reads bundled data
    local where="$1" item file name
    shift
    for item in "$@"; do
        case "$item" in mnist|imdb|cifar10) name="$item" file="" ;; *)  # a dataset itself
            file="$item"
            [ -f "$file" ] || file="configs/${item%%:*}.yaml"
            name=$(dataset_of "$file") ;;
        esac
        case " $bundled " in *" $name "*) continue ;; esac
        # the tests and sfo stages take no experiments: leaving the stage out is the choice
        case "$where" in
            tests | sfo) other="leave the $where stage out" ;;
            *) other="name only experiments on those (e.g. $where=NAME)" ;;
        esac
        refuse "$where: ${file:+$(basename "$file" .yaml) reads }$name, which $BUNDLE/ lacks" \
               "(it holds: $bundled); $other, or bundle $name too" \
               "(scripts/offline_bundle.sh --datasets)"
    done
}
if [ -f "$BUNDLE/datasets" ]; then
    bundled=$(xargs < "$BUNDLE/datasets")
    # shellcheck disable=SC2086  # one word per config
    all_configs=$(printf "configs/%s.yaml " $configs_known)
    for group in "$@"; do
        IFS=+ read -r -a stages <<< "$group"
        for stage in "${stages[@]}"; do
            name="${stage%%=*}" arg=""
            case "$stage" in *=*) arg="${stage#*=}" ;; esac
            case "$name" in
                tests) list="mnist cifar10" ;;  # what the CUDA tests read
                sfo) list="mnist" ;;
                bench) list="${arg:-${BENCH_CONFIGS:-$configs_known}}" ;;
                precision) list="${arg:-${PRECISION_EXPERIMENTS:-mlp cnn_cifar10}}" ;;
                kernels) list="${arg:-logreg_mnist,mlp,cnn_cifar10}" ;;
                paper) list="${arg:-${CONFIGS:-$all_configs}}" ;;
            esac
            words "$list"
            needs_bundled "$name" "${items[@]}"
        done
    done
fi

LOG="$RESULTS/gpu-session.log"
# mkdir's own error would come before the line (root passes -w above where it may not write)
mkdir -p "$RESULTS" 2> /dev/null || refuse "RESULTS=$RESULTS cannot be made; give another folder"
# tee leaves INT and TERM to this script: sent to the whole process group (`timeout`, a
# Ctrl-C) it died with the stages, and the pack on exit died writing its first line to it
exec > >(trap '' INT TERM; exec tee -a "$LOG") 2>&1
tee_pid=$!
started=$(date +%s)

# The archive holds the results folder by its path in the repo (results/..., results/smoke/...:
# `cat ARCHIVE.part* | tar xz` in the repo puts it back), or, for a RESULTS outside the
# repo, by its own name, whether RESULTS is given relative or absolute.
pack_from="$PWD" pack_name=$(realpath -ms --relative-to="$PWD" "$RESULTS")
case "$pack_name" in ..|../*|/*)
    pack_name=$(realpath -ms "$RESULTS")
    pack_from=$(dirname "$pack_name") pack_name=$(basename "$pack_name") ;;
esac
archive_path=$(realpath -m "$ARCHIVE")
drop_parts() {  # ARCHIVE.partNN, this pack's (a failed split) or an earlier job's
    for part in "$archive_path".part[0-9][0-9]*; do
        if [ -f "$part" ]; then rm -f "$part"; fi
    done
}
pack() {
    # Tables, figures, reports, run records (what resume skips by), bench and logs; not the
    # checkpoints or saved parameters, which can be hundreds of MiB: a later job resumes from
    # the run records, a group cut off mid-way starts again. Returns 1 when it failed.
    local rc=0
    echo "== $(( $(date +%s) - started )) s in all; packing $RESULTS into $ARCHIVE"
    # An earlier job's parts would join this archive's in `cat ARCHIVE.part*`: gone first.
    drop_parts
    tar czf "$archive_path" -C "$pack_from" --exclude='*/checkpoints' --exclude='*.pt' \
        --exclude='.lock' "$pack_name" || rc=$?
    if [ "$rc" -gt 1 ]; then  # (1: a file changed while tar read it; the archive is whole)
        rm -f "$archive_path"
        echo "gpu_session: packing $RESULTS into $ARCHIVE failed (tar's exit $rc, above);" \
             "no archive, the results are in $RESULTS alone" >&2
        return 1
    fi
    # A lent machine returns files of at most 16 MiB: a larger archive comes back in parts,
    # ARCHIVE.part00, .part01, ... (`cat ARCHIVE.part* | tar xz` joins them).
    if [ "$(stat -c %s "$archive_path")" -gt $(( PART_KIB * 1024 )) ]; then
        if split -b "${PART_KIB}k" -d "$archive_path" "$archive_path.part"; then
            rm "$archive_path"
        else
            drop_parts
            echo "gpu_session: splitting $ARCHIVE into parts of PART_KIB=$PART_KIB KiB" \
                 "failed (above); the archive is left whole" >&2
            rc=2
        fi
    fi
    ls -l "$archive_path"*
    # what a lent machine returns: at most 8 files of 16 MiB (the default parts are 15 MiB)
    local files
    files=$(find "$(dirname "$archive_path")" -maxdepth 1 -name "$(basename "$archive_path")*" \
            | wc -l)
    if [ "$files" -gt 8 ]; then
        echo "gpu_session: $ARCHIVE came out as $files files: a lent machine returns at most" \
             "8 (of 16 MiB); keep fewer results in $RESULTS, or raise PART_KIB up to 16384" >&2
    fi
    if [ "$rc" -eq 1 ]; then
        echo "gpu_session: packing $RESULTS: a file changed while tar read it (above)" >&2
    fi
    return $(( rc > 0 ))
}
# A failed pack brings nothing back (or not all): exit 1 then, whatever the stages did.
trap 'pack || exit 1' EXIT

# Python packages the machine lacks travel as wheels; the repo itself needs no install.
site=/tmp/adamrepro-site
if ! $PYTHON -c "import pydantic, typer, rich, yaml, pandas, matplotlib, torch, pytest" \
        2>/dev/null; then
    rm -rf "$site"  # a warm machine's earlier job's: pip keeps those over the bundle's
    $PYTHON -m pip install -q --no-index --no-deps --no-compile --target "$site" \
        "$BUNDLE"/wheels/*.whl || exit 2
    export PYTHONPATH="$site"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
ADAMREPRO="$PYTHON -m adamrepro"
$PYTHON - <<'EOF'
import torch
from adamrepro.provenance import git_commit
print("torch", torch.__version__, "| cuda", torch.version.cuda, "|",
      torch.cuda.get_device_name() if torch.cuda.is_available() else "NO CUDA DEVICE",
      "| commit", git_commit())
# The machine's own releases: it runs the repo from PYTHONPATH, so pyproject's floors never
# gate them, and a stage that fails there but passes on a CPU is compared against these.
import platform
from importlib.metadata import PackageNotFoundError, version


def release(name):
    try:
        return version(name)
    except PackageNotFoundError:  # pytest, where neither the machine nor the bundle has it
        return "absent"


print("python", platform.python_version(), "|", " | ".join(
    f"{name} {release(name)}" for name in
    ("numpy", "pandas", "matplotlib", "pydantic", "typer", "click", "rich", "PyYAML",
     "pytest")))
EOF
# Without a usable GPU every CUDA test skips and the tests stage passed having run none.
if [ "$DEVICE" = cuda ] && ! $PYTHON -c "import sys, torch; sys.exit(not torch.cuda.is_available())"
then
    echo "gpu_session: DEVICE=cuda, but torch sees no CUDA device here: the CUDA tests would" \
         "all skip and each stage fail; run it on a GPU machine, or DEVICE=cpu SCALE=smoke to" \
         "try the job on a CPU" >&2
    exit 2
fi

datasets=$(cat "$BUNDLE/datasets" 2>/dev/null || echo "mnist imdb cifar10")
# The bundle's copy when there is one (it skips what is already laid out: 5 s): a machine
# without network may take long to fail each download that `fetch` would try first.
if [ -d "$BUNDLE/data" ]; then
    only=$(for name in $datasets; do printf -- "--only %s " "$name"; done)
    # shellcheck disable=SC2086  # one flag per dataset
    $PYTHON scripts/offline_data.py --from "$BUNDLE/data" $only --out "$ADAMREPRO_DATA" || exit 2
else
    # shellcheck disable=SC2086  # one word per dataset
    $ADAMREPRO fetch $datasets || exit 2
fi
# ../shared/data's CIFAR-10 went through JPEG: its batches are not the official bytes.
UNVERIFIED=""
if [ -e "$BUNDLE/data/cifar10_jpeg_q75.tar.gz" ]; then UNVERIFIED="--unverified-data"; fi
RUN_FLAGS="${RUN_FLAGS:-} $UNVERIFIED"
echo "== set up in $(( $(date +%s) - started )) s"

# With SESSION_MINUTES, every stage command runs through `limited` (the seconds left before
# packing, under `timeout`); without it, as it is.
end=""
if [ -n "${SESSION_MINUTES:-}" ]; then
    end=$(awk -v s="$started" -v m="$SESSION_MINUTES" -v p="${PACK_SECONDS:-45}" \
              'BEGIN { printf "%d", s + m * 60 - p }')
fi
left() { echo $(( end - $(date +%s) )); }
limited() {
    local seconds="" rc
    if [ -n "$end" ]; then
        seconds=$(left)
        # `timeout 0` would mean no limit at all
        if [ "$seconds" -le 0 ]; then echo "== no time left for: $*"; return 124; fi
        timeout --kill-after=10 "$seconds" "$@" &
    else
        "$@" &
    fi
    # waited for in the background: a SIGTERM or Ctrl-C then reaches `stopping` at once,
    # where a command in the foreground held it until the command ended
    wait "$!"
    rc=$?
    # said in the log, so that the archive tells a stage cut off from one that failed
    if [ -n "$seconds" ] && { [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; }; then
        echo "== timed out after $seconds s (exit $rc): $*"
    fi
    return "$rc"
}

# A SIGTERM or Ctrl-C to the job (a `timeout` around it, a preemption, a queue's limit):
# every stage process gets SIGTERM, and once they have ended (10 s at most) the results
# are packed on the way out. Untrapped, the signal ended this script before its pack.
descendants() {  # the processes below this script, less its log's tee and this listing
    # this function's own shell ($(descendants) runs it in one): expanded in the pipeline
    # below, $BASHPID was awk's, and the listing counted itself, so the wait for the stages
    # to end always ran its whole 10 s
    local self=$BASHPID
    ps -e -o pid=,ppid= | awk -v top=$$ -v skip="$self $tee_pid" '
        BEGIN { n = split(skip, s, " "); for (i = 1; i <= n; i++) skipped[s[i]] = 1 }
        { parent[$1] = $2 }
        END { for (p in parent) {
                  q = p
                  while (q in parent && q != top && !(q in skipped)) q = parent[q]
                  if (q == top && p != top && !(p in skipped)) print p } }'
}
stopping() {  # SIGNAL EXIT-CODE
    trap '' TERM INT
    echo "== $1 at $(( $(date +%s) - started )) s: stopping the stages, then packing"
    local pids waited=0
    pids=$(descendants)
    # shellcheck disable=SC2086  # one word per process
    [ -z "$pids" ] || kill -TERM $pids 2> /dev/null
    while [ "$waited" -lt 20 ] && [ -n "$(descendants)" ]; do
        sleep 0.5
        waited=$(( waited + 1 ))
    done
    exit "$2"
}
trap 'stopping SIGTERM 143' TERM
trap 'stopping SIGINT 130' INT

# One stage: NAME, or NAME=ARG for a part of it (precision=mlp: that experiment alone;
# bench=mlp:tf32: the MLP's bench at TF32). Returns 1 when it failed.
run_stage() {
    local stage="${1%%=*}" arg="" rc=0
    case "$1" in *=*) arg="${1#*=}" ;; esac
    case "$stage" in
        tests)
            # Only the modules that hold CUDA tests: the others import dev extras (hypothesis,
            # ray) that such a machine lacks, and one failed import stops pytest's collection.
            # No plugin of the machine's own: the bundle's pytest may not be the one they
            # were built for, and these tests need none.
            # shellcheck disable=SC2046,SC2086  # one word per file; PYTHON may hold flags
            # ADAMREPRO_TEST_DATASETS: the data folder holds the bundle's datasets alone
            ADAMREPRO_TEST_DATASETS="$datasets" PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 \
                limited $PYTHON -m pytest -q -m cuda \
                -p no:cacheprovider \
                $(grep -rl --include='test_*.py' "mark\.cuda" tests | grep -v test_no_skips) \
                > "$RESULTS/cuda-tests.log" 2>&1 || rc=1
            # the summary here; every traceback in the packed log, so that a failure is
            # diagnosed from this job's archive, not from another job
            tail -25 "$RESULTS/cuda-tests.log" ;;
        bench)
            # ARG or BENCH_CONFIGS (default: every config), each NAME or NAME:PRECISION
            local item precision configs="${arg:-${BENCH_CONFIGS:-}}"
            if [ -z "$configs" ]; then
                configs=$(for config in configs/*.yaml; do basename "$config" .yaml; done)
            fi
            for item in ${configs//,/ }; do
                precision=()
                case "$item" in *:*) precision=(--precision "${item#*:}") ;; esac
                # shellcheck disable=SC2086  # BENCH_FLAGS holds separate words
                limited $ADAMREPRO bench "${item%%:*}" --device "$DEVICE" --scale "$SCALE" \
                    --passes "${BENCH_PASSES:-3}" --reference-passes 1 --out "$RESULTS" \
                    "${precision[@]}" $UNVERIFIED ${BENCH_FLAGS:-} || rc=1
            done ;;
        precision)
            # ARG (comma-separated) or PRECISION_EXPERIMENTS: the experiments
            local experiments="${arg:-${PRECISION_EXPERIMENTS:-mlp cnn_cifar10}}"
            # shellcheck disable=SC2086  # one word per experiment
            SCALE="$PRECISION_SCALE" OUT="$RESULTS/precision-$PRECISION_SCALE" \
                BASE="${PRECISION_BASE:-}" RUN_FLAGS="$RUN_FLAGS" ADAMREPRO="$ADAMREPRO" \
                limited bash scripts/measure_precision.sh ${experiments//,/ } || rc=1 ;;
        kernels)
            # ARG: the experiments (default logreg_mnist,mlp,cnn_cifar10), one command each
            # (the CNN's steps are KERNEL_STEPS_CNN: a paper-scale step is ~20x the MLP's);
            # KERNEL_VARIANTS: which (default all; "plain tf32 bf16" skips compilation)
            local experiment steps variants=() experiments="${arg:-logreg_mnist,mlp,cnn_cifar10}"
            if [ -n "${KERNEL_VARIANTS:-}" ]; then
                # shellcheck disable=SC2206  # one word per variant
                variants=(--variants ${KERNEL_VARIANTS//,/ })
            fi
            for experiment in ${experiments//,/ }; do
                steps="${KERNEL_STEPS:-100}"
                if [ "$experiment" = cnn_cifar10 ]; then steps="${KERNEL_STEPS_CNN:-30}"; fi
                # shellcheck disable=SC2086  # PYTHON may hold flags
                limited $PYTHON scripts/bench_kernels.py "$experiment" --device "$DEVICE" \
                    --scale "$SCALE" --steps "$steps" --out "$RESULTS" "${variants[@]}" \
                    $UNVERIFIED || rc=1
            done ;;
        sfo)
            if [ "$SCALE" = smoke ]; then sfo_size="--hidden 16 --subfunctions 4"
            else sfo_size="--hidden 1000 --subfunctions 468"; fi
            # shellcheck disable=SC2086  # two flags
            limited $PYTHON scripts/bench_sfo.py --device "$DEVICE" $sfo_size \
                --steps "${SFO_STEPS:-100}" --out "$RESULTS" || rc=1 ;;
        paper)
            local budget="${BUDGET_MINUTES:-}" split=""
            if [ -n "$end" ]; then  # what is left, less the figures and the report
                budget=$(awk -v l="$(left)" -v b="$budget" \
                             'BEGIN { m = (l - 90) / 60; if (b != "" && b < m) m = b;
                                      printf "%.2f", (m > 0.01 ? m : 0.01) }')
            fi
            if [ -n "$budget" ]; then split="--split-to-fit"; fi
            # ARG (comma-separated config names) or CONFIGS: the experiments to run
            local configs="${CONFIGS:-}"
            # shellcheck disable=SC2086  # one word per config
            if [ -n "$arg" ]; then configs=$(printf "configs/%s.yaml " ${arg//,/ }); fi
            # no --quiet: the stage's log gets a progress line a minute, where the time went
            OUT="$RESULTS" RUN_FLAGS="$RUN_FLAGS $split" ADAMREPRO="$ADAMREPRO" \
                CONFIGS="$configs" BUDGET_MINUTES="$budget" \
                limited bash scripts/reproduce_paper.sh || rc=$? ;;
    esac
    return "$rc"
}

status=0
for group in "$@"; do
    echo "== stage $group at $(( $(date +%s) - started )) s"
    if [ -n "$end" ] && [ "$(left)" -lt 60 ]; then
        echo "== stage $group skipped: $(left) s left of SESSION_MINUTES=$SESSION_MINUTES" \
             "before packing"
        status=1
        continue
    fi
    # Stages joined by '+' run at once (tests+precision=mlp+precision=cnn_cifar10): what
    # checks correctness or measures curves, not speed, can share a GPU that small sweeps
    # leave mostly idle. Each then writes its own log, shown when all are done.
    if [ "$group" = "${group//+/}" ]; then
        run_stage "$group" || status=$(( status > 1 ? status : $? ))
        continue
    fi
    pids=() logs=()
    for stage in ${group//+/ }; do
        logs+=("$RESULTS/stage-${stage//[^a-zA-Z0-9_.-]/_}.log")
        run_stage "$stage" > "${logs[-1]}" 2>&1 &
        pids+=($!)
    done
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}" || status=$(( status > 1 ? status : $? ))
        echo "== ${logs[$i]}:"; cat "${logs[$i]}"
    done
done
exit "$status"

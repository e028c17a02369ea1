#!/usr/bin/env bash
# Pack what an offline GPU machine needs beside a copy of this repo into .bundle/ (ignored by
# git), for scripts/gpu_session.sh to use there:
#   .bundle/wheels/  the wheels of the Python packages such a machine often lacks (pydantic and
#                    its needs; with --with-pytest, pytest and its needs too, for the `tests`
#                    stage on a machine without pytest), at the versions installed here, built
#                    for ITS Python
#   .bundle/data/    the data source: a folder with prepare.py (like ../shared/data) or the
#                    official archives, copied for the datasets named
#
#     scripts/offline_bundle.sh --data ../shared/data                      # every dataset
#     scripts/offline_bundle.sh --data ../shared/data --datasets "mnist imdb" --python 3.12
#     scripts/offline_bundle.sh --data ../shared/data --with-pytest        # + pytest's 1.8 MB
#
# Shared clusters and lent GPU machines limit what travels with a job (64 MiB here), so the
# script prints the bundle's size with the repo's and fails (exit 2) above --max-mib.
# Needs pip with access to an index here; the GPU machine needs none.
set -euo pipefail
# -h, --help: the comment above (what the script does, the variables it reads), nothing run
case "${1:-}" in -h | --help) sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"; exit 0 ;; esac
here="$PWD"  # --data as given is read from the folder the script is called from
# this script's own folder, through a symlink too (one in ~/bin was not the repo's scripts/)
scripts_dir=$(dirname -- "$(readlink -f -- "$0" 2>/dev/null || printf '%s\n' "$0")")
cd "$scripts_dir/.."

DATA="" DATASETS="mnist imdb cifar10" PY="3.12" MAX_MIB=64
# pydantic and its needs. The GPU machine lent here has pytest (the device tool's KINDS.md), so
# its 1.8 MB of wheels stay home unless --with-pytest: every MiB counts against the limit.
PACKAGES="pydantic pydantic-core annotated-types typing-inspection typing-extensions"
PYTEST_PACKAGES="pytest pluggy iniconfig packaging pygments"
usage() { echo "offline_bundle: ${1:+$1; }usage: $0 --data DIR [--datasets \"mnist imdb" \
               "cifar10\"] [--python 3.12] [--max-mib 64] [--with-pytest]" >&2; exit 2; }
fail() { echo "offline_bundle: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --data|--datasets|--python|--max-mib)
            [ $# -ge 2 ] || usage "$1 needs a value"
            case "$1" in
                --data) DATA="$2" ;;
                --datasets) DATASETS="$2" ;;
                --python) PY="$2" ;;
                --max-mib) MAX_MIB="$2" ;;
            esac
            shift 2 ;;
        --with-pytest) PACKAGES="$PACKAGES $PYTEST_PACKAGES"; shift ;;
        *) usage "unknown argument $1" ;;
    esac
done
[ -n "$DATA" ] || usage "--data is required"
case "$DATA" in /*) ;; *) DATA="$here/$DATA" ;; esac
[ -d "$DATA" ] || fail "--data $DATA is not a folder"
[[ "$MAX_MIB" =~ ^[1-9][0-9]*$ ]] || fail "--max-mib $MAX_MIB is not a whole number of MiB"
[[ "$PY" =~ ^3\.[0-9]+$ ]] || fail "--python $PY is not a Python version such as 3.12 (the" \
                                   "GPU machine's python3 --version)"
# its words, split on any blank (a tab, a newline) and never globbed ("*" named the repo's files)
read -r -d '' -a NAMES <<< "$DATASETS" || true
[ "${#NAMES[@]}" -gt 0 ] || fail "--datasets names none; give some of: mnist imdb cifar10"
DATASETS="${NAMES[*]}"

# What each dataset needs of a prepare.py folder (../shared/data's names) or of the official
# downloads; prepare.py itself goes along when there is one.
declare -A FILES=(
    [mnist]="MNIST train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz"
    [imdb]="aclImdb_labelled_text.tar.gz aclImdb_v1.tar.gz"
    [cifar10]="cifar10_jpeg_q75.tar.gz cifar-10-python.tar.gz"
)
# Every mistake is found before the last bundle is touched or a wheel downloaded.
for name in "${NAMES[@]}"; do
    [ -n "${FILES[$name]:-}" ] || fail "unknown dataset $name; known: ${!FILES[*]}"
    found=0
    for file in ${FILES[$name]}; do
        [ -e "$DATA/$file" ] && found=1
    done
    [ "$found" = 1 ] || fail "$DATA has no $name files (${FILES[$name]})"
done

# Built aside and renamed into place once whole and within the limit: a failure leaves the
# last bundle as it was, never a half-built one that looks ready to carry.
rm -rf .bundle.partial && mkdir -p .bundle.partial/wheels .bundle.partial/data
trap 'rm -rf .bundle.partial' EXIT
# The versions the tests passed with here, so the GPU machine runs what was tested.
pins=$(python - "$PACKAGES" <<'EOF'
import sys
from importlib.metadata import version
print(" ".join(f"{name}=={version(name)}" for name in sys.argv[1].split()))
EOF
)
# shellcheck disable=SC2086  # one word per pin
python -m pip download -q --no-deps --only-binary=:all: --python-version "$PY" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .bundle.partial/wheels $pins ||
    fail "pip found no wheels of $pins for Python $PY (above); give --python the GPU" \
         "machine's version, and let pip reach an index here"

if [ -f "$DATA/prepare.py" ]; then cp "$DATA/prepare.py" .bundle.partial/data/; fi
# IMDB's text travels as xz, 28 -> 19 MB, so that all three datasets and the repo fitted in 64
# MiB (no longer since 2026-12-05: the repo grew to 14 MiB);
# scripts/offline_data.py turns it back into the .tar.gz that prepare.py reads. xz -9e takes
# about 3 minutes here, so the result is cached under the source archive's MD5. The official
# archives keep their bytes: `adamrepro fetch` checks their MD5s.
RECOMPRESS="aclImdb_labelled_text.tar.gz"
recompress() {
    python - "$1" "$2" <<'PY'
import gzip, hashlib, lzma, os, shutil, sys
from pathlib import Path
source, dest = Path(sys.argv[1]), Path(sys.argv[2])
digest = hashlib.md5(source.read_bytes()).hexdigest()
cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "adamrepro" / "bundle"
cached = cache / f"{source.name.removesuffix('.tar.gz')}-{digest}.tar.xz"
if not cached.exists():
    cache.mkdir(parents=True, exist_ok=True)
    print(f"offline_bundle: recompressing {source.name} as xz (once: about 3 minutes)")
    partial = cached.with_name(cached.name + ".partial")
    with gzip.open(source) as src, \
            lzma.open(partial, "wb", preset=9 | lzma.PRESET_EXTREME) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    partial.rename(cached)
shutil.copyfile(cached, dest)
PY
}
for name in "${NAMES[@]}"; do
    for file in ${FILES[$name]}; do
        [ -e "$DATA/$file" ] || continue
        if [ -f "$DATA/prepare.py" ] && [ "$file" = "$RECOMPRESS" ]; then
            recompress "$DATA/$file" ".bundle.partial/data/${file%.tar.gz}.tar.xz"
        else
            cp -r "$DATA/$file" .bundle.partial/data/
        fi
    done
done
echo "$DATASETS" > .bundle.partial/datasets

bundle=$(du -sb .bundle.partial | cut -f1)
repo=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
echo "bundle: $(find .bundle.partial/wheels -name '*.whl' | wc -l) wheels, data for: $DATASETS"
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }  # one decimal, not floored:
echo "size: bundle $(mib "$bundle") MiB + repo $(mib "$repo") MiB" \
     "= $(mib $((bundle + repo))) MiB (limit $MAX_MIB MiB)"  # 64.36 read "64 ... over 64"
if [ $((bundle + repo)) -gt $((MAX_MIB * 1048576)) ]; then
    fail "over $MAX_MIB MiB; name fewer --datasets and bundle the rest for a later job (the" \
         "last bundle, if any, is left as it was)"
fi
rm -rf .bundle && mv .bundle.partial .bundle

#!/usr/bin/env bash
# Reproduce the whole paper on a GPU: every experiment config at paper scale, then the figures
# and the report, into results/ (the committed paper-scale folder; OUT=DIR to write elsewhere).
#
#     scripts/reproduce_paper.sh              # about 7.5 minutes on an H100 for the three built
#
# Resumable: `adamrepro run` skips every run already finished (runs/<run_id>.json), so after an
# interruption (a crash, a kill, a lost node) running the script again does only what is left.
# Data: the default folder ($ADAMREPRO_DATA, else ~/.cache/adamrepro/data), fetched if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-results}"
DEVICE="${DEVICE:-cuda}"
ADAMREPRO="${ADAMREPRO:-python -m adamrepro}"

$ADAMREPRO fetch
for config in configs/*.yaml; do
    echo "== $config"
    $ADAMREPRO run "$config" --scale paper --device "$DEVICE" --out "$OUT"
done
$ADAMREPRO plot --out "$OUT"
$ADAMREPRO report --out "$OUT"

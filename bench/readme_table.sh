#!/usr/bin/env bash
# Every row of the README's benchmark table, in one run, on one machine, after naming it.
#
#   bash bench/readme_table.sh [LOGDIR]        (default: bench/results/<date>-<cpu>)
#
# Writes LOGDIR/<step>.txt for each script and LOGDIR/machine.json; the README table is copied
# from those files.  About 20 minutes on 2 idle cores; it writes a 5 GiB random-weight file under
# ${TMPDIR:-/tmp} for the load benchmark (removed at the end).  Run it on an otherwise idle
# machine: the load average is recorded before and after every step.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-python}"
stamp="$(date -u +%Y-%m-%d)"
LOG="${1:-bench/results/${stamp}}"
mkdir -p "$LOG"
weights="${TMPDIR:-/tmp}/audiox_bench_turbo_bf16.safetensors"
trap 'rm -f "$weights"' EXIT

step() {  # step NAME COMMAND...
    local name="$1"; shift
    echo "== $name: $*" | tee "$LOG/$name.txt"
    echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$LOG/$name.txt"
    local t0=$SECONDS
    "$@" 2>&1 | tee -a "$LOG/$name.txt"
    echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg); wall $((SECONDS - t0)) s" | tee -a "$LOG/$name.txt"
}

step machine "$PY" bench/machine.py --json "$LOG/machine.json"
step backbone "$PY" bench/backbone_nfe.py --models mmdit dit --dtypes bf16 fp32 --reps 3 --json "$LOG/backbone.json"
step vae "$PY" bench/vae_speed.py --reps 3
step end_to_end "$PY" bench/end_to_end.py --dtypes bf16 fp32 --reps 3
step load "$PY" bench/load_model.py "$weights" --make --repeat 2
step train "$PY" bench/train_step.py --reps 2 --json "$LOG/train.json"
step machine_after "$PY" bench/machine.py

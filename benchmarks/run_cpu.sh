#!/usr/bin/env bash
# Reproduces the CPU tables of BENCHMARKS.md: `mattecli bench` at 1080p and 4K (all four methods),
# then the peak-RSS-against-clip-length check of (c). Run it from anywhere, on an otherwise idle
# machine (the report names the machine and warns when the load average says it was busy).
#
#   benchmarks/run_cpu.sh                      # the BENCHMARKS.md settings (about 15 min on 2 cores)
#   FRAMES=30 WHOLE_FRAMES=5 benchmarks/run_cpu.sh
#
# Writes benchmarks/results/cpu.md, cpu.json and memory_growth.md (OUT=DIR to change), and prints
# both tables. Workloads are cached in ~/.cache/mattecli/bench (WORK=DIR to change), so a second
# run starts measuring at once.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
MATTECLI="${MATTECLI:-$ROOT/.venv/bin/mattecli}"
OUT="${OUT:-$ROOT/benchmarks/results}"
RESOLUTIONS="${RESOLUTIONS:-1080p,4k}"
FRAMES="${FRAMES:-8}"                       # (c) mattecli run
WHOLE_FRAMES="${WHOLE_FRAMES:-3}"           # (a) and (b): one whole-frame pass per frame, slow at 4K
CF_FRAMES="${CF_FRAMES:-1}"                 # (d) pymatting closed-form: the slowest per frame
THREADS="${THREADS:-2}"
GROWTH_RESOLUTION="${GROWTH_RESOLUTION:-480x270}"
GROWTH_FRAMES="${GROWTH_FRAMES:-100,1000}"

options=(--threads "$THREADS")
[[ -n "${MODEL:-}" ]] && options+=(--model "$MODEL")
[[ -n "${WORK:-}" ]] && options+=(--work "$WORK")
checkpoint=()
[[ -n "${CHECKPOINT:-}" ]] && checkpoint=(--checkpoint "$CHECKPOINT")

mkdir -p "$OUT"
"$MATTECLI" bench -r "$RESOLUTIONS" --frames "$FRAMES" --whole-frames "$WHOLE_FRAMES" \
    --cf-frames "$CF_FRAMES" "${options[@]}" "${checkpoint[@]}" --save-json "$OUT/cpu.json" > "$OUT/cpu.md"
"$PYTHON" "$ROOT/benchmarks/memory_growth.py" -r "$GROWTH_RESOLUTION" --frames "$GROWTH_FRAMES" \
    "${options[@]}" > "$OUT/memory_growth.md"
cat "$OUT/cpu.md"; echo; cat "$OUT/memory_growth.md"

#!/usr/bin/env bash
# One command for the first machine with an NVIDIA GPU: install the `gpu` extra in a fresh virtual
# environment, build TensorRT engines (fp32 and fp16) from the packaged default model, run the demo
# clip and a 4K frame through `--engine trt` and `--engine ort` (ONNX Runtime on the CPU, the
# reference), compare their alphas (max and mean absolute difference), run `mattecli bench --engine
# trt` at 1080p and 4K, and write everything to one JSON file. Every step runs under `timeout` with
# the time left of an 8-minute budget; a failed or timed-out step is recorded and the rest still run.
#
# The engines get build-engine's default profiles for whatever the default model is. For a band model
# (architecture "band": one call per frame, its coarse view and its band cells) that is one profile of
# frames from 128x128 to 4096x2176 and 1 to 34816 cells, which holds the demo clip (640x360), the 4K
# frame (3840x2160, padded to 3840x2176) and the bench's 1080p and 4K workloads, band or every cell.
#
#   benchmarks/gpu_check.sh [OUT_DIR]      (default: gpu-check/; the report is OUT_DIR/gpu_check.json)
#
# Environment: PYTHON (default python3, 3.11+), GPU_CHECK_VENV (default OUT_DIR/venv; an existing one
# with mattecli installed is reused, so a rerun skips the install), GPU_CHECK_BUDGET (seconds, default
# 480). pip's own variables (PIP_INDEX_URL, PIP_FIND_LINKS, ...) reach the install: TensorRT's
# libraries come from NVIDIA's index (pypi.nvidia.com), which must be reachable.
#
# Exit codes: 0 every step passed; 1 some step failed or ran out of time (the JSON says which);
# 3 no NVIDIA GPU here (nvidia-smi missing or failing), before anything is installed.
set -uo pipefail

if ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "gpu_check: no NVIDIA GPU here: nvidia-smi is not installed (this check needs an NVIDIA GPU and its driver)" >&2
    exit 3
fi
if ! gpus=$(nvidia-smi -L 2>&1) || ! grep -q '^GPU ' <<<"$gpus"; then
    echo "gpu_check: no NVIDIA GPU here: nvidia-smi -L failed or listed no GPU ($(head -n 1 <<<"$gpus"))" >&2
    exit 3
fi

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$(mkdir -p "${1:-gpu-check}" && cd "${1:-gpu-check}" && pwd)
VENV=${GPU_CHECK_VENV:-$OUT/venv}
BUDGET=${GPU_CHECK_BUDGET:-480}
STARTED=$(date +%s)
DEADLINE=$((STARTED + BUDGET - 15))  # the last seconds are the report's
LOGS=$OUT/logs
WORK=$OUT/work
rm -rf "$LOGS" "$WORK"
mkdir -p "$LOGS" "$WORK"
: >"$LOGS/steps.tsv"
HELPER=$REPO/benchmarks/gpu_check.py
PY=$VENV/bin/python
MATTECLI=$VENV/bin/mattecli

# step NAME COMMAND...: run with the time left; stdout, stderr, exit code and seconds are recorded.
step() {
    local name=$1
    shift
    local left=$((DEADLINE - $(date +%s)))
    local rc t0=$EPOCHREALTIME command="$*"
    command=${command//[$'\t\n']/ }  # one line of the tab-separated record
    if ((left < 5)); then
        echo "out of time before this step" >"$LOGS/$name.err"
        rc=124
    else
        echo "gpu_check: $name ($left s left)" >&2
        (cd "$REPO" && timeout --kill-after=10 "$left" "$@") >"$LOGS/$name.out" 2>"$LOGS/$name.err"
        rc=$?
    fi
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(awk "BEGIN { print $EPOCHREALTIME - $t0 }")" "$command" >>"$LOGS/steps.tsv"
    ((rc == 0)) || echo "gpu_check: $name failed (exit $rc): $(tail -n 1 "$LOGS/$name.err")" >&2
    return "$rc"
}

# The README's GPU install: torch 2.13.0 (a CUDA build on Linux from PyPI), then the extras.
INSTALL='if [[ -x $1/bin/mattecli ]]; then echo "reusing $1"; exit 0; fi
"$2" -m venv "$1" && "$1/bin/pip" install --quiet --upgrade pip &&
"$1/bin/pip" install --quiet torch==2.13.0 && "$1/bin/pip" install --quiet -e ".[gpu,torch]"'

step gpu nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader
step install bash -c "$INSTALL" install "$VENV" "${PYTHON:-python3}"
step info "$MATTECLI" info --json
MODEL=$("$PY" -c 'from mattecli.default_model import DEFAULT_MODEL_FILE; print(DEFAULT_MODEL_FILE)' 2>/dev/null) ||
    MODEL=$REPO/mattecli/weights/default.onnx
step export-fp16 "$PY" "$HELPER" fp16 "$MODEL" "$WORK/default-fp16.onnx"
step build-fp32 "$MATTECLI" build-engine "$MODEL" -o "$WORK/fp32.engine" --json
step build-fp16 "$MATTECLI" build-engine "$WORK/default-fp16.onnx" --fp16 -o "$WORK/fp16.engine" --json
step sample "$MATTECLI" sample "$WORK/demo"
step frame4k "$PY" "$HELPER" frame4k "$WORK/demo" "$WORK/frame4k"

# ONNX Runtime on the CPU is the reference every TensorRT alpha is compared with.
for name in ort trt-fp32 trt-fp16; do
    case $name in
    ort) engine=(--engine ort --device cpu -m "$MODEL") ;;
    *) engine=(--engine trt --device cuda -m "$WORK/${name#trt-}.engine") ;;
    esac
    step "run-demo-$name" "$MATTECLI" run "$WORK/demo/clip.mp4" -t "$WORK/demo/trimaps" -o "$WORK/out-$name/demo" \
        "${engine[@]}" --json
    step "run-4k-$name" "$MATTECLI" run "$WORK/frame4k/frame.png" -t "$WORK/frame4k/trimaps" \
        -o "$WORK/out-$name/4k" "${engine[@]}" --json
done
for name in trt-fp32 trt-fp16; do
    for clip in demo 4k; do
        step "alpha-diff-$clip-$name" "$PY" "$HELPER" compare "$WORK/out-ort/$clip/alpha" "$WORK/out-$name/$clip/alpha"
    done
done
for precision in fp32 fp16; do
    step "bench-trt-$precision" "$MATTECLI" bench --engine trt --trt-engine "$WORK/$precision.engine" \
        -r 1080p,4k --methods c --frames 10 --work "$WORK/bench" --threads "$(nproc)" --json
done

REPORT=$OUT/gpu_check.json
python_for_report=$PY
[[ -x $python_for_report ]] || python_for_report=${PYTHON:-python3}
"$python_for_report" "$HELPER" report "$LOGS" "$REPORT" --started "$STARTED" --deadline "$BUDGET"
rc=$?
echo "gpu_check: wrote $REPORT ($((($(date +%s) - STARTED))) s)" >&2
exit "$rc"

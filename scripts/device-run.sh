#!/usr/bin/env bash
# On a lent GPU, after scripts/device-prep.sh (carry ".devrun" and ".gl"): one prepared
# step per call, its output under $OUT (the device tool brings that folder back).
#
#   checks   `lstm-gpu check` (every kernel against its CPU twin, from the binary), then
#            the cooperative-matrix parity with the GPU's tiles (CI runs it on lavapipe's
#            8x8), the whole mixed step, the f16, f32 (block and panel kernels included),
#            column-sum and whole-step parity on this GPU (about a minute)
#   bench    scripts/gpu-bench.sh: f32 and --precision mixed against the PyTorch peer
#            (pass more gpu-bench.sh options after it, e.g. --no-mixed, --steps 30), its
#            optional parts skipped past BENCH_BUDGET seconds (default 360), its files in
#            $OUT/bench-work even where it is cut short
#   first    checks, then bench, in one call (the benchmark cut where the call's
#            CALL_SECONDS, default 560, end): what a session's first call runs
#   medium   issue 26: the medium preset trained on PTB with checkpoints on the device's
#            disk (a second call resumes from the last one), metrics and plot to $OUT
#            (PRESET_SECONDS, default 540, of training a call); a run that finished is
#            scored again in PyTorch from its checkpoint (python/lstm_gpu_torch.py)
#   large    the same for the large preset (as far as the calls allow: 55 epochs take more);
#            ADAPTER (default discrete) picks another adapter, for trying the script elsewhere
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/out}"
mkdir -p "$OUT"
# The loaders, where the machine lacks them (the device README's recipe).
if ! ldconfig -p | grep -q libvulkan.so.1; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
# The test binaries travel packed (scripts/device-prep.sh).
if [ -f .devrun/tests.tar.gz ] && [ ! -d .devrun/tests ]; then
  tar xzf .devrun/tests.tar.gz -C .devrun
fi
export XDG_RUNTIME_DIR=/tmp LSTM_GPU_PTB_DIR="$PWD/.devrun/ptb"
export LSTM_GPU_TEST_ADAPTER="${LSTM_GPU_TEST_ADAPTER:-discrete}"
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -f "$icd" ] && ! .devrun/lstm-gpu adapters 2>/dev/null | grep -q -i nvidia; then
  export VK_DRIVER_FILES="$icd"
fi
.devrun/lstm-gpu adapters | tee "$OUT/adapters.txt"
what="${1:-checks}"
shift || true
checks() {
  # Every kernel against its CPU twin from the release binary itself (the cooperative
  # matrices included where the GPU has them): seconds, and the table users get.
  echo "== lstm-gpu check" | tee -a "$OUT/checks.txt"
  timeout 240 .devrun/lstm-gpu check --adapter "$LSTM_GPU_TEST_ADAPTER" 2>&1 | tee -a "$OUT/checks.txt"
  for t in parity_matmul_coop mixed_precision parity_matmul_f16 train_step_parity \
           parity_matmul parity_reduce_sgd parity_softmax_xent; do
    echo "== $t" | tee -a "$OUT/checks.txt"
    timeout 240 ".devrun/tests/$t" --include-ignored --nocapture 2>&1 | tail -n 40 | tee -a "$OUT/checks.txt"
  done
}
# The benchmark, cut at $1 seconds; its optional parts stop at BENCH_BUDGET seconds (default
# 360, less where the cut leaves less), and the intermediate JSON files come back either way.
bench() {
  local cut=$1
  shift
  local budget="${BENCH_BUDGET:-360}"
  [ "$budget" -gt $((cut - 120)) ] && budget=$((cut - 120))
  [ "$budget" -lt 1 ] && budget=1
  timeout "$cut" bash scripts/gpu-bench.sh --bin .devrun/lstm-gpu --out "$OUT/gpu-bench.json" \
    --work "$OUT/bench-work" --budget "$budget" "$@" 2>&1 | tee "$OUT/gpu-bench.txt"
}
case "$what" in
  checks) checks ;;
  # Within a call's 10 minutes: cut at CALL_SECONDS (default 560).
  bench) bench "${CALL_SECONDS:-560}" "$@" ;;
  # Both in one call (a session's device minutes are few, and each call costs a start-up):
  # the checks, then the benchmark cut where the call's CALL_SECONDS (default 560) end.
  first)
    start=$SECONDS
    checks
    bench $((${CALL_SECONDS:-560} - (SECONDS - start))) "$@"
    ;;
  medium|large)
    # One preset trained on PTB, from the last checkpoint on the device's disk where an
    # earlier call left one; a run cut by the timeout saves its checkpoint on SIGTERM.
    run=/tmp/$what
    resume=()
    [ -f "$run/last.safetensors" ] && resume=(--resume "$run/last.safetensors")
    timeout "${PRESET_SECONDS:-${MEDIUM_SECONDS:-540}}" .devrun/lstm-gpu train --preset "$what" \
      --adapter "${ADAPTER:-discrete}" --data .devrun/ptb --run-dir "$run" --no-progress --checkpoint-every 2000 --keep-checkpoints 2 \
      "${resume[@]}" "$@" 2>&1 | tail -n 60 | tee -a "$OUT/$what.log"
    cp "$run/metrics.jsonl" "$OUT/$what-metrics.jsonl" 2>/dev/null
    mkdir -p "$OUT/$what-tensorboard" && cp "$run"/events.out.tfevents.* "$OUT/$what-tensorboard/" 2>/dev/null
    .devrun/lstm-gpu plot "$run" --out "$OUT/$what-curve.png" 2>&1 | tail -n 1
    # A finished run's test perplexity a second time, in PyTorch (cuDNN) from the same
    # checkpoint (python/lstm_gpu_torch.py; the device's python3 has PyTorch).
    if grep -q '"kind": *"test"' "$run/metrics.jsonl" 2>/dev/null; then
      echo "== PyTorch, the same checkpoint: test perplexity at batch 1" | tee -a "$OUT/$what.log"
      timeout 120 python3 python/lstm_gpu_torch.py perplexity "$run/last.safetensors" \
        .devrun/ptb/ptb.test.txt --device cuda 2>&1 | tail -n 3 | tee -a "$OUT/$what.log"
    fi
    ;;
  *) echo "device-run.sh: first, checks, bench, medium or large" >&2; exit 2 ;;
esac

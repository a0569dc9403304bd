#!/usr/bin/env bash
# The benchmark to run on a machine with a real GPU, in one call of at most about 5
# minutes: the adapters, tuning, every matmul variant on the seed model's products, and a
# profile of a training step at the seed, medium and large presets with the estimated
# epoch time of each. Writes one JSON file and prints a short table.
#
# Needs only a built lstm-gpu binary (no Rust, no corpus: the profiles time a generated id
# stream the size of PTB's training split), a Vulkan/Metal/DX12 driver, and bash:
#
#   cargo build --release                          # on any machine
#   scp target/release/lstm-gpu scripts/gpu-bench.sh gpu-box:
#   ssh gpu-box ./gpu-bench.sh --bin ./lstm-gpu    # on the GPU machine
#
# Options: --bin PATH (default: $LSTM_GPU_BIN, ./lstm-gpu, target/release/lstm-gpu),
# --out FILE (default gpu-bench.json), --adapter A (default discrete), --steps N (profile
# steps per preset, default 5), --presets LIST (default "seed medium large"; a CPU
# adapter such as lavapipe takes minutes per step of the large one), --peer PATH (the
# PyTorch peer, bench/torch_peer.py: default ./torch_peer.py or ../bench/torch_peer.py
# beside this script; run when python3 imports torch, for words/s side by side), --no-peer,
# --matmul-size N (lstm-gpu's variants and torch.matmul on an N^3 product, default 4096;
# 0 skips it). With the peer, every product of the presets is also timed in torch.matmul
# and printed beside lstm-gpu's tuned kernel, as a ratio. --no-mixed skips the
# `--precision mixed` part (issue 25): each preset profiled mixed (f16 products on the
# kernels its own tuning chose per product: the matrix units where the adapter offers them,
# the f16 panel, the scalar f16 kernel), the f16 matmuls at the square size, and the peer
# under autocast to f16, each as a ratio.
# A preset whose tuning or profile fails is left out of the tables (its error in the log);
# the others are measured as usual.
# --work DIR keeps every intermediate JSON file there (default: a temporary folder, removed
# at the end), so that what a run measured survives it being cut short. --budget SECONDS:
# once the run has taken that long, the optional parts still ahead (the A/B profiles, the
# square-size benches, the mixed-precision part) are skipped, so that the table comes out
# within a fixed time (a lent GPU's calls are limited); tuning, each preset's profile and
# the peer always run.
# Each lstm-gpu command is cut at COMMAND_SECONDS (default 240) seconds.
# The tuning cache goes to $LSTM_GPU_CACHE_DIR (default a fresh temporary folder), so that
# a run never depends on an earlier one.
set -euo pipefail

bin="${LSTM_GPU_BIN:-}"
out="gpu-bench.json"
adapter="discrete"
steps=5
presets="seed medium large"
peer=""
no_peer=0
mixed=1
matmul_size=4096
work=""
budget=0
while [ $# -gt 0 ]; do
  case "$1" in
    --peer) peer="$2"; shift 2 ;;
    --no-peer) no_peer=1; shift ;;
    --no-mixed) mixed=0; shift ;;
    --matmul-size) matmul_size="$2"; shift 2 ;;
    --bin) bin="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --adapter) adapter="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --presets) presets="$2"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    --budget) budget="$2"; shift 2 ;;
    -h|--help) sed -n '2,37p' "$0"; exit 0 ;;
    *) echo "gpu-bench.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$bin" ]; then
  for candidate in ./lstm-gpu "$(dirname "$0")/../target/release/lstm-gpu"; do
    if [ -x "$candidate" ]; then bin="$candidate"; break; fi
  done
fi
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
  echo "gpu-bench.sh: no lstm-gpu binary found; pass --bin PATH" >&2
  exit 2
fi
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
if [ -n "$work" ]; then
  mkdir -p "$work"
else
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
fi
export LSTM_GPU_CACHE_DIR="${LSTM_GPU_CACHE_DIR:-$work/cache}"
export RUST_LOG="${RUST_LOG:-warn}"

log() { echo "[gpu-bench $(date +%H:%M:%S)] $*" >&2; }

# Every lstm-gpu command of the run, cut at COMMAND_SECONDS (default 240): a command that
# hangs (a kernel that never ends on some driver) fails alone and its preset is left out,
# instead of the whole run's time going to it.
run_bin() { timeout "${COMMAND_SECONDS:-240}" "$bin" "$@"; }

# Whether --budget seconds have passed since the start (never without --budget); says so.
past_budget() {
  if [ "$budget" != 0 ] && [ $(( $(date +%s) - t0 )) -ge "$budget" ]; then
    log "past the budget of $budget s: skipping $*"
    return 0
  fi
  return 1
}
t0=$(date +%s)

log "adapters"
run_bin adapters --json > "$work/adapters.json"
run_bin adapters >&2

# A preset whose tuning or profile fails is left out of what follows (its error in the
# log), so that one failure costs that preset only, never the run's other figures.
measured=""
for preset in $presets; do
  # Each preset is tuned first (its own products and recurrence), then profiled tuned.
  log "tune --preset $preset"
  if ! run_bin tune --adapter "$adapter" --preset "$preset" --json > "$work/tune-$preset.json"; then
    log "tune --preset $preset failed: the preset is left out"
    rm -f "$work/tune-$preset.json"
    continue
  fi
  if [ "$preset" = seed ]; then
    log "bench kernels (every variant on every product of a seed training step)"
    run_bin bench kernels --adapter "$adapter" --json > "$work/bench.json" 2> "$work/bench.txt" \
      || { log "bench kernels failed: $(tail -n 1 "$work/bench.txt")"; rm -f "$work/bench.json"; }
  fi
  log "profile --preset $preset ($steps steps)"
  if ! run_bin profile --adapter "$adapter" --preset "$preset" --synthetic --steps "$steps" --json \
    > "$work/profile-$preset.json"; then
    log "profile --preset $preset failed: the preset is left out"
    rm -f "$work/profile-$preset.json"
    continue
  fi
  measured="$measured $preset"
  past_budget "the A/B profiles of $preset" && continue
  # The same step with each split recurrent product's slices added by a pass of their own
  # rather than by the LSTM cell (what the fusion saves).
  log "profile --preset $preset, split sums separate"
  LSTM_GPU_SPLIT_SUMS=separate run_bin profile --adapter "$adapter" --preset "$preset" \
    --synthetic --steps "$steps" --json > "$work/profile-separate-$preset.json" \
    || rm -f "$work/profile-separate-$preset.json"
  # The same step with the bias gradients' column sums in one pass per column rather than
  # in row slices (what slicing saves on this GPU).
  log "profile --preset $preset, column sums serial"
  LSTM_GPU_COLUMN_SUMS=serial run_bin profile --adapter "$adapter" --preset "$preset" \
    --synthetic --steps "$steps" --json > "$work/profile-serial-$preset.json" \
    || rm -f "$work/profile-serial-$preset.json"
  # The wavefront with its paired time steps as one launch each (the default) and as one
  # launch per layer (LSTM_GPU_WAVEFRONT_GROUPS=off: the order alone), whatever tune chose.
  log "profile --preset $preset, --recurrence wavefront, grouped and not"
  run_bin profile --adapter "$adapter" --preset "$preset" --recurrence wavefront \
    --synthetic --steps "$steps" --json > "$work/profile-wavefront-$preset.json" \
    || rm -f "$work/profile-wavefront-$preset.json"
  LSTM_GPU_WAVEFRONT_GROUPS=off run_bin profile --adapter "$adapter" --preset "$preset" \
    --recurrence wavefront --synthetic --steps "$steps" --json \
    > "$work/profile-wavefront-off-$preset.json" \
    || rm -f "$work/profile-wavefront-off-$preset.json"
done
presets="${measured# }"
if [ -z "$presets" ]; then
  log "no preset could be tuned and profiled: see the errors above"
  exit 1
fi

s="${matmul_size}x${matmul_size}x${matmul_size}"
if [ "$matmul_size" != 0 ] && ! past_budget "the square-size bench"; then
  log "bench kernels --shape $s (every variant)"
  run_bin bench kernels --adapter "$adapter" --shape "$s" --json > "$work/bench-square.json" 2> /dev/null \
    || { log "bench kernels at $s failed"; rm -f "$work/bench-square.json"; }
fi

# --precision mixed: needs shader-f16; an adapter without it leaves these files out.
if [ $mixed = 1 ] && past_budget "the mixed-precision part"; then
  mixed=0
fi
if [ $mixed = 1 ]; then
  for preset in $presets; do
    log "profile --precision mixed --preset $preset ($steps steps)"
    run_bin profile --adapter "$adapter" --preset "$preset" --precision mixed --synthetic \
      --steps "$steps" --json > "$work/profile-mixed-$preset.json" 2> "$work/profile-mixed-$preset.err" \
      || { log "profile --precision mixed failed: $(tail -n 1 "$work/profile-mixed-$preset.err")"; rm -f "$work/profile-mixed-$preset.json"; }
  done
  if [ "$matmul_size" != 0 ]; then
    log "bench kernels --precision mixed --shape $s"
    run_bin bench kernels --adapter "$adapter" --precision mixed --shape "$s" --json \
      > "$work/bench-square-mixed.json" 2> /dev/null || rm -f "$work/bench-square-mixed.json"
  fi
fi

# Every product the presets' steps run (the keys of their tuning), for the peer's matmuls.
products=$(python3 - "$work" $presets <<'PY' 2>/dev/null || true
import json, sys
keys = []
for preset in sys.argv[2:]:
    entry = json.load(open(f"{sys.argv[1]}/tune-{preset}.json"))
    keys += [k for k in entry.get("matmul_ms", {}) if k not in keys]
print(" ".join(keys))
PY
)
[ "$matmul_size" = 0 ] || products="${matmul_size}x${matmul_size}x${matmul_size}:NN $products"

# The peer: the same presets in PyTorch on this machine's GPU, when PyTorch is there.
if [ -z "$peer" ]; then
  for candidate in ./torch_peer.py "$(dirname "$0")/../bench/torch_peer.py"; do
    if [ -f "$candidate" ]; then peer="$candidate"; break; fi
  done
fi
if [ $no_peer = 0 ] && [ -n "$peer" ] && python3 -c "import torch" 2>/dev/null; then
  log "PyTorch peer ($peer)"
  timeout "${COMMAND_SECONDS:-240}" python3 "$peer" --out "$work/peer.json" --presets "$presets" --matmuls "$products" \
    || { log "the PyTorch peer failed; the table has no peer column"; rm -f "$work/peer.json"; }
  if [ $mixed = 1 ]; then
    log "PyTorch peer, autocast to f16"
    square=""
    [ "$matmul_size" = 0 ] || square="${matmul_size}x${matmul_size}x${matmul_size}:NN"
    timeout "${COMMAND_SECONDS:-240}" python3 "$peer" --out "$work/peer-mixed.json" --presets "$presets" --precision mixed \
      --matmuls "$square" || rm -f "$work/peer-mixed.json"
  fi
fi
secs=$(( $(date +%s) - t0 ))

{
  printf '{\n"seconds": %s,\n"adapters": ' "$secs"
  cat "$work/adapters.json"
  printf ',\n"bench_kernels": '
  if [ -f "$work/bench.json" ]; then cat "$work/bench.json"; else printf 'null'; fi
  printf ',\n"bench_square": '
  if [ -f "$work/bench-square.json" ]; then cat "$work/bench-square.json"; else printf 'null'; fi
  printf ',\n"profiles": {\n'
  first=1
  for preset in $presets; do
    [ $first = 1 ] || printf ',\n'
    first=0
    printf '"%s": {"tune": ' "$preset"
    cat "$work/tune-$preset.json"
    printf ', "profile": '
    cat "$work/profile-$preset.json"
    printf ', "profile_split_sums_separate": '
    if [ -f "$work/profile-separate-$preset.json" ]; then cat "$work/profile-separate-$preset.json"; else printf 'null'; fi
    printf ', "profile_column_sums_serial": '
    if [ -f "$work/profile-serial-$preset.json" ]; then cat "$work/profile-serial-$preset.json"; else printf 'null'; fi
    printf ', "profile_wavefront": '
    if [ -f "$work/profile-wavefront-$preset.json" ]; then cat "$work/profile-wavefront-$preset.json"; else printf 'null'; fi
    printf ', "profile_wavefront_per_layer": '
    if [ -f "$work/profile-wavefront-off-$preset.json" ]; then cat "$work/profile-wavefront-off-$preset.json"; else printf 'null'; fi
    printf '}'
  done
  printf '\n},\n"peer": '
  if [ -f "$work/peer.json" ]; then cat "$work/peer.json"; else printf 'null'; fi
  printf ',\n"mixed": {"profiles": {'
  first=1
  for preset in $presets; do
    [ -f "$work/profile-mixed-$preset.json" ] || continue
    [ $first = 1 ] || printf ','
    first=0
    printf '"%s": ' "$preset"
    cat "$work/profile-mixed-$preset.json"
  done
  printf '},\n"bench_square": '
  if [ -f "$work/bench-square-mixed.json" ]; then cat "$work/bench-square-mixed.json"; else printf 'null'; fi
  printf ',\n"peer": '
  if [ -f "$work/peer-mixed.json" ]; then cat "$work/peer-mixed.json"; else printf 'null'; fi
  printf '}\n}\n'
} > "$out"

# The short table: one line per preset, read from the profiles' JSON without jq.
field() { grep -m1 "\"$2\"" "$1" | sed -e 's/^[^:]*: *//' -e 's/,$//' -e 's/"//g'; }
echo
# The peer's words/s of a preset, and lstm-gpu's as a multiple of it ("-" without a peer).
peer_wps() {
  [ -f "$work/peer.json" ] || { echo "-"; return; }
  python3 -c 'import json,sys; p=json.load(open(sys.argv[1]))["presets"].get(sys.argv[2]); print(round(p["words_per_second"]) if p else "-")' "$work/peer.json" "$1"
}
ratio() { if [ "$2" = "-" ]; then echo "-"; else awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; fi; }
printf '%-7s %10s %9s %10s %12s %11s %10s %6s  %s\n' preset words/s "% limit" "GPU ms" "epoch (s)" dispatches "peer w/s" ratio recurrence
for preset in $presets; do
  p="$work/profile-$preset.json"
  wps="$(field "$p" words_per_second)"
  pw="$(peer_wps "$preset")"
  printf '%-7s %10.0f %9.1f %10.1f %12.0f %11s %10s %6s  %s\n' "$preset" \
    "$wps" "$(field "$p" percent_of_matmul_limit)" \
    "$(field "$p" gpu_ms)" "$(field "$p" epoch_seconds)" \
    "$(field "$p" dispatches_per_step)" "$pw" "$(ratio "$wps" "$pw")" "$(field "$p" recurrence)"
done
if [ -f "$work/peer.json" ]; then
  echo "peer: the same presets in PyTorch ($peer) on this machine; ratio = lstm-gpu / peer"
fi
echo
# One A/B of every preset: the default step's profile against the one in
# profile-$1-PRESET.json, each named ($2, $3), with the dispatches per step.
ab_lines() {
  local preset p q a b
  for preset in $presets; do
    p="$work/profile-$preset.json" q="$work/profile-$1-$preset.json"
    [ -f "$q" ] || continue
    a="$(field "$p" words_per_second)" b="$(field "$q" words_per_second)"
    printf '  %-7s %s %10.0f words/s, %s dispatches; %s %10.0f words/s, %s dispatches: %sx\n' \
      "$preset" "$2" "$a" "$(field "$p" dispatches_per_step)" "$3" "$b" \
      "$(field "$q" dispatches_per_step)" "$(ratio "$a" "$b")"
  done
}
echo "Split recurrent products' slices added by the LSTM cell (the default) or by a pass of"
echo "their own (LSTM_GPU_SPLIT_SUMS=separate):"
ab_lines separate cell separate
echo
echo "Bias gradients' column sums as the adapter adds them (in row slices on GPUs: two launches"
echo "each) or in one pass per column (LSTM_GPU_COLUMN_SUMS=serial):"
ab_lines serial default serial
echo
echo "--recurrence wavefront with the layers' paired time steps as one launch each (the"
echo "default) or one launch per layer (LSTM_GPU_WAVEFRONT_GROUPS=off), beside the tuned step:"
for preset in $presets; do
  p="$work/profile-wavefront-$preset.json" q="$work/profile-wavefront-off-$preset.json"
  [ -f "$p" ] && [ -f "$q" ] || continue
  a="$(field "$p" words_per_second)" b="$(field "$q" words_per_second)"
  c="$(field "$work/profile-$preset.json" words_per_second)"
  printf '  %-7s grouped %10.0f words/s, %s dispatches (%s steps grouped); per layer %10.0f words/s, %s dispatches: %sx; tuned (%s) %10.0f words/s\n' \
    "$preset" "$a" "$(field "$p" dispatches_per_step)" "$(field "$p" wavefront_grouped_steps)" \
    "$b" "$(field "$q" dispatches_per_step)" \
    "$(ratio "$a" "$b")" "$(field "$work/profile-$preset.json" recurrence)" "$c"
done
echo
echo "A training step with each recurrence, as tune timed it (ms; the choice kept):"
python3 - "$work" $presets <<'PY' || true
import json, sys
work, presets = sys.argv[1], sys.argv[2:]
for preset in presets:
    models = json.load(open(f"{work}/tune-{preset}.json")).get("models", {})
    for m in models.values():
        ms = m.get("step_ms") or {}
        if ms:
            times = ", ".join(f"{r} {t:.2f}" for r, t in ms.items())
            print(f"  {preset:<7} {times}: {m['recurrence']}")
            break
PY
echo
echo "Each product of a seed step: the tuned kernel, its time and GFLOP/s, against the fastest:"
grep -E "^  [0-9]" "$work/bench.txt" 2>/dev/null || echo "  (not run: --presets has no seed)"
if [ -f "$work/peer.json" ] || [ -f "$work/bench-square.json" ]; then
  echo
  echo "Products against torch.matmul (fp32, TF32 off): lstm-gpu's fastest variant (tuned per"
  echo "product; every variant at the square size) and its speed as a multiple of cuBLAS's:"
  python3 - "$work" $presets <<'PY' || true
import json, os, sys
work, presets = sys.argv[1], sys.argv[2:]
peer = {}
if os.path.exists(f"{work}/peer.json"):
    peer = json.load(open(f"{work}/peer.json")).get("matmuls", {})
ours = {}
for preset in presets:
    for key, times in json.load(open(f"{work}/tune-{preset}.json")).get("matmul_ms", {}).items():
        best = min(times, key=times.get)
        if key not in ours or times[best] < ours[key][1]:
            ours[key] = (best, times[best])
if os.path.exists(f"{work}/bench-square.json"):
    for r in json.load(open(f"{work}/bench-square.json"))["rows"]:
        key = f'{r["m"]}x{r["k"]}x{r["n"]}:{r["form"]}'
        if key not in ours or r["ms"] < ours[key][1]:
            ours[key] = (r["variant"], r["ms"])
print(f'  {"product":<22} {"lstm-gpu":<18} {"ms":>9} {"GFLOP/s":>9} {"torch ms":>9} {"ratio":>6}')
for key, (variant, ms) in ours.items():
    m, k, n = (int(v) for v in key.split(":")[0].split("x"))
    gf = 2 * m * k * n / (ms / 1e3) / 1e9
    t = peer.get(key)
    tm = f'{t["ms"]:9.3f}' if t else f'{"-":>9}'
    ratio = f'{t["ms"] / ms:6.2f}' if t else f'{"-":>6}'
    print(f"  {key:<22} {variant:<18} {ms:9.3f} {gf:9.0f} {tm} {ratio}")
print("  ratio = torch.matmul's time / lstm-gpu's (above 1: lstm-gpu faster)")
PY
fi
if [ $mixed = 1 ]; then
  echo
  echo "--precision mixed (f16 products, f32 sums) against PyTorch with autocast to f16:"
  python3 - "$work" $presets <<'PY' || true
import json, os, sys
work, presets = sys.argv[1], sys.argv[2:]
def load(name):
    path = f"{work}/{name}"
    return json.load(open(path)) if os.path.exists(path) else None
peer = load("peer-mixed.json") or {}
print(f'  {"preset":<7} {"words/s":>10} {"peer w/s":>10} {"ratio":>6}  matmul')
for preset in presets:
    prof = load(f"profile-mixed-{preset}.json")
    if prof is None:
        print(f"  {preset:<7} (not run: see the log)")
        continue
    wps = prof["words_per_second"]
    p = peer.get("presets", {}).get(preset)
    pw = f'{p["words_per_second"]:10.0f}' if p else f'{"-":>10}'
    ratio = f'{wps / p["words_per_second"]:6.2f}' if p else f'{"-":>6}'
    kernels = sorted({r.get("kernel", "") for r in prof.get("kernels", []) if "matmul" in r.get("kernel", "")})
    print(f"  {preset:<7} {wps:10.0f} {pw} {ratio}  {', '.join(kernels)}")
square = load("bench-square-mixed.json")
if square:
    tm = peer.get("matmuls", {})
    for r in square["rows"]:
        key = f'{r["m"]}x{r["k"]}x{r["n"]}:{r["form"]}'
        t = tm.get(key)
        ratio = f'{t["ms"] / r["ms"]:.2f}x torch.matmul f16 ({t["ms"]:.3f} ms)' if t else "no torch figure"
        print(f'  {key} {r["variant"]}: {r["ms"]:.3f} ms, {r["gflops"]:,.0f} GFLOP/s, {ratio}')
PY
fi
echo
echo "written: $out (${secs} s)"

#!/usr/bin/env bash
# Prepare, on the machine without a GPU, everything a lent GPU needs for the open issues'
# measurements (24, 25, 26), so that the device's minutes go to measuring:
#
#   .devrun/lstm-gpu          the stripped release binary
#   .devrun/tests.tar.gz      stripped test binaries (7 MB each; packed so that everything
#                             carried stays under the 64 MiB a call takes): parity_matmul_coop,
#                             mixed_precision, parity_matmul_f16, train_step_parity,
#                             parity_matmul, parity_reduce_sgd, parity_softmax_xent
#   .devrun/ptb/              the PTB files (for real training runs: issue 26)
#   .gl/                      the Vulkan/EGL loader debs the device may lack
#
# Both folders are listed in .git/info/exclude. Then, on the device (the `device` tool's
# `run`, carrying ".devrun" and ".gl"): `bash scripts/device-run.sh first|checks|bench|medium|large`.
set -euo pipefail
cd "$(dirname "$0")/.."
for d in /.devrun/ /.gl/; do
  grep -qxF "$d" .git/info/exclude 2>/dev/null || echo "$d" >> .git/info/exclude
done
rm -rf .devrun/tests .devrun/tests.tar.gz
mkdir -p .devrun/tests
cargo build --release
strip -o .devrun/lstm-gpu target/release/lstm-gpu
tests="parity_matmul_coop mixed_precision parity_matmul_f16 train_step_parity parity_matmul parity_reduce_sgd parity_softmax_xent"
args=()
for t in $tests; do
  args+=(--test "$t")
done
# The test binaries' paths, from cargo's own report of what it built.
cargo test --release --no-run "${args[@]}" --message-format=json 2>/dev/null \
  | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("profile", {}).get("test") and m.get("executable"):
        print(m["target"]["name"], m["executable"])
' | while read -r name exe; do strip -o ".devrun/tests/$name" "$exe"; done
tar czf .devrun/tests.tar.gz -C .devrun tests
rm -rf .devrun/tests
ptb="${LSTM_GPU_PTB_DIR:-../shared/data/ptb}"
mkdir -p .devrun/ptb
cp "$ptb"/ptb.train.txt "$ptb"/ptb.valid.txt "$ptb"/ptb.test.txt .devrun/ptb/
if [ ! -d .gl ] || [ -z "$(ls .gl/*.deb 2>/dev/null)" ]; then
  mkdir -p .gl /tmp/amd64/partial
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  # shellcheck disable=SC2086
  apt-get $o update -qq
  # shellcheck disable=SC2086
  (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi
du -sh .devrun .gl
echo "carry: [\".devrun\", \".gl\"]; run: bash scripts/device-run.sh first|checks|bench|medium|large"

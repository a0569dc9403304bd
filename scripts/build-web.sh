#!/usr/bin/env bash
# Build the browser page: the lstm-gpu-web crate for wasm32-unknown-unknown, its JS glue
# with wasm-bindgen (into web/pkg, which `lstm-gpu serve` serves with web/www), then the
# native program. Needs `rustup target add wasm32-unknown-unknown` and
# `cargo install wasm-bindgen-cli --version $WASM_BINDGEN` (the crate's exact version).
set -euo pipefail
cd "$(dirname "$0")/.."

WASM_BINDGEN=0.2.130 # = the `wasm-bindgen` pin in web/Cargo.toml

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    echo "build-web: the wasm32-unknown-unknown target is missing: rustup target add wasm32-unknown-unknown" >&2
    exit 1
fi
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$WASM_BINDGEN" ]; then
    echo "build-web: wasm-bindgen-cli $WASM_BINDGEN is needed (found: ${have:-none}): cargo install wasm-bindgen-cli --version $WASM_BINDGEN" >&2
    exit 1
fi

cargo build -p lstm-gpu-web --target wasm32-unknown-unknown --release
wasm-bindgen --target web --no-typescript --out-dir web/pkg \
    target/wasm32-unknown-unknown/release/lstm_gpu_web.wasm
echo "build-web: web/pkg/ ready ($(du -h web/pkg/lstm_gpu_web_bg.wasm | cut -f1) of wasm)"
if [ "${1:-}" != "--wasm-only" ]; then
    cargo build --release
    echo "build-web: now run: target/release/lstm-gpu serve   (then open the URL it prints)"
fi

#!/usr/bin/env bash
# TensorFlow.js with its WebGPU backend, for the side-by-side benchmark of the page
# (tests/browser/speed.rs, seed_model_speed_page_against_native, reads it from target/tfjs).
# Needs npm; fetches about 300 MB into a scratch folder and keeps the two bundles.
set -euo pipefail
VERSION=4.22.0
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/target/tfjs"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
(cd "$scratch" && npm install --silent --no-audit --no-fund \
    "@tensorflow/tfjs@$VERSION" "@tensorflow/tfjs-backend-webgpu@$VERSION")
mkdir -p "$out"
cp "$scratch/node_modules/@tensorflow/tfjs/dist/tf.min.js" "$out/"
cp "$scratch/node_modules/@tensorflow/tfjs-backend-webgpu/dist/tf-backend-webgpu.min.js" "$out/"
echo "fetch-tfjs: TensorFlow.js $VERSION in $out"

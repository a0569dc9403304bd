#!/usr/bin/env bash
# Build the Khronos SPIR-V validator (spirv-val, SPIRV-Tools 2025.1) into
# target/spirv-tools/spirv-val, for tests/shader_translation.rs, which looks there before
# the PATH. Debian 12's spirv-tools (2023.1) predates SPV_KHR_cooperative_matrix and cannot
# check the cooperative-matrix kernels; a newer spirv-val on the PATH (Debian 13, the Vulkan
# SDK) needs none of this. The sources are Debian's (deb.debian.org), checked against their
# SHA-256 sums; building only the validator takes a few minutes on two cores. Needs cmake, a
# C++ compiler and python3 (installed with apt where missing). Prints the binary's path.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=target/spirv-tools
BIN=$OUT/spirv-val
if [ -x "$BIN" ] && "$BIN" --version >/dev/null 2>&1; then
    echo "$BIN"
    exit 0
fi

TOOLS=spirv-tools_2025.1~rc1.orig.tar.gz
TOOLS_SHA=6895160d5a842552eda6412440747cbadddd47005957bc43bb03926162686777
HEADERS=spirv-headers_1.6.1+1.4.309.0.orig.tar.gz
HEADERS_SHA=64ea06bf123c5c063a6be01dd45adec6a30cc0862000781ca18f9104693b722c
POOL=http://deb.debian.org/debian/pool/main/s

SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null; then SUDO="sudo"; fi
missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v c++ >/dev/null || missing+=(g++)
command -v python3 >/dev/null || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
curl -fsSL -o "$src/$TOOLS" "$POOL/spirv-tools/$TOOLS"
curl -fsSL -o "$src/$HEADERS" "$POOL/spirv-headers/$HEADERS"
(cd "$src" && printf '%s  %s\n%s  %s\n' "$TOOLS_SHA" "$TOOLS" "$HEADERS_SHA" "$HEADERS" | sha256sum --quiet -c -) >&2
mkdir "$src/tools" "$src/headers"
tar xzf "$src/$TOOLS" -C "$src/tools" --strip-components=1
tar xzf "$src/$HEADERS" -C "$src/headers" --strip-components=1
cmake -S "$src/tools" -B "$src/build" -DCMAKE_BUILD_TYPE=Release \
    -DSPIRV-Headers_SOURCE_DIR="$src/headers" -DSPIRV_SKIP_TESTS=ON -DSPIRV_WERROR=OFF >/dev/null
cmake --build "$src/build" --target spirv-val -j "$(nproc)" >/dev/null
mkdir -p "$OUT"
cp "$src/build/tools/spirv-val" "$BIN.tmp"
mv "$BIN.tmp" "$BIN"
echo "$BIN"

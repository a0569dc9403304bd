#!/usr/bin/env bash
# Type-check the library and the program for the platforms CI cannot run them on: Windows
# (wgpu's DX12 and Vulkan backends) and macOS on Apple silicon (Metal), so that a `cfg` a
# Linux build never compiles cannot break them unseen. `cargo check` links nothing, so no
# SDK is needed; only the rust-std of each target (`rustup target add`, done here).
#
# ring (under rustls, for `lstm-gpu data fetch`) compiles C in its build script. Its code
# does not matter to a type check, so a stand-in compiler writes empty objects instead of
# needing a cross compiler for each target.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(x86_64-pc-windows-gnu aarch64-apple-darwin)
installed=$(rustup target list --installed)
for t in "${TARGETS[@]}"; do
  grep -qx "$t" <<<"$installed" || rustup target add "$t"
done

stand_in=$(mktemp -d)
trap 'rm -rf "$stand_in"' EXIT
cat >"$stand_in/cc" <<'CC'
#!/usr/bin/env bash
# Writes an empty object where a compiler would write one (-o FILE, -oFILE, -FoFILE).
out="" prev=""
for a in "$@"; do
  [ "$prev" = "-o" ] && out="$a"
  case "$a" in -o?*) out="${a#-o}" ;; -Fo?*) out="${a#-Fo}" ;; esac
  prev="$a"
done
[ -z "$out" ] || : >"$out"
CC
chmod +x "$stand_in/cc"

for t in "${TARGETS[@]}"; do
  var=${t//-/_}
  echo "check-targets: $t" >&2
  env "CC_$var=$stand_in/cc" "AR_$var=ar" cargo check --release --quiet --target "$t" --lib --bins
done
echo "check-targets: the library and the program type-check for ${TARGETS[*]}" >&2

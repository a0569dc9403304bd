#!/usr/bin/env bash
# A lavapipe with cooperative matrices, for the matrix-core kernel's tests on a machine
# without a GPU: Mesa 26's lavapipe (Debian 13's trixie-backports) lists 8x8x8 tiles with
# f16 inputs and f32 sums (on a CPU where it runs 8 or more 32-bit lanes: AVX2), where
# Debian 12's Mesa 25.0 lists none. Nothing is installed on the system: the driver and every
# library it needs, Debian 13's C library included, are unpacked into target/lavapipe-coop,
# and `target/lavapipe-coop/run CMD ARGS` runs CMD through that C library's loader with this
# driver the only Vulkan one it sees. A program built on Debian 12 runs unchanged there
# (the C library is backward compatible); cargo runs test binaries through it with
# CARGO_TARGET_<HOST>_RUNNER. Checked as apt checks: each suite's InRelease against Debian's
# archive keyring, its Packages.xz against InRelease's SHA-256, each package against
# Packages'. Needs curl, gpgv, dpkg-deb and python3. Prints the runner's path.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=target/lavapipe-coop
RUN=$OUT/run
if [ -x "$RUN" ] && [ -f "$OUT/complete" ]; then
    echo "$RUN"
    exit 0
fi

MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITES="trixie trixie-backports"  # later suites win: the backported Mesa over Debian 13's
PACKAGE=mesa-vulkan-drivers
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
ARCH=$(dpkg --print-architecture)
case "$ARCH" in
    amd64) TRIPLET=x86_64-linux-gnu; LDSO=ld-linux-x86-64.so.2 ;;
    arm64) TRIPLET=aarch64-linux-gnu; LDSO=ld-linux-aarch64.so.1 ;;
    *) echo "lavapipe-coop.sh: no recipe for $ARCH (amd64 and arm64 only)" >&2; exit 1 ;;
esac
if [ ! -f "$KEYRING" ]; then
    SUDO=""
    if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null; then SUDO="sudo"; fi
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        debian-archive-keyring gpgv >&2
fi

rm -rf "$OUT"
mkdir -p "$OUT/index" "$OUT/debs" "$OUT/root"
for suite in $SUITES; do
    curl -fsSL -o "$OUT/index/$suite.InRelease" "$MIRROR/dists/$suite/InRelease"
    gpgv --keyring "$KEYRING" --output "$OUT/index/$suite.Release" \
        "$OUT/index/$suite.InRelease" 2>/dev/null \
        || { echo "lavapipe-coop.sh: $suite's InRelease is not signed by Debian's archive keys" >&2; exit 1; }
    sum=$(awk -v f="main/binary-$ARCH/Packages.xz" \
        '/^SHA256:/ {s=1; next} /^[^ ]/ {s=0} s && $3 == f {print $1}' "$OUT/index/$suite.Release")
    [ -n "$sum" ] || { echo "lavapipe-coop.sh: $suite lists no Packages.xz for $ARCH" >&2; exit 1; }
    curl -fsSL -o "$OUT/index/$suite.Packages.xz" "$MIRROR/dists/$suite/main/binary-$ARCH/Packages.xz"
    echo "$sum  $OUT/index/$suite.Packages.xz" | sha256sum --quiet -c -
done

# The package and what it depends on, transitively: the first alternative there is of each
# dependency, each package from the last suite that has it.
python3 - "$PACKAGE" $(for s in $SUITES; do echo "$OUT/index/$s.Packages.xz"; done) \
    >"$OUT/packages" <<'EOF'
import lzma, sys

root, indexes = sys.argv[1], sys.argv[2:]
known, provided = {}, {}
for path in indexes:
    for para in lzma.open(path, "rt", encoding="utf-8").read().split("\n\n"):
        fields = {}
        for line in para.splitlines():
            if line and not line[0].isspace():
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if "Package" in fields:
            known[fields["Package"]] = fields
            for p in fields.get("Provides", "").split(","):
                if p.strip():
                    provided.setdefault(p.split()[0], fields["Package"])

def name(alternative):
    return alternative.split()[0].split(":")[0]

todo, chosen = [root], {}
while todo:
    pkg = todo.pop()
    pkg = pkg if pkg in known else provided.get(pkg, pkg)
    if pkg in chosen:
        continue
    if pkg not in known:
        sys.exit(f"lavapipe-coop.sh: no package {pkg} in {', '.join(indexes)}")
    chosen[pkg] = known[pkg]
    deps = chosen[pkg].get("Pre-Depends", "") + "," + chosen[pkg].get("Depends", "")
    for dep in filter(None, (d.strip() for d in deps.split(","))):
        alternatives = [name(a) for a in dep.split("|")]
        todo.append(next((a for a in alternatives if a in known or a in provided), alternatives[0]))
for pkg in sorted(chosen):
    print(chosen[pkg]["Filename"], chosen[pkg]["SHA256"], chosen[pkg]["Version"])
EOF

while read -r file sum version; do
    deb="$OUT/debs/$(basename "$file")"
    curl -fsSL -o "$deb" "$MIRROR/$file"
    echo "$sum  $deb" | sha256sum --quiet -c -
    dpkg-deb -x "$deb" "$OUT/root"
done <"$OUT/packages"
rm -rf "$OUT/debs" "$OUT/root/usr/share/doc" "$OUT/root/usr/share/locale"
# The other drivers and the layers of the package (about 200 MB): only lavapipe is run.
find "$OUT/root/usr/lib/$TRIPLET" -maxdepth 1 \( -name 'libvulkan_*.so' -o -name 'libVkLayer_*.so' \) \
    ! -name libvulkan_lvp.so -delete

lib="root/usr/lib/$TRIPLET"
[ -f "$OUT/$lib/libvulkan_lvp.so" ] && [ -x "$OUT/$lib/$LDSO" ] \
    || { echo "lavapipe-coop.sh: the packages hold no $lib/libvulkan_lvp.so or $LDSO" >&2; exit 1; }
# The loader reads a relative library_path from the manifest's folder: the folder can move.
api=$(sed -n 's/.*"api_version": *"\([0-9.]*\)".*/\1/p' "$OUT"/root/usr/share/vulkan/icd.d/lvp_icd*.json | head -1)
cat >"$OUT/lvp_icd.json" <<EOF
{ "file_format_version": "1.0.1",
  "ICD": { "library_path": "./$lib/libvulkan_lvp.so", "api_version": "${api:-1.4.0}" } }
EOF
cat >"$RUN" <<EOF
#!/bin/sh
# Runs a program with Mesa $(awk -v p="$PACKAGE" '$1 ~ "/"p"_" {print $3}' "$OUT/packages")'s lavapipe as the only Vulkan driver, through
# Debian 13's C library (written by scripts/lavapipe-coop.sh).
here=\$(cd "\$(dirname "\$0")" && pwd)
export VK_DRIVER_FILES="\$here/lvp_icd.json" VK_ICD_FILENAMES="\$here/lvp_icd.json"
exec "\$here/$lib/$LDSO" --library-path "\$here/$lib" "\$@"
EOF
chmod +x "$RUN"
touch "$OUT/complete"
echo "$RUN"

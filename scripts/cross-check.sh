#!/usr/bin/env bash
# Portability of the device SDK: `cargo check` for arm64 and armv7 Linux, and no C
# dependency that blocks cross-compiling (no OpenSSL, no aws-lc) in its tree.
#
#   scripts/cross-check.sh
#
# Exits 0 with a clear message when the Rust targets cannot be installed (rustup
# without network); fails on a forbidden dependency or a failed check.
set -uo pipefail
cd "$(dirname "$0")/.."

TARGETS=(aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)
status=0

echo "== dependency tree of mir-device-sdk (normal dependencies)"
tree=$(cargo tree -p mir-device-sdk -e normal --prefix none 2>&1) || {
  echo "$tree"
  echo "FAIL: cargo tree failed"
  exit 1
}
bad=$(echo "$tree" | grep -E '^(aws-lc-sys|aws-lc-rs|openssl-sys|openssl) ' | sort -u || true)
if [ -n "$bad" ]; then
  echo "FAIL: C dependencies that block cross-compiling:"
  echo "$bad"
  status=1
else
  echo "ok: no aws-lc-sys, aws-lc-rs, openssl-sys in the SDK's tree"
fi
c_crates=$(echo "$tree" | grep -E '^(ring|cc|libc) ' | sort -u | tr '\n' ' ')
echo "note: crates that compile C/asm or bind libc: ${c_crates:-none}"
echo "      (ring needs a C cross compiler for the target: gcc-aarch64-linux-gnu /"
echo "       gcc-arm-linux-gnueabihf; it does not need OpenSSL or cmake)"

echo "== Rust targets"
missing=()
installed=$(rustup target list --installed 2>/dev/null || true)
for t in "${TARGETS[@]}"; do
  if ! echo "$installed" | grep -qx "$t"; then
    if ! rustup target add "$t" >/dev/null 2>&1; then
      missing+=("$t")
    fi
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "SKIPPED: the Rust standard library for ${missing[*]} is not installed and"
  echo "         'rustup target add' could not fetch it (no network to the rustup server)."
  echo "         cargo check for these targets was NOT run."
fi

echo "== C cross compilers (ring builds its C/asm with them, even for cargo check)"
declare -A CC_OF=([aarch64-unknown-linux-gnu]=aarch64-linux-gnu-gcc [armv7-unknown-linux-gnueabihf]=arm-linux-gnueabihf-gcc)
declare -A PKG_OF=([aarch64-unknown-linux-gnu]=gcc-aarch64-linux-gnu [armv7-unknown-linux-gnueabihf]=gcc-arm-linux-gnueabihf)
for t in "${TARGETS[@]}"; do
  cc=${CC_OF[$t]}
  if ! command -v "$cc" >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${PKG_OF[$t]} (Debian package)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${PKG_OF[$t]}" >/dev/null 2>&1 || {
      apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${PKG_OF[$t]}" >/dev/null 2>&1
    } || true
  fi
  if command -v "$cc" >/dev/null 2>&1; then echo "found: $cc"; else echo "missing: $cc (apt-get install ${PKG_OF[$t]})"; fi
done

for t in "${TARGETS[@]}"; do
  if printf '%s\n' "${missing[@]}" | grep -qx "$t"; then
    continue
  fi
  if ! command -v "${CC_OF[$t]}" >/dev/null 2>&1; then
    echo "SKIPPED: cargo check for $t: no C cross compiler ${CC_OF[$t]} for ring"
    continue
  fi
  echo "== cargo check -p mir-device-sdk --target $t"
  if cargo check -p mir-device-sdk --target "$t" --quiet 2>&1 | tail -20; [ "${PIPESTATUS[0]}" = 0 ]; then
    echo "ok: $t"
  else
    echo "FAIL: cargo check for $t"
    status=1
  fi
done

exit $status

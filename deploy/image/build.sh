#!/usr/bin/env bash
# Builds the surge image offline with buildah (no base image, no registry, no Docker engine): stages a root
# file system from a built release binary and runs `buildah bud` on deploy/image/Containerfile.
#
#   deploy/image/build.sh [BINARY]
#
# BINARY defaults to <cargo target dir>/release/surge (`cargo metadata`, so CARGO_TARGET_DIR counts); build
# it first with `cargo build --release -p surge`. The image is tagged surge:<version of the surge crate>
# (SURGE_IMAGE_TAG overrides the tag) in buildah's vfs storage as root (`buildah --storage-driver vfs
# images`; push it with `buildah --storage-driver vfs push localhost/surge:TAG docker://REGISTRY/...`).
# SURGE_IMAGE_SOURCE sets the org.opencontainers.image.source label (default: git's `origin` URL, if any).
set -euo pipefail
cd "$(dirname "$0")/../.."

buildah=(buildah --storage-driver vfs)
command -v buildah >/dev/null || { echo "build.sh: buildah not found (apt-get install -y buildah)" >&2; exit 1; }

read -r target_dir version < <(cargo metadata --format-version 1 --no-deps | python3 -c '
import json, sys
m = json.load(sys.stdin)
print(m["target_directory"], next(p["version"] for p in m["packages"] if p["name"] == "surge"))')
bin="${1:-$target_dir/release/surge}"
tag="${SURGE_IMAGE_TAG:-$version}"
image="surge:$tag"
[ -x "$bin" ] || { echo "build.sh: no binary at $bin (cargo build --release -p surge)" >&2; exit 1; }

ctx=$(mktemp -d "${TMPDIR:-/tmp}/surge-image.XXXXXX")
trap 'rm -rf "$ctx"' EXIT
root="$ctx/rootfs"
mkdir -p "$root/etc/ssl/certs" "$root/home" "$ctx/home/nonroot"
install -m 0755 "$bin" "$root/surge"

# Every shared library the binary loads and the dynamic loader, at the paths ldd resolves them to. A static
# binary has none ("not a dynamic executable").
libs=()
if ldd_out=$(ldd "$bin" 2>&1); then
  if grep -q 'not found' <<<"$ldd_out"; then
    echo "build.sh: ldd $bin: a library is missing:" >&2
    echo "$ldd_out" >&2
    exit 1
  fi
  while read -r path; do libs+=("$path"); done < <(awk '
    $2 == "=>" && $3 ~ /^\// { print $3; next }
    $1 ~ /^\// { print $1 }' <<<"$ldd_out")
elif ! grep -q 'not a dynamic executable' <<<"$ldd_out"; then
  echo "build.sh: ldd $bin failed: $ldd_out" >&2
  exit 1
fi
for lib in "${libs[@]}"; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L --preserve=mode "$lib" "$root$lib"
done

# distroless's users: root and nonroot (65532), no shell.
cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
PASSWD
cat >"$root/etc/group" <<'GROUP'
root:x:0:
nonroot:x:65532:
GROUP
install -d -m 1777 "$root/tmp"
# Remote-write and scrapes over HTTPS verify against the system roots (rustls-native-certs reads this file).
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
else
  echo "build.sh: warning: /etc/ssl/certs/ca-certificates.crt not found; the image has no CA certificates" >&2
fi

source_url="${SURGE_IMAGE_SOURCE:-$(git remote get-url origin 2>/dev/null || true)}"
labels=()
[ -n "$source_url" ] && labels+=(--label "org.opencontainers.image.source=$source_url")
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)

old_id=$("${buildah[@]}" images -q --no-trunc "localhost/$image" 2>/dev/null || true)
"${buildah[@]}" bud --isolation chroot --quiet -f deploy/image/Containerfile -t "$image" \
  --build-arg "VERSION=$version" --build-arg "REVISION=$revision" "${labels[@]}" "$ctx" >/dev/null
new_id=$("${buildah[@]}" images -q --no-trunc "localhost/$image")
# The image this tag named before is now untagged: remove it (not if something else still uses it).
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
  "${buildah[@]}" rmi "$old_id" >/dev/null 2>&1 || true
fi
echo "built localhost/$image ($(cut -c1-19 <<<"$new_id"), ${#libs[@]} libraries from ldd, $(du -sh "$root" | cut -f1))"

#!/usr/bin/env bash
# Builds the release binary and the image (build.sh), then runs the image's content as uid 65532 from its
# root file system (`buildah mount` + `chroot --userspec`, since running containers needs a runtime that
# this script does not assume): `/surge --version`, then `/surge run --no-view` (the embedded demo) until
# the aggregator is ready and the HPA policy has decided at least once. Needs root, buildah, curl, python3.
#
#   deploy/image/try.sh          # SURGE_BIN=PATH skips the cargo build and uses that binary
#
# The demo's ports are fixed (surge/src/default.yaml, surge/src/run.rs): 9091 aggregator, 9092 agent, 6443
# metrics APIs, 9111-9113 demo pods, all on 127.0.0.1; they must be free. Leaves the image, no container.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=deploy/image
buildah=(buildah --storage-driver vfs)
last=$SECONDS
lap() { printf '  %-40s %4ss\n' "$1" "$((SECONDS - last))"; last=$SECONDS; }
fail() { echo "try.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "needs root (buildah mount with the vfs driver, chroot, bind mounts)"
for tool in buildah curl python3 chroot mount; do
  command -v "$tool" >/dev/null || fail "$tool not found"
done

# The Containerfile and deploy/Dockerfile must describe the same runtime: user, entrypoint, default args.
for kw in USER ENTRYPOINT CMD; do
  a=$(grep "^$kw " "$here/Containerfile" || true)
  b=$(grep "^$kw " deploy/Dockerfile || true)
  [ -n "$a" ] && [ "$a" = "$b" ] \
    || fail "$kw differs: Containerfile '${a:-<none>}' vs deploy/Dockerfile '${b:-<none>}'"
done
grep -q '^COPY --from=build /surge /surge$' deploy/Dockerfile || fail "deploy/Dockerfile must install the binary at /surge"
[ "$(grep '^USER ' "$here/Containerfile")" = "USER 65532:65532" ] || fail "the image must run as 65532:65532"
[ "$(grep '^ENTRYPOINT ' "$here/Containerfile")" = 'ENTRYPOINT ["/surge"]' ] || fail "the entrypoint must be /surge"

ports=(9091 9092 6443 9111 9112 9113)
for p in "${ports[@]}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    fail "port 127.0.0.1:$p is in use; the embedded demo needs ${ports[*]} (stop what listens there)"
  fi
done

version=$(cargo metadata --format-version 1 --no-deps | python3 -c '
import json, sys
print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "surge"))')
if [ -z "${SURGE_BIN:-}" ]; then
  cargo build --release -p surge
  lap "release build"
fi
SURGE_IMAGE_TAG="$version" "$here/build.sh" ${SURGE_BIN:+"$SURGE_BIN"}
lap "image build"

ctr="" mnt="" pid="" mounts=()
log=$(mktemp "${TMPDIR:-/tmp}/surge-try.XXXXXX")
cleanup() {
  local rc=$? still=0
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  local i
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
    umount "${mounts[i]}" 2>/dev/null || umount -l "${mounts[i]}" 2>/dev/null || true
  done
  if [ -n "$mnt" ] && grep -qF " $mnt/" /proc/self/mountinfo; then
    still=1
    echo "try.sh: something is still mounted under $mnt; leaving container $ctr for you to inspect" >&2
  fi
  if [ -n "$ctr" ] && [ "$still" = 0 ]; then
    "${buildah[@]}" umount "$ctr" >/dev/null 2>&1 || true
    "${buildah[@]}" rm "$ctr" >/dev/null 2>&1 || echo "try.sh: could not remove container $ctr" >&2
  fi
  rm -f "$log"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ctr=$("${buildah[@]}" from --name "surge-try-$$" "localhost/surge:$version")
mnt=$("${buildah[@]}" mount "$ctr")
# What a container runtime would provide (surge runs without them too): /proc and the basic device nodes,
# as file binds, so no directory of the host's /dev is reachable through the container's file system.
mkdir -p "$mnt/proc" "$mnt/dev"
mount -t proc proc "$mnt/proc"
mounts+=("$mnt/proc")
for d in null zero random urandom; do
  touch "$mnt/dev/$d"
  mount --bind "/dev/$d" "$mnt/dev/$d"
  mounts+=("$mnt/dev/$d")
done
# The image's environment only (its PATH, HOME of nonroot), as a container runtime would set it.
as_nonroot=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/home/nonroot
  "$(command -v chroot)" --userspec=65532:65532 "$mnt")

out=$("${as_nonroot[@]}" /surge --version)
[ "$out" = "surge $version" ] || fail "/surge --version printed '$out', want 'surge $version'"
lap "/surge --version: $out"

"${as_nonroot[@]}" /surge run --no-view >"$log" 2>&1 &
pid=$!
api=http://127.0.0.1:9091
ready="" decided=""
deadline=$((SECONDS + 60))
while [ "$SECONDS" -lt "$deadline" ]; do
  kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; fail "/surge run exited early"; }
  if [ -z "$ready" ] && [ "$(curl -s -o /dev/null -w '%{http_code}' "$api/readyz")" = 200 ]; then
    ready=1
    lap "/readyz 200"
  fi
  if [ -n "$ready" ]; then
    n=$(curl -fsS "$api/api/v1/decisions" 2>/dev/null \
      | python3 -c 'import json, sys; print(len(json.load(sys.stdin)["data"]))' 2>/dev/null || echo 0)
    if [ "$n" -ge 1 ]; then
      decided=1
      lap "/api/v1/decisions: $n"
      break
    fi
  fi
  sleep 1
done
if [ -z "$decided" ]; then
  tail -n 30 "$log" >&2
  if [ -n "$ready" ]; then fail "no decision at $api/api/v1/decisions within 60 s"; fi
  fail "$api/readyz not 200 within 60 s"
fi

kill -TERM "$pid"
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then
  tail -n 30 "$log" >&2
  fail "/surge run did not stop within 10 s of SIGTERM"
fi
rc=0
wait "$pid" || rc=$?
pid=""
[ "$rc" = 0 ] || { tail -n 30 "$log" >&2; fail "/surge run exited $rc after SIGTERM"; }
lap "stopped (SIGTERM, exit 0)"

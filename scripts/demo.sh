#!/usr/bin/env bash
# make demo: a private containerd 2.x runs a busybox container in a joey VM.
# Everything lives under .cache/demo; the host's own containerd (if any) is
# not touched. Expects `make build image` to have run (the Makefile does it).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
B=$root/.cache/containerd/bin
D=$root/.cache/demo
NS=joey-demo
image=${JOEY_IMAGE_DIR:-$root/.cache/image}
start=$(date +%s.%N)

scripts/containerd.sh "$B"
rm -rf "$D"; mkdir -p "$D"
cat >"$D/config.toml" <<TOML
version = 3
root = "$D/root"
state = "$D/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime", "io.containerd.podsandbox.controller.v1.podsandbox", "io.containerd.nri.v1.nri", "io.containerd.internal.v1.opt"]
[grpc]
  address = "$D/containerd.sock"
TOML
cat >"$D/joey.toml" <<TOML
[runtime]
state_dir = "$D/joey"
[image]
dir = "$image"
TOML

JOEY_CONFIG=$D/joey.toml PATH="$root/bin:$B:$PATH" setsid "$B/containerd" --config "$D/config.toml" >"$D/containerd.log" 2>&1 &
cpid=$!
ctr() { "$B/ctr" --address "$D/containerd.sock" --namespace "$NS" "$@"; }
cleanup() {
	ctr task kill -s KILL demo >/dev/null 2>&1 || true
	ctr task rm -f demo >/dev/null 2>&1 || true
	ctr container rm demo >/dev/null 2>&1 || true
	kill -TERM "$cpid" 2>/dev/null || true
	wait "$cpid" 2>/dev/null || true
	grep -o " $D/[^ ]*" /proc/self/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
	rm -rf /run/containerd/runc/$NS /sys/fs/cgroup/*/$NS 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 100); do ctr version >/dev/null 2>&1 && break; sleep 0.1; done
ctr version >/dev/null || { cat "$D/containerd.log"; exit 1; }

ref=$(bin/joey-testimage --out "$D/busybox.tar")
ctr images import "$D/busybox.tar" >/dev/null
echo "host kernel:  $(uname -r)"
echo "+ ctr run --rm --runtime io.containerd.joey.v2 $ref demo uname -a"
t0=$(date +%s.%N)
ctr run --rm --runtime io.containerd.joey.v2 "$ref" demo uname -a
t1=$(date +%s.%N)
awk -v a="$t0" -v b="$t1" -v s="$start" \
	'BEGIN { printf "container in a VM: %.1f s (ctr run to exit); whole demo: %.1f s\n", b - a, b - s }'

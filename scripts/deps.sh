#!/usr/bin/env bash
# Installs what building and testing joey needs on a Debian 12 machine, and
# nothing that is already there. Used by `make deps` (and so by `make demo`,
# `make test`) and by .ci/run, so no step relies on something installed by hand.
set -euo pipefail

apt_packages=(
	qemu-system-x86         # the VMM of the qemu driver (TCG here, KVM on hardware)
	protobuf-compiler       # make generate / the staleness check
	busybox-static          # test rootfs and the image's opt-in debug console
	cpio xz-utils file kmod # image build: initramfs, kernel decompression, checks
	iproute2                # network tests
	containernetworking-plugins
	ca-certificates
	gcc libc6-dev           # cgo for runc's nsenter in the static joey-agent
	runc                    # reference runtime of test/containerdtest's own self-test
)

missing=()
for p in "${apt_packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Code generators pinned to the versions the committed code was made with.
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/.cache/bin"
mkdir -p "$bin"
[ -x "$bin/protoc-gen-go" ] || GOBIN="$bin" go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
[ -x "$bin/protoc-gen-go-ttrpc" ] || GOBIN="$bin" go install github.com/containerd/ttrpc/cmd/protoc-gen-go-ttrpc@v1.2.10
exit 0

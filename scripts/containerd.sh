#!/usr/bin/env bash
# Installs containerd 2.4.2's containerd, ctr and containerd-shim-runc-v2 into a
# directory (default .cache/containerd/bin under the repo), built from the Go
# module proxy: Debian ships containerd 1.6, which cannot bootstrap a shim built
# on containerd 2's pkg/shim. Does nothing when all three are already there and
# containerd reports the wanted version. Used by `make demo` and `make test`.
set -euo pipefail

version=v2.4.2
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$root/.cache/containerd/bin}
bins=(containerd ctr containerd-shim-runc-v2)

up_to_date() {
	local b
	for b in "${bins[@]}"; do
		[ -x "$dir/$b" ] || return 1
	done
	# "containerd github.com/containerd/containerd/v2 v2.4.2 "
	"$dir/containerd" --version 2>/dev/null | grep -qE "[[:space:]]${version//./\\.}([[:space:]]|$)"
}

if up_to_date; then
	exit 0
fi

go=${GO:-go}
command -v "$go" >/dev/null || go=/usr/local/go/bin/go
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
echo "containerd: building containerd $version into $dir (about 90 s on 2 cores)"
start=$(date +%s)
pkgs=()
for b in "${bins[@]}"; do
	pkgs+=("github.com/containerd/containerd/v2/cmd/$b@$version")
done
# Outside the repo, so joey's go.mod does not take part in the build. A module
# download carries no git data, so the version is stamped the way containerd's
# own release build does; otherwise `containerd --version` says "2.4.2+unknown".
(cd / && GOBIN="$dir" GOFLAGS=-buildvcs=false "$go" install \
	-ldflags "-X github.com/containerd/containerd/v2/version.Version=$version" "${pkgs[@]}")
up_to_date || {
	echo "containerd: $dir/containerd does not report $version after the build" >&2
	exit 1
}
echo "containerd: done in $(($(date +%s) - start)) s"

#!/bin/bash
# kubeenv-bin.sh — print the directory holding the Kubernetes binaries the tests run (tools/kubeenv/build.sh),
# building them first if this machine has not yet (cold: ~21 min on 2 idle cores, 2.7 GB RAM at the peak).
#
# The binaries are cached in ${PROBER_KUBEENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/prober/kubeenv}/<hash>/
# where <hash> is the first 16 hex digits of the sha256 of tools/kubeenv/{go.mod,go.sum,build.sh}:
# bumping a version, or changing how they are built, builds into a fresh directory. A lock
# serialises concurrent callers; the build goes to a temporary directory that is renamed into place
# only when complete, so a present directory is always whole. Progress goes to stderr; stdout carries only the directory.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mod="$root/tools/kubeenv"
base=${PROBER_KUBEENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/prober/kubeenv}
hash=$(cat "$mod/go.mod" "$mod/go.sum" "$mod/build.sh" | sha256sum | cut -c1-16)
dir="$base/$hash"

complete() { local b; for b in etcd kube-apiserver kubectl kube-controller-manager kube-scheduler kubelet kube-proxy coredns helm; do [ -x "$1/$b" ] || return 1; done; }

if ! complete "$dir"; then
	mkdir -p "$base"
	exec 9>"$base/.lock"
	flock 9
	if ! complete "$dir"; then
		tmp=$(mktemp -d "$base/.build-$hash.XXXXXX")
		trap 'rm -rf "$tmp"' EXIT
		echo "kubeenv: building etcd and the Kubernetes binaries into $dir (once per machine, several minutes)" >&2
		start=$(date +%s)
		nice -n 10 "$mod/build.sh" "$tmp" >&2
		chmod 755 "$tmp"
		rm -rf "$dir"
		mv "$tmp" "$dir"
		trap - EXIT
		echo "kubeenv: built in $(( $(date +%s) - start ))s" >&2
	fi
fi
echo "$dir"

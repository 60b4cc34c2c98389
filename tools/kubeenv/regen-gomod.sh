#!/bin/bash
# regen-gomod.sh K8S_VERSION ETCD_VERSION — rewrite this module's go.mod and go.sum for other
# versions, e.g. `regen-gomod.sh 1.37.1 3.7.3`. Run it when bumping, then commit both files; the
# binary cache key (scripts/kubeenv-bin.sh) follows go.mod and go.sum, so the next test run builds.
#
# k8s.io/kubernetes requires its staging modules (k8s.io/api, k8s.io/apiserver, …) at v0.0.0 with
# `replace => ./staging/...`, which only works inside its own repository; each is mapped here to
# its published tag v0.<minor>.<patch>. Pin exact versions: the proxy's @latest for
# k8s.io/kubernetes is stale, and not every tag is served.
set -euo pipefail
k8s=${1:?usage: regen-gomod.sh K8S_VERSION ETCD_VERSION}
etcd=${2:?usage: regen-gomod.sh K8S_VERSION ETCD_VERSION}
cd "$(dirname "$0")"
export GOWORK=off GOFLAGS=-mod=mod
upstream=$(go mod download -json "k8s.io/kubernetes@v$k8s" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
gover=$(awk '$1 == "go" { print $2; exit }' "$upstream")
{
	printf 'module github.com/prober-dev/prober/tools/kubeenv\n\ngo %s\n\n' "$gover"
	printf 'tool (\n\tgo.etcd.io/etcd/server/v3\n'; for c in kube-apiserver kube-controller-manager kube-proxy kube-scheduler kubectl kubelet; do printf '\tk8s.io/kubernetes/cmd/%s\n' "$c"; done; printf ')\n\n'
	printf 'require (\n\tgo.etcd.io/etcd/server/v3 v%s\n\tk8s.io/kubernetes v%s\n)\n\n' "$etcd" "$k8s"
	echo '// k8s.io/kubernetes requires its staging modules at v0.0.0 + replace => ./staging/...;'
	echo '// map each to its published v0.X.Y tag.'
	echo 'replace ('
	grep '=> ./staging' "$upstream" | awk -v v="v0.${k8s#1.}" '{ print "\t" $1 " => " $1 " " v }'
	echo ')'
} > go.mod
rm -f go.sum
go mod tidy

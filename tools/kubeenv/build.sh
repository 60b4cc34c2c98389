#!/bin/bash
# build.sh OUTDIR — build, at the versions pinned here, everything the two Kubernetes harnesses run:
#   tools/kubetest (an API server alone): etcd, kube-apiserver, kubectl;
#   tools/kubenode (a real node):         + kube-controller-manager, kube-scheduler, kubelet, kube-proxy,
#                                           CoreDNS (cluster DNS) and helm (renders the NATS chart).
# The Kubernetes binaries and etcd come from this module's go.mod; CoreDNS and helm from their own
# modules at the versions named below. CGO is off (keep it constant: switching it rebuilds the whole
# cache) and the Kubernetes version ldflags are set (without them the server reports v0.0.0 and kubectl
# refuses it).
set -euo pipefail
out=${1:?usage: build.sh OUTDIR}
cd "$(dirname "$0")"
mkdir -p "$out"
out=$(cd "$out" && pwd)

coredns=v1.15.0
helm=v4.3.2

k8s=$(awk '$1 == "k8s.io/kubernetes" { print $2; exit }' go.mod)   # e.g. v1.37.1
k8s=${k8s#v}
major=${k8s%%.*}
minor=${k8s#*.}
minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
	ldflags+=" -X $pkg.gitVersion=v$k8s -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done

export CGO_ENABLED=0 GOWORK=off GOFLAGS="-mod=readonly -buildvcs=false"
# The API server's three first: they are what most tests wait for.
for cmd in kube-apiserver kubectl kube-controller-manager kube-scheduler kubelet kube-proxy; do
	echo "build $cmd" >&2
	go build -trimpath -ldflags="$ldflags" -o "$out/$cmd" "k8s.io/kubernetes/cmd/$cmd"
	[ "$cmd" = kubectl ] && go build -trimpath -ldflags="-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3
done
# Modules of their own, outside this go.mod: their own go.sum pins their dependencies.
(cd / && GOFLAGS=-buildvcs=false GOBIN="$out" go install -trimpath -ldflags="-s -w" "github.com/coredns/coredns@$coredns")
(cd / && GOFLAGS=-buildvcs=false GOBIN="$out" go install -trimpath \
	-ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=$helm" "helm.sh/helm/v4/cmd/helm@$helm")

"$out/kube-apiserver" --version
"$out/etcd" --version | head -n 1
"$out/coredns" -version | head -n 1
"$out/helm" version --short

#!/bin/bash
# build.sh OUTDIR — build etcd, kube-apiserver and kubectl at the versions pinned in this module's
# go.mod into OUTDIR. CGO is off (keep it constant: switching it rebuilds the whole cache) and the
# Kubernetes version ldflags are set (without them the server reports v0.0.0 and kubectl refuses it).
set -euo pipefail
out=${1:?usage: build.sh OUTDIR}
cd "$(dirname "$0")"
mkdir -p "$out"
out=$(cd "$out" && pwd)

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
go build -trimpath -ldflags="$ldflags" -o "$out/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
go build -trimpath -ldflags="$ldflags" -o "$out/kubectl" k8s.io/kubernetes/cmd/kubectl
go build -trimpath -ldflags="-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3

"$out/kube-apiserver" --version
"$out/etcd" --version | head -n 1

# prober — the two commands are `make run` (the embedded default) and `make test` (the whole suite).
GO       ?= go
DATA_DIR ?= .prober-data
ARGS     ?=
# CM_SOAK: how long 50 concurrent clients race on the ConfigMap in `make test`
CM_SOAK  ?= 60s
PKGS     := ./...

.PHONY: run test bench build lint clean deps kubeenv soak newman

## run: the embedded default — a 3-node JetStream cluster in-process, file store, API on :8889
run:
	$(GO) run ./cmd/prober embedded --data-dir $(DATA_DIR) $(ARGS)

## test: everything, with the race detector, against a real kube-apiserver + etcd
test: lint deps kubeenv
	PROBER_KUBEENV_BIN="$$(./scripts/kubeenv-bin.sh)" PROBER_KUBEENV_REQUIRED=1 PROBER_CM_SOAK=$(CM_SOAK) \
	  $(GO) test -race -count=1 -timeout 25m $(PKGS)

## deps: Debian packages the tests use (iproute2 for the kernel fence's network namespaces, as root)
deps:
	@if ! command -v ip >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2; fi

## kubeenv: etcd + kube-apiserver + kubectl for the tests, built from the Go module proxy once per machine
kubeenv:
	@./scripts/kubeenv-bin.sh >/dev/null

## soak: the ConfigMap compare-and-swap soak alone (50 concurrent clients, CM_SOAK long)
soak: kubeenv
	PROBER_KUBEENV_BIN="$$(./scripts/kubeenv-bin.sh)" PROBER_CM_SOAK=$(CM_SOAK) \
	  $(GO) test -race -count=1 -run TestConfigMapStoreCAS ./maintenance/

## bench: speed goals, printed side by side (not part of `make test`)
bench:
	$(GO) run ./bench/writegap $(WRITEGAP_ARGS)
	$(GO) run ./bench/health $(HEALTH_ARGS)

## build: the prober binary in bin/
build:
	$(GO) build -o bin/prober ./cmd/prober

## lint: gofmt + go vet
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

## newman: the Postman collection against a fresh embedded default (also part of `make test`)
newman:
	./scripts/newman.sh

clean:
	rm -rf bin $(DATA_DIR)

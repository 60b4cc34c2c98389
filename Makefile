# prober — the two commands are `make run` (the embedded default) and `make test` (the whole suite).
GO       ?= go
DATA_DIR ?= .prober-data
ARGS     ?=
# CM_SOAK: how long 50 concurrent clients race on the ConfigMap in `make test`
CM_SOAK  ?= 60s
PKGS     := ./...

.PHONY: run test fuzz bench bench-node bench-rollout build lint clean deps kubeenv soak newman node node-down screenshots

## run: the embedded default — a 3-node JetStream cluster in-process, file store, API on :8889
run:
	$(GO) run ./cmd/prober embedded --data-dir $(DATA_DIR) $(ARGS)

## test: everything, with the race detector, against a real kube-apiserver + etcd and, as root, a real node.
## Two rounds: the packages that run embedded NATS clusters and API servers, two at a time; then the real
## node's (deploy/, tools/kubenode/) alone, so that a node of 7 processes and 3 pods does not starve the
## timing of the others on 2 cores. The node's timings, which go test shows only with -v, are printed from
## NODE_REPORT afterwards.
NODE_REPORT := $(CURDIR)/.cache/kubenode/test-report.txt
NODE_PKGS   := ./deploy/ ./tools/kubenode/
TEST_ENV     = PROBER_KUBEENV_BIN="$$(./scripts/kubeenv-bin.sh)" PROBER_KUBEENV_REQUIRED=1 PROBER_CM_SOAK=$(CM_SOAK) \
               PROBER_NODE_REPORT=$(NODE_REPORT)
test: lint deps kubeenv
	@mkdir -p $(dir $(NODE_REPORT)) && rm -f $(NODE_REPORT)
	$(TEST_ENV) $(GO) test -race -count=1 -timeout 25m $$($(GO) list $(PKGS) | grep -v -e '/deploy$$' -e '/tools/kubenode$$'); \
	  s1=$$?; \
	  $(TEST_ENV) $(GO) test -race -count=1 -p 1 -timeout 25m $(NODE_PKGS); \
	  s2=$$?; [ ! -s $(NODE_REPORT) ] || cat $(NODE_REPORT); [ $$s1 = 0 ] && [ $$s2 = 0 ]

## fuzz: every native Go fuzz target in turn, FUZZTIME each (their seed corpora in testdata/fuzz/ run as ordinary
## tests in `make test`). A new input the fuzzer keeps is minimised for at most FUZZMINIMIZETIME, so that large
## seeds (whole monitoring documents) leave the time to fuzzing. A crasher is written to the package's
## testdata/fuzz/<target>/ and stops the run.
FUZZTIME         ?= 60s
FUZZMINIMIZETIME ?= 10s
FUZZ_TARGETS     := ./maintenance/:FuzzDecodeData ./filestore/:FuzzDecodeFile ./prober/:FuzzMaintenanceAPI \
                    ./natsraft/:FuzzMonitorDocs
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; name=$${t##*:}; \
	  echo "fuzz: $$name in $$pkg for $(FUZZTIME)"; \
	  $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME) $$pkg; \
	done

## deps: Debian packages the tests use as root: iproute2 (the kernel fence's network namespaces), what the
## real node runs (containerd, runc, the CNI plugins, nftables, iptables, conntrack) and the headless browser
## that tests the status page (chromium); installed only when missing
NODE_DEBS    := iproute2 containerd runc containernetworking-plugins nftables iptables conntrack
BROWSER_DEBS := chromium
deps:
	@if [ "$$(id -u)" = 0 ] && command -v dpkg >/dev/null 2>&1; then \
	  missing=""; for p in $(NODE_DEBS) $(BROWSER_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then echo "deps: apt-get install$$missing"; apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; fi; fi

## kubeenv: etcd and the Kubernetes binaries for the tests (tools/kubeenv), built from the Go module proxy once per machine
kubeenv:
	@./scripts/kubeenv-bin.sh >/dev/null

## soak: the ConfigMap compare-and-swap soak (50 concurrent clients, CM_SOAK long), then the reliability walk
## (walk/) at WALK_STEPS steps per topology from WALK_SEED: a new seed each run unless given; the walk prints it,
## and a failure prints the command that replays it
WALK_STEPS ?= 200
WALK_SEED  ?= $(shell date +%s)
soak: kubeenv
	PROBER_KUBEENV_BIN="$$(./scripts/kubeenv-bin.sh)" PROBER_CM_SOAK=$(CM_SOAK) \
	  $(GO) test -race -count=1 -run TestConfigMapStoreCAS ./maintenance/
	PROBER_WALK_SEED=$(WALK_SEED) PROBER_WALK_STEPS=$(WALK_STEPS) \
	  $(GO) test -race -count=1 -timeout 120m -v -run TestWalk ./walk/

## node: a real single-node Kubernetes (tools/kubenode) with deploy/ installed from locally built images, in the
## background; prints the kubeconfig to export and how to reach the prober. As root.
node: deps kubeenv
	$(GO) build -o .cache/kubenode/kubenode ./tools/kubenode/cmd/kubenode
	PROBER_KUBEENV_BIN="$$(./scripts/kubeenv-bin.sh)" .cache/kubenode/kubenode up

## node-down: stop it; nothing of it is left (processes, mounts, namespaces, cgroups, state)
node-down:
	$(GO) build -o .cache/kubenode/kubenode ./tools/kubenode/cmd/kubenode
	.cache/kubenode/kubenode down

## bench-node: the write gap of a publisher in a pod on a real node, bare fence vs the product (as root)
bench-node: deps kubeenv
	PROBER_KUBEENV_BIN="$$(./scripts/kubeenv-bin.sh)" $(GO) run ./bench/nodegap $(NODEGAP_ARGS)

## bench-rollout: kubectl rollout restart statefulset/nats under a publisher in a pod on a real node, the NATS
## chart's lame-duck preStop alone vs the prober's preStop (write gap, unacknowledged publishes, elections; as root);
## ROLLOUT_ARGS: -rounds N (3), the two hooks alternating
bench-rollout: deps kubeenv
	PROBER_KUBEENV_BIN="$$(./scripts/kubeenv-bin.sh)" $(GO) run ./bench/noderollout $(ROLLOUT_ARGS)

## bench: speed goals, printed side by side (not part of `make test`); API_ARGS: the length of each API attack
API_ARGS ?= -d 5s
bench:
	$(GO) run ./bench/writegap $(WRITEGAP_ARGS)
	$(GO) run ./bench/health $(HEALTH_ARGS)
	$(GO) run ./bench/evacuate $(EVACUATE_ARGS)
	$(GO) run ./bench/drain $(DRAIN_ARGS)
	$(GO) run ./bench/api $(API_ARGS)
	$(GO) run ./bench/exit $(EXIT_ARGS)
	$(GO) run ./bench/watch $(WATCH_ARGS)

## screenshots: docs/status-page.png and docs/status-page-409.png (the dry-run/409 dialog), taken by the status
## page's browser test (TestStatusPage) from a real run of the embedded default
screenshots: deps
	@mkdir -p docs
	PROBER_SCREENSHOTS=$(CURDIR)/docs $(GO) test -count=1 -run '^TestStatusPage$$' -v ./app/

## build: the prober binary in bin/, and bin/kubectl-prober (the kubectl plugin) linked to it
build:
	$(GO) build -o bin/prober ./cmd/prober
	ln -sf prober bin/kubectl-prober

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

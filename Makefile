# idnow-kafka-connector. `make run` and `make test` are all a newcomer needs; `make help` lists the rest.

GO       ?= go
BIN      := bin/idnow-connector
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
# A short fuzzing run of every fuzz target on each `make test`; longer on demand:
#   make fuzz FUZZTIME=5m
# The default is a count, not a duration: with a duration, Go 1.26's fuzz coordinator can report
# a spurious "context deadline exceeded" failure at the deadline on a loaded machine
# (golang/go#75804, fixed in Go 1.27); a count has no deadline to race.
FUZZTIME ?= 20000x
# The local Apicurio Registry of `make registry-up` (scripts/registry-common.sh).
REGISTRY_PORT ?= 18081
REGISTRY_MANAGEMENT_PORT ?= 18082
# The local SeaweedFS S3 server of `make s3-up` (scripts/seaweedfs-common.sh).
S3_PORT ?= 18333
S3_PORT_BASE ?= 18334

.DEFAULT_GOAL := help

include deploy/kafka/kafka.mk

.PHONY: help build run test test-unit fuzz lint bench itest clean

help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

build: ## Build bin/idnow-connector
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/idnow-connector

run: build ## Run the whole pipeline locally: embedded Kafka, IDnow simulator, ingress, enricher
	$(BIN) run --config deploy/local/config.yaml

test: test-unit fuzz ## Unit and component tests with the race detector, plus a short fuzz run

test-unit:
	$(GO) test -race -count=1 ./...

fuzz: ## Fuzz the webhook parsing path and the API answer decoding for FUZZTIME per target (default 20000 inputs, a few seconds)
	$(GO) test -run '^$$' -fuzz '^FuzzParseDelivery$$' -fuzztime $(FUZZTIME) ./internal/connector/ingress
	$(GO) test -run '^$$' -fuzz '^FuzzEventReader$$' -fuzztime $(FUZZTIME) ./internal/connector/ingress
	$(GO) test -run '^$$' -fuzz '^FuzzIsID$$' -fuzztime $(FUZZTIME) ./internal/connector/ingress
	$(GO) test -run '^$$' -fuzz '^FuzzCheckJSONObject$$' -fuzztime $(FUZZTIME) ./internal/webhook
	$(GO) test -run '^$$' -fuzz '^FuzzValid$$' -fuzztime $(FUZZTIME) ./internal/jsonscan
	$(GO) test -run '^$$' -fuzz '^FuzzFindFileRefs$$' -fuzztime $(FUZZTIME) ./internal/idnow
	$(GO) test -run '^$$' -fuzz '^FuzzSessionFastPath$$' -fuzztime $(FUZZTIME) ./internal/idnow
	$(GO) test -run '^$$' -fuzz '^FuzzDataBlocksFastPath$$' -fuzztime $(FUZZTIME) ./internal/idnow
	$(GO) test -run '^$$' -fuzz '^FuzzContentFields$$' -fuzztime $(FUZZTIME) ./internal/connector/enrich

lint: ## gofmt, go vet, golangci-lint (.golangci.yml; built once into the tool cache), integration build tag included; go mod tidy -diff
	@out="$$(gofmt -l $$(git ls-files '*.go'))"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags integration ./test/integration/...
	scripts/golangci-lint.sh run ./...
	$(GO) mod tidy -diff

bench: ## Micro and load benchmarks with ratios against references, ~6 min (BENCHMARKS.md); KAFKA_BROKERS=... adds a real-broker run
	scripts/bench.sh

itest: build ## Integration suite against a real broker: KAFKA_BROKERS=127.0.0.1:19092 (make kafka-up); archive tests also S3_ENDPOINT=http://127.0.0.1:18333 (make s3-up)
	$(GO) test -race -tags integration -count=1 -timeout 30m -v ./test/integration/...

clean: ## Remove build output and local data (not the Kafka jar cache)
	rm -rf bin data

.PHONY: interop
interop: ## Read the Avro interop vectors with Apache Avro for Java, decrypt the privacy vectors (records, an archive object) with Tink for Java and Tink for Python (needs Java 17+, Maven, python3-venv; cached outside the clone)
	scripts/interop.sh
	@py="$$(scripts/examples-venv.sh internal/privacy/interop/python/requirements.txt)" && \
		echo "interop: decrypting internal/privacy/testdata/interop with Tink for Python" && \
		"$$py" internal/privacy/interop/python/check.py .

.PHONY: promtool-check
promtool-check: build ## promtool: check and unit-test deploy/prometheus/alerts.yaml, check a live /metrics (promtool from Debian's package, cached)
	BIN=$(BIN) scripts/promtool-check.sh

.PHONY: helm-check
HELM_CHART := deploy/helm/idnow-kafka-connector
helm-check: ## Helm chart: helm lint --strict, helm template (default and ci/all-on-values.yaml, the latter at Kubernetes 1.30), then the Go tests validating the renderings and comparing them with deploy/kubernetes (helm v3.22.0 built once into the tool cache)
	scripts/helm.sh lint --strict $(HELM_CHART)
	scripts/helm.sh lint --strict --values $(HELM_CHART)/ci/all-on-values.yaml $(HELM_CHART)
	@mkdir -p bin
	scripts/helm.sh template idnow-connector $(HELM_CHART) --namespace idnow-connector >bin/helm-default.yaml
	scripts/helm.sh template idnow-connector $(HELM_CHART) --namespace idnow-connector --kube-version 1.30.0 --values $(HELM_CHART)/ci/all-on-values.yaml >bin/helm-all-on.yaml
	@for f in bin/helm-default.yaml bin/helm-all-on.yaml; do echo "$$f:"; grep '^kind:' $$f | sort | uniq -c; done
	HELM="$$(scripts/helm.sh --path)" go test -race -count=1 -run '^TestHelm' ./internal/app/

.PHONY: golangci-lint
golangci-lint: ## golangci-lint v2.15.0 with .golangci.yml alone (built once into the tool cache); `make lint` runs it too
	scripts/golangci-lint.sh run ./...

.PHONY: registry-up registry-down
registry-up: ## Start Apicurio Registry 3.3.3 on 127.0.0.1:$(REGISTRY_PORT) (ccompat API /apis/ccompat/v7; needs Java 21+, Maven; cached download)
	@REGISTRY_PORT='$(REGISTRY_PORT)' REGISTRY_MANAGEMENT_PORT='$(REGISTRY_MANAGEMENT_PORT)' scripts/registry-up.sh

registry-down: ## Stop the local Apicurio Registry (in-memory: its schemas are gone)
	@REGISTRY_PORT='$(REGISTRY_PORT)' REGISTRY_MANAGEMENT_PORT='$(REGISTRY_MANAGEMENT_PORT)' scripts/registry-down.sh

.PHONY: s3-up s3-down
s3-up: ## Start SeaweedFS with its S3 gateway on 127.0.0.1:$(S3_PORT) (ports $(S3_PORT_BASE)..+7 too), bucket idnow-evidence (weed built once per version into the tool cache, ~8 min of CPU)
	@S3_PORT='$(S3_PORT)' S3_PORT_BASE='$(S3_PORT_BASE)' scripts/s3-up.sh

s3-down: ## Stop the local SeaweedFS (data in .cache/seaweedfs/data is kept)
	@S3_PORT='$(S3_PORT)' S3_PORT_BASE='$(S3_PORT_BASE)' scripts/s3-down.sh

.PHONY: status-screenshot
status-screenshot: ## Renew docs/status-page.png from a running `run` in headless Chromium (installs Chromium from Debian's packages once)
	CHROMIUM="$$(scripts/chromium.sh)" STATUS_PAGE_SCREENSHOT="$(CURDIR)/docs/status-page.png" \
		$(GO) test -count=1 -run '^TestStatusPageInChromium$$' ./internal/app

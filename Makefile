# Vigil — run `make help` for the targets.

SHELL := /bin/bash
export PATH := $(PATH):/usr/local/go/bin
GO ?= go
BIN := bin

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

.PHONY: generate
generate: ## Regenerate the BPF objects (bpf2go) and protobuf code (needs install-deps.sh --dev)
	$(GO) build -o $(BIN)/protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go
	$(GO) build -o $(BIN)/protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc
	$(GO) generate ./bpf/... ./proto/...

.PHONY: check-generated
check-generated: ## Fail when committed generated code differs from a fresh build
	scripts/check-generated.sh

.PHONY: build
build: ## Build vigil-agent, vigil-server and vigilctl into bin/
	$(GO) build -o $(BIN)/ ./agent/cmd/vigil-agent ./server/cmd/vigil-server ./server/cmd/vigilctl

.PHONY: test
test: ## Run every test (as root: kernel and end-to-end tests too)
	scripts/test.sh

.PHONY: test-bpf
test-bpf: ## Run the kernel tests only (root)
	TEST_PKGS=./agent/sensor/... scripts/test.sh

.PHONY: bench
bench: build ## Measure the agent's overhead on exec, file and connect storms, its response latency (root), and the server's ingest rate and stream latency
	scripts/bench/exec-overhead
	scripts/bench/file-storm
	scripts/bench/connect-storm
	scripts/bench/response-latency
	scripts/bench/server

.PHONY: demo
demo: ## Install, build, start server and agent, provoke incidents, show them
	scripts/demo.sh

.PHONY: demo-stop
demo-stop: ## Stop the server and agent started by make demo
	scripts/demo.sh stop

.PHONY: lint
lint: ## gofmt check and go vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

.PHONY: format
format: ## Format the Go code
	gofmt -w $$(git ls-files '*.go')

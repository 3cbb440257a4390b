#!/usr/bin/env bash
# Regenerates the BPF objects and protobuf code and fails when they differ
# from what is committed. Needs the --dev dependencies of install-deps.sh.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$repo_root"
use_go
make --no-print-directory generate
if ! git diff --exit-code --stat -- bpf proto || [ -n "$(git status --porcelain -- bpf proto)" ]; then
	git status --short -- bpf proto
	die "generated code is out of date: run 'make generate' and commit the result"
fi
say "generated code is in sync"

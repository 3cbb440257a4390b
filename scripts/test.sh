#!/usr/bin/env bash
# Runs Vigil's whole test suite: unit tests, kernel tests that load the real
# BPF programs, and end-to-end tests that run the real vigil-server,
# vigil-agent and vigilctl. Run as root, or the kernel and end-to-end tests
# skip (under CI=true they fail instead).
#
#   scripts/test.sh [extra go test flags, e.g. -run TestE2E -v]
#   TEST_PKGS=./agent/sensor/... scripts/test.sh   (some packages only)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$repo_root"

if [ "$(id -u)" = 0 ]; then
	scripts/install-deps.sh --test
else
	say "not root: kernel and end-to-end tests will be skipped"
fi
use_go

# Test binaries are built outside /tmp (and the checkout may be under /tmp),
# so that the agent under test does not take the test programs themselves
# for payloads run from a temporary directory.
if [ "$(id -u)" = 0 ]; then
	export GOTMPDIR=/var/cache/vigil-test/gotmp
else
	export GOTMPDIR="$repo_root/.cache/gotmp"
fi
mkdir -p "$GOTMPDIR"

if [ -f .demo/vigil-agent.pid ] && kill -0 "$(cat .demo/vigil-agent.pid)" 2>/dev/null; then
	say "note: the demo's vigil-agent is running and will report what the tests provoke (scripts/demo.sh stop)"
fi

say "go vet"
go vet ./...
say "go test"
# -p 1: the kernel and end-to-end tests share the host's tracepoints.
go test -p 1 -count=1 -timeout 20m "$@" ${TEST_PKGS:-./...}

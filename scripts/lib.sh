# Shared helpers for Vigil's scripts; source it, don't run it.

# repo_root is the top of the Vigil checkout.
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# use_go puts a Go toolchain on PATH (the one install-deps.sh installs, if any).
use_go() {
	if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
		export PATH="/usr/local/go/bin:$PATH"
	fi
	command -v go >/dev/null 2>&1 || die "no Go toolchain: run scripts/install-deps.sh first"
}

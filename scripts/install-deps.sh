#!/usr/bin/env bash
# Installs what building, running and testing Vigil needs on Debian 12 or
# Ubuntu 22.04+, skipping whatever is already there. Run as root.
#
#   scripts/install-deps.sh         Go toolchain and the tools the tests use
#   scripts/install-deps.sh --test  also what the tests drive for real:
#                                   openssh-server, sshpass, sudo, curl,
#                                   python3, setcap, systemctl, the
#                                   PostgreSQL server (services the packages
#                                   bring are not started: the tests start
#                                   their own sshd and PostgreSQL) and
#                                   chromium (the web console's browser test)
#   scripts/install-deps.sh --dev   also clang, llvm, libbpf-dev, bpftool and
#                                   protoc, to regenerate the BPF objects and
#                                   protobuf code (make generate)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

dev=false test=false
for arg in "$@"; do
	case "$arg" in
	--dev) dev=true ;;
	--test) test=true ;;
	-h | --help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown option $arg (see --help)" ;;
	esac
done
[ "$(id -u)" = 0 ] || die "run as root: it installs packages"

# Debian packages, installed only when missing.
packages=(ca-certificates make git iproute2 procps)
$dev && packages+=(clang llvm libbpf-dev bpftool protobuf-compiler)
$test && packages+=(openssh-server sshpass sudo curl python3 libcap2-bin systemd postgresql chromium)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	say "installing ${missing[*]}"
	apt-get update -qq
	# Keep package scripts from starting services (openssh-server's ssh,
	# postgresql's cluster): the tests start their own private sshd and
	# PostgreSQL (internal/sshtest, internal/pgtest).
	policy=/usr/sbin/policy-rc.d
	own_policy=false
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && own_policy=true
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
	$own_policy && rm -f "$policy"
fi

# Go: the version go.mod asks for, or newer.
want="$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$repo_root/go.mod")"
have_go() {
	local v
	v="$("$1" env GOVERSION 2>/dev/null)" || return 1
	v="${v#go}"
	[ "$(printf '%s\n%s\n' "$want" "$v" | sort -V | head -n1)" = "$want" ]
}
for g in "$(command -v go || true)" /usr/local/go/bin/go; do
	if [ -n "$g" ] && have_go "$g"; then
		exit 0
	fi
done

# No recent enough Go: bootstrap with the distribution's Go, which fetches
# the official toolchain as a module (as GOTOOLCHAIN does) into /usr/local/go.
say "installing Go $want (go.mod needs it)"
if ! command -v go >/dev/null 2>&1; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go >/dev/null
fi
arch="$(dpkg --print-architecture)"
tmp="$(mktemp -d)"
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
dir="$(cd "$tmp" && GOMODCACHE="$tmp/mod" GOFLAGS=-mod=mod \
	go mod download -json "golang.org/toolchain@v0.0.1-go$want.linux-$arch" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
[ -n "$dir" ] && [ -f "$dir/bin/go" ] || die "could not download Go $want"
rm -rf /usr/local/go
cp -r "$dir" /usr/local/go
chmod -R u+w,a+rX /usr/local/go
chmod a+x /usr/local/go/bin/* /usr/local/go/pkg/tool/*/*
/usr/local/go/bin/go version
say "Go installed in /usr/local/go; add /usr/local/go/bin to PATH"

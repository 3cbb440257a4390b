#!/usr/bin/env bash
# Vigil on this host in one command: installs what is missing, builds the
# binaries, makes development certificates, starts vigil-server with TLS,
# agent certificates and client tokens, enrolls vigil-agent and starts it,
# runs two harmless but suspicious commands, and shows the incidents they
# raised with vigilctl. Server and agent keep running afterwards so you can
# explore.
#
#   scripts/demo.sh          start (or restart) the demo      (root)
#   scripts/demo.sh stop     stop the demo's server and agent
#
# Logs, database, certificates (.demo/pki), the vigilctl token
# (.demo/vigilctl.env) and pid files live in .demo/ in the checkout.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$repo_root"

demo="$repo_root/.demo"
addr="${VIGIL_DEMO_ADDR:-127.0.0.1:7470}"

stop() {
	for name in vigil-agent vigil-server; do
		pidfile="$demo/$name.pid"
		[ -f "$pidfile" ] || continue
		pid="$(cat "$pidfile")"
		if kill -0 "$pid" 2>/dev/null; then
			kill -TERM "$pid"
			for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
			say "stopped $name (pid $pid)"
		fi
		rm -f "$pidfile"
	done
}

case "${1:-start}" in
stop) stop; exit 0 ;;
start) ;;
*) die "unknown command ${1} (want start or stop)" ;;
esac

[ "$(id -u)" = 0 ] || die "run as root: the agent loads BPF programs"
[ -e /sys/kernel/btf/vmlinux ] || die "this kernel has no BTF (/sys/kernel/btf/vmlinux): Vigil needs CONFIG_DEBUG_INFO_BTF=y"

say "installing what is missing"
scripts/install-deps.sh
use_go

say "building"
go build -o bin/ ./agent/cmd/vigil-agent ./server/cmd/vigil-server ./server/cmd/vigilctl

stop
mkdir -p "$demo"
chmod 700 "$demo"

# Development certificates, made afresh at each start: a CA, the server's
# certificate for the demo address, and the CA's fingerprint the agent
# checks the server by when it enrolls.
host="${addr%:*}"
host="${host#[}"
host="${host%]}"
pki="$demo/pki"
say "making a development CA and server certificate in $pki"
rm -rf "$pki"
bin/vigil-server ca init "$pki" --host "localhost,127.0.0.1,::1,$host" >/dev/null
fingerprint="$(bin/vigil-server ca fingerprint "$pki")"

# A bearer token for vigilctl: the server keeps only its hash.
ctl_token="demo-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf '"sha256:%s": {name: demo, role: admin}\n' "$(printf %s "$ctl_token" | sha256sum | cut -d' ' -f1)" >"$demo/tokens.yaml"
(
	umask 077
	printf 'export VIGIL_SERVER=%s VIGIL_TOKEN=%s VIGIL_CA=%s\n' "$addr" "$ctl_token" "$pki/ca.pem" >"$demo/vigilctl.env"
)

say "starting vigil-server on $addr with TLS, agent certificates and client tokens (database $demo/server.db)"
nohup bin/vigil-server --listen "$addr" --db "$demo/server.db" \
	--tls-cert "$pki/server.pem" --tls-key "$pki/server-key.pem" --client-ca "$pki/ca.pem" \
	--enroll-ca "$pki" --tokens "$demo/tokens.yaml" >"$demo/vigil-server.log" 2>&1 &
echo $! >"$demo/vigil-server.pid"
for _ in $(seq 100); do
	grep -q 'vigil-server started' "$demo/vigil-server.log" && break
	kill -0 "$(cat "$demo/vigil-server.pid")" 2>/dev/null || { cat "$demo/vigil-server.log"; die "vigil-server did not start"; }
	sleep 0.1
done

say "enrolling vigil-agent: its own key, a certificate signed with a single-use token"
enroll_token="$(bin/vigil-server ca enroll-token "$pki" --ttl 10m 2>/dev/null)"
bin/vigil-agent enroll --server "$addr" --token "$enroll_token" --ca-fingerprint "$fingerprint" \
	--state-dir "$demo/agent" --force

say "starting vigil-agent"
nohup bin/vigil-agent --server "$addr" --state-dir "$demo/agent" >"$demo/vigil-agent.log" 2>&1 &
echo $! >"$demo/vigil-agent.pid"
for _ in $(seq 900); do # loading the sensors takes seconds, more on a busy host
	grep -q 'connected to server' "$demo/vigil-agent.log" && break
	kill -0 "$(cat "$demo/vigil-agent.pid")" 2>/dev/null || { cat "$demo/vigil-agent.log"; die "vigil-agent did not start"; }
	sleep 0.1
done
grep -q 'connected to server' "$demo/vigil-agent.log" || { cat "$demo/vigil-agent.log"; die "vigil-agent did not connect to the server"; }

vigilctl() { VIGIL_TOKEN="$ctl_token" bin/vigilctl --server "$addr" --ca "$pki/ca.pem" "$@"; }
case "$repo_root/" in
/tmp/* | /var/tmp/* | /dev/shm/*)
	say "note: this checkout is under a temporary directory, so Vigil reports its own binaries (bin/vigilctl) as run from there" ;;
esac
shadow_reads() { vigilctl incidents list --json --limit 1000 --rule shadow-file-read | wc -l; }
before="$(shadow_reads)"

say "provoking: a program run from /tmp, and cat /etc/shadow"
payload_dir="$(mktemp -d /tmp/vigil-demo.XXXXXX)"
cp /bin/true "$payload_dir/payload"
"$payload_dir/payload"
rm -rf "$payload_dir"
cat /etc/shadow >/dev/null

for _ in $(seq 50); do
	[ "$(shadow_reads)" -gt "$before" ] && break
	sleep 0.1
done

say "vigilctl incidents list"
vigilctl incidents list --limit 10
latest="$(vigilctl incidents list --json --limit 1 --rule shadow-file-read | sed -n 's/.*"id":[ ]*"\([^"]*\)".*/\1/p' | head -n1)"
[ -n "$latest" ] || die "no incident arrived; see $demo/vigil-agent.log"
say "vigilctl incidents show $latest"
vigilctl incidents show "$latest"

cat <<EOT

Server and agent are still running (logs in .demo/). The server speaks TLS
only, agents need a certificate of .demo/pki/ca.pem (the demo agent enrolled
for one) and vigilctl needs the token and CA in .demo/vigilctl.env. Try:
  http://127.0.0.1:7471/                   the web console (live incident list)
  . .demo/vigilctl.env; bin/vigilctl incidents tail
                                           follow new incidents (Ctrl-C to stop)
  cp /bin/true /tmp/x && /tmp/x            raise another one
  scripts/demo.sh stop                     stop both (or: make demo-stop)
EOT

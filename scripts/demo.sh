#!/usr/bin/env bash
# Vigil on this host in one command: installs what is missing, builds the
# binaries, starts vigil-server and vigil-agent, runs two harmless but
# suspicious commands, and shows the incidents they raised with vigilctl.
# Server and agent keep running afterwards so you can explore.
#
#   scripts/demo.sh          start (or restart) the demo      (root)
#   scripts/demo.sh stop     stop the demo's server and agent
#
# Logs, database and pid files live in .demo/ in the checkout.
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

say "starting vigil-server on $addr (database $demo/server.db)"
nohup bin/vigil-server --listen "$addr" --db "$demo/server.db" >"$demo/vigil-server.log" 2>&1 &
echo $! >"$demo/vigil-server.pid"
for _ in $(seq 100); do
	grep -q 'vigil-server started' "$demo/vigil-server.log" && break
	kill -0 "$(cat "$demo/vigil-server.pid")" 2>/dev/null || { cat "$demo/vigil-server.log"; die "vigil-server did not start"; }
	sleep 0.1
done

say "starting vigil-agent"
nohup bin/vigil-agent --server "$addr" --state-dir "$demo/agent" >"$demo/vigil-agent.log" 2>&1 &
echo $! >"$demo/vigil-agent.pid"
for _ in $(seq 200); do
	grep -q 'connected to server' "$demo/vigil-agent.log" && break
	kill -0 "$(cat "$demo/vigil-agent.pid")" 2>/dev/null || { cat "$demo/vigil-agent.log"; die "vigil-agent did not start"; }
	sleep 0.1
done
grep -q 'connected to server' "$demo/vigil-agent.log" || { cat "$demo/vigil-agent.log"; die "vigil-agent did not connect to the server"; }

vigilctl() { bin/vigilctl --server "$addr" "$@"; }
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

Server and agent are still running (logs in .demo/). Try:
  http://127.0.0.1:7471/                   the web console (live incident list)
  bin/vigilctl incidents tail              follow new incidents (Ctrl-C to stop)
  cp /bin/true /tmp/x && /tmp/x            raise another one
  scripts/demo.sh stop                     stop both (or: make demo-stop)
EOT

# Shared harness of Vigil's overhead benchmarks; source it, then call
# bench_run. It starts a vigil-server, and for each round times the workload
# without the agent, then with it (A B A B ...), and prints per-round figures,
# the medians and their ratio, the agent's CPU time per kernel event and its
# resident memory.
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
cd "$repo_root"

[ "$(id -u)" = 0 ] || die "run as root: the agent loads BPF programs"
[ -x bin/vigil-agent ] && [ -x bin/vigil-server ] || die "build first: make build"
if pgrep -x auditd >/dev/null || { command -v auditctl >/dev/null && auditctl -s 2>/dev/null | grep -q 'enabled 1'; }; then
	die "auditd is (or was) active: the figures would be skewed"
fi

bench_work="$(mktemp -d /var/cache/vigil-bench.XXXXXX 2>/dev/null || mktemp -d)"
server_pid="" agent_pid=""
bench_cleanup() {
	[ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
	[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
	rm -rf "$bench_work"
}
trap bench_cleanup EXIT

bench_port=$((20000 + RANDOM % 20000))
bin/vigil-server --listen "127.0.0.1:$bench_port" --db "$bench_work/server.db" --metrics "" --console "" 2>"$bench_work/server.log" &
server_pid=$!

now_ns() { date +%s%N; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

start_agent() {
	: >"$bench_work/agent.log"
	bin/vigil-agent --config "${BENCH_AGENT_CONFIG:-configs/agent.yaml}" --server "127.0.0.1:$bench_port" \
		--state-dir "$bench_work/agent" 2>"$bench_work/agent.log" &
	agent_pid=$!
	# Loading the sensors takes about 15 s here (the kernel verifies the file
	# family's programs one by one): wait up to 90 s.
	for _ in $(seq 900); do
		grep -q 'vigil-agent running' "$bench_work/agent.log" && return 0
		kill -0 "$agent_pid" 2>/dev/null || break
		sleep 0.1
	done
	cat "$bench_work/agent.log" >&2
	die "vigil-agent did not start"
}
stop_agent() {
	kill -TERM "$agent_pid"
	wait "$agent_pid" || true
	agent_pid=""
}

# bench_run TITLE ROUNDS EVENTS_PER_RUN WORKLOAD... runs the alternating
# rounds; EVENTS_PER_RUN is how many kernel events one run makes the agent
# handle (for CPU per event).
bench_run() {
	local title="$1" rounds="$2" events="$3"
	shift 3
	say "$title: $rounds rounds, alternating without and with vigil-agent"
	printf '%-6s %12s %12s %8s %15s %14s %s\n' round without_s with_s ratio agent_cpu_us/ev agent_rss_MiB lost
	: >"$bench_work/without"; : >"$bench_work/with"; : >"$bench_work/cpu"; : >"$bench_work/rss"
	"$@" # warm up
	local r a b t0 t1 c0 c1 rss lost cpu_us
	for r in $(seq "$rounds"); do
		t0=$(now_ns); "$@"; t1=$(now_ns)
		a=$((t1 - t0))

		start_agent
		c0=$(cpu_ticks "$agent_pid")
		t0=$(now_ns); "$@"; t1=$(now_ns)
		sleep 0.5 # let the agent drain its ring buffers
		c1=$(cpu_ticks "$agent_pid")
		rss=$(rss_kib "$agent_pid")
		stop_agent
		b=$((t1 - t0))
		lost=$(sed -n 's/.*vigil-agent stopped.* lost="\{0,1\}\(map\[[^]]*\]\).*/\1/p' "$bench_work/agent.log")
		cpu_us=$(awk -v c=$((c1 - c0)) -v n="$events" 'BEGIN {printf "%.1f", c * 10000 / n}')
		echo "$a" >>"$bench_work/without"; echo "$b" >>"$bench_work/with"
		echo "$cpu_us" >>"$bench_work/cpu"; echo "$rss" >>"$bench_work/rss"
		awk -v r="$r" -v a="$a" -v b="$b" -v cpu="$cpu_us" -v rss="$rss" -v lost="${lost:-?}" \
			'BEGIN {printf "%-6s %12.3f %12.3f %8.3f %15s %14.1f %s\n", r, a / 1e9, b / 1e9, b / a, cpu, rss / 1024, lost}'
	done
	awk -v a="$(median <"$bench_work/without")" -v b="$(median <"$bench_work/with")" \
		-v cpu="$(median <"$bench_work/cpu")" -v rss="$(median <"$bench_work/rss")" -v t="$title" 'BEGIN {
		printf "%s: median without agent %.3f s, with agent %.3f s, ratio %.3fx; agent CPU %s us/event, RSS %.1f MiB\n",
			t, a / 1e9, b / 1e9, b / a, cpu, rss / 1024
	}'
}

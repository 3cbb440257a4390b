package storetest

import (
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// IncidentTime is the event time of every incident NewIncident makes, so
// that rendered output is stable in tests.
var IncidentTime = time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC)

// NewID returns a fresh UUIDv7 incident id, as an agent makes them.
func NewID() string {
	return uuid.Must(uuid.NewV7()).String()
}

// NewIncident returns a valid incident with a fresh UUIDv7 id for tests:
// a reverse shell from an nginx worker on host hostID, raised by ruleID with
// severity sev, with the triggering process and its ancestry up to pid 1.
// Everything but the id is the same on every call.
func NewIncident(hostID, ruleID string, sev vigilv1.Severity) *vigilv1.Incident {
	start := timestamppb.New(IncidentTime.Add(-time.Hour))
	return &vigilv1.Incident{
		Id:          NewID(),
		HostId:      hostID,
		Hostname:    "web-1",
		Time:        timestamppb.New(IncidentTime),
		Severity:    sev,
		Title:       "Shell spawned by web server",
		Description: "nginx started an interactive shell.",
		RuleId:      ruleID,
		Attack: &vigilv1.Attack{
			TacticId:    "TA0002",
			Tactic:      "Execution",
			TechniqueId: "T1059.004",
			Technique:   "Unix Shell",
		},
		Process: &vigilv1.Process{
			Pid: 4243, Ppid: 4242, StartTime: timestamppb.New(IncidentTime),
			Uid: 33, Gid: 33, LoginUid: 4294967295, User: "www-data",
			Comm: "bash", Exe: "/usr/bin/bash", Args: []string{"bash", "-i"}, Cwd: "/var/www",
		},
		Ancestors: []*vigilv1.Process{
			{
				Pid: 4242, Ppid: 812, StartTime: start, Uid: 33, Gid: 33, LoginUid: 4294967295, User: "www-data",
				Comm: "nginx", Exe: "/usr/sbin/nginx", Args: []string{"nginx: worker process"},
			},
			{
				Pid: 812, Ppid: 1, StartTime: start, LoginUid: 4294967295, User: "root",
				Comm: "nginx", Exe: "/usr/sbin/nginx", Args: []string{"nginx", "-g", "daemon off;"},
			},
			{
				Pid: 1, StartTime: start, LoginUid: 4294967295, User: "root",
				Comm: "systemd", Exe: "/usr/lib/systemd/systemd", Args: []string{"/sbin/init"},
			},
		},
	}
}

package ocsf_test

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/ocsf"
)

// fixed is an incident with every part the mapping reads.
func fixed() *vigilv1.Incident {
	at := time.Date(2026, 3, 14, 9, 26, 53, 589_000_000, time.UTC)
	ts := func(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(at.Add(d)) }
	shell := &vigilv1.Attack{TacticId: "TA0002", Tactic: "Execution", TechniqueId: "T1059.004", Technique: "Unix Shell"}
	return &vigilv1.Incident{
		Id:          "01963c1e-7d2a-7b3c-9f1e-2a3b4c5d6e7f",
		HostId:      "0f3c9a7e5b2d4c1a8e6f7a9b0c1d2e3f",
		Hostname:    "web-1",
		Time:        ts(0),
		Severity:    vigilv1.Severity_SEVERITY_HIGH,
		Title:       "Shell spawned by web server",
		Description: "nginx started an interactive shell.",
		RuleId:      "shell-from-web",
		Attack:      shell,
		Process: &vigilv1.Process{
			Pid: 4243, Ppid: 4242, StartTime: ts(0), Uid: 33, User: "www-data",
			Comm: "bash", Exe: "/usr/bin/bash", Args: []string{"bash", "-i"}, Cwd: "/var/www",
		},
		Ancestors: []*vigilv1.Process{{
			Pid: 4242, Ppid: 812, StartTime: ts(-time.Hour), Uid: 33, User: "www-data",
			Comm: "nginx", Exe: "/usr/sbin/nginx", Args: []string{"nginx: worker process"},
		}},
		Login:    &vigilv1.Login{SessionId: 7, Service: "sshd", User: "alice", RemoteHost: "203.0.113.7", Tty: "ssh", Time: ts(-time.Minute)},
		Revision: 2,
		Score:    87.6,
		Cause:    "A login to alice over sshd from 203.0.113.7 started the chain.",
		Signals: []*vigilv1.Signal{
			{Time: ts(0), Source: "rule", RuleId: "shell-from-web", Title: "Shell spawned by web server", Severity: vigilv1.Severity_SEVERITY_HIGH,
				Attack: shell, Reason: "nginx started bash -i", Score: 80, Pid: 4243, Exe: "/usr/bin/bash"},
			{Time: ts(2 * time.Second), Source: "anomaly", RuleId: "anomaly.rare-destination", Title: "Rare destination",
				Attack: &vigilv1.Attack{TacticId: "TA0011", Tactic: "Command and Control", TechniqueId: "T1071", Technique: "Application Layer Protocol"},
				Reason: "bash connected to 198.51.100.9:4444 for the first time", Score: 60, Pid: 4250, Exe: "/usr/bin/nc",
				RemoteHost: "198.51.100.9", Object: "198.51.100.9:4444", Repeats: 2},
		},
		RecommendedActions: []*vigilv1.RecommendedAction{{Action: "kill", Target: "pid:4243", Reason: "interactive shell of the web server"}},
		Actions: []*vigilv1.ActionRecord{{Id: "01963c1e-0000-7000-8000-000000000001", Time: ts(3 * time.Second), Action: "kill",
			Target: "pid:4243", Requester: "rule:shell-from-web", Mode: "auto", Result: "done"}},
		Cursor:       42,
		ReceivedTime: ts(5 * time.Second),
	}
}

func TestMarshalFixedIncident(t *testing.T) {
	got, err := ocsf.Marshal(fixed())
	if err != nil {
		t.Fatal(err)
	}
	want := "" +
		`{"class_uid":2004` +
		`,"class_name":"Detection Finding"` +
		`,"category_uid":2` +
		`,"category_name":"Findings"` +
		`,"activity_id":2` +
		`,"activity_name":"Update"` +
		`,"type_uid":200402` +
		`,"time":1773480413589` +
		`,"start_time":1773480413589` +
		`,"end_time":1773480415589` +
		`,"severity_id":4` +
		`,"severity":"High"` +
		`,"status_id":1` +
		`,"status":"New"` +
		`,"message":"Shell spawned by web server"` +
		`,"risk_score":88` +
		`,"finding_info":{"uid":"01963c1e-7d2a-7b3c-9f1e-2a3b4c5d6e7f","title":"Shell spawned by web server","desc":"nginx started an interactive shell.","types":["rule","anomaly"],"analytic":{"uid":"shell-from-web","name":"shell-from-web","type_id":1,"type":"Rule"},"attacks":[{"tactic":{"uid":"TA0002","name":"Execution"},"technique":{"uid":"T1059"},"sub_technique":{"uid":"T1059.004","name":"Unix Shell"}},{"tactic":{"uid":"TA0011","name":"Command and Control"},"technique":{"uid":"T1071","name":"Application Layer Protocol"}}],"first_seen_time":1773480413589,"last_seen_time":1773480415589}` +
		`,"device":{"hostname":"web-1","uid":"0f3c9a7e5b2d4c1a8e6f7a9b0c1d2e3f","type_id":0,"type":"Unknown","os":{"name":"Linux","type_id":200,"type":"Linux"}}` +
		`,"process":{"pid":4243,"name":"bash","cmd_line":"bash -i","file":{"path":"/usr/bin/bash","name":"bash","type_id":1,"type":"Regular File"},"user":{"name":"www-data","uid":"33"},"created_time":1773480413589,"working_directory":"/var/www","parent_process":{"pid":4242,"name":"nginx","cmd_line":"nginx: worker process","file":{"path":"/usr/sbin/nginx","name":"nginx","type_id":1,"type":"Regular File"},"user":{"name":"www-data","uid":"33"},"created_time":1773476813589}}` +
		`,"evidences":[{"data":{"source":"rule","rule_id":"shell-from-web","title":"Shell spawned by web server","reason":"nginx started bash -i","score":80,"time":1773480413589},"process":{"pid":4243,"name":"bash","cmd_line":"bash -i","file":{"path":"/usr/bin/bash","name":"bash","type_id":1,"type":"Regular File"},"user":{"name":"www-data","uid":"33"},"created_time":1773480413589,"working_directory":"/var/www"}},{"data":{"source":"anomaly","rule_id":"anomaly.rare-destination","title":"Rare destination","reason":"bash connected to 198.51.100.9:4444 for the first time","score":60,"object":"198.51.100.9:4444","repeats":2,"time":1773480415589},"process":{"pid":4250,"name":"nc","file":{"path":"/usr/bin/nc","name":"nc","type_id":1,"type":"Regular File"}},"src_endpoint":{"ip":"198.51.100.9"}}]` +
		`,"observables":[{"name":"device.hostname","type_id":1,"type":"Hostname","value":"web-1"},{"name":"process.name","type_id":9,"type":"Process Name","value":"bash"},{"name":"process.user.name","type_id":4,"type":"User Name","value":"www-data"},{"name":"process.file.path","type_id":7,"type":"File Name","value":"/usr/bin/bash"},{"name":"unmapped.login.remote_host","type_id":2,"type":"IP Address","value":"203.0.113.7"}]` +
		`,"remediation":{"desc":"kill pid:4243: interactive shell of the web server"}` +
		`,"metadata":{"product":{"name":"Vigil","vendor_name":"Vigil"},"version":"1.1.0","uid":"01963c1e-7d2a-7b3c-9f1e-2a3b4c5d6e7f/2","logged_time":1773480418589,"sequence":42}` +
		`,"unmapped":{"cause":"A login to alice over sshd from 203.0.113.7 started the chain.","revision":2,"login":{"session_id":7,"service":"sshd","user":"alice","remote_host":"203.0.113.7","tty":"ssh","time":1773480353589},"actions":[{"time":1773480416589,"action":"kill","target":"pid:4243","requester":"rule:shell-from-web","mode":"auto","result":"done"}]}}` + "\n"
	if string(got) != want {
		t.Errorf("finding:\n got %s\nwant %s", got, want)
	}
}

func TestSeverityID(t *testing.T) {
	for sev, want := range map[vigilv1.Severity]int{
		vigilv1.Severity_SEVERITY_UNSPECIFIED: 0,
		vigilv1.Severity_SEVERITY_INFO:        1,
		vigilv1.Severity_SEVERITY_LOW:         2,
		vigilv1.Severity_SEVERITY_MEDIUM:      3,
		vigilv1.Severity_SEVERITY_HIGH:        4,
		vigilv1.Severity_SEVERITY_CRITICAL:    5,
		vigilv1.Severity(17):                  99,
	} {
		if got, _ := ocsf.SeverityID(sev); got != want {
			t.Errorf("SeverityID(%v) = %d, want %d", sev, got, want)
		}
	}
}

func TestMarshalBareIncident(t *testing.T) {
	got, err := ocsf.Marshal(&vigilv1.Incident{Id: "01963c1e-7d2a-7b3c-9f1e-2a3b4c5d6e7f", RuleId: "r", Severity: vigilv1.Severity_SEVERITY_LOW})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"class_uid":2004,"class_name":"Detection Finding","category_uid":2,"category_name":"Findings",` +
		`"activity_id":1,"activity_name":"Create","type_uid":200401,"time":0,"severity_id":2,"severity":"Low",` +
		`"status_id":1,"status":"New","risk_score":0,"finding_info":{"uid":"01963c1e-7d2a-7b3c-9f1e-2a3b4c5d6e7f",` +
		`"title":"","types":["rule"],"analytic":{"uid":"r","name":"r","type_id":1,"type":"Rule"}},` +
		`"device":{"type_id":0,"type":"Unknown","os":{"name":"Linux","type_id":200,"type":"Linux"}},` +
		`"metadata":{"product":{"name":"Vigil","vendor_name":"Vigil"},"version":"1.1.0","uid":"01963c1e-7d2a-7b3c-9f1e-2a3b4c5d6e7f/1"}}` + "\n"
	if string(got) != want {
		t.Errorf("finding:\n got %s\nwant %s", got, want)
	}
}

// Package ocsf turns Vigil incidents into OCSF 1.1.0 Detection Findings
// (class_uid 2004, category Findings), one JSON object per incident
// revision, for SIEMs and data lakes that read the Open Cybersecurity
// Schema Framework.
//
// # Mapping
//
//	OCSF field                      Vigil source
//	class_uid, class_name           2004, "Detection Finding"
//	category_uid, category_name     2, "Findings"
//	activity_id, activity_name      1 "Create" for revision 1 (or 0),
//	                                2 "Update" for later revisions
//	type_uid                        class_uid*100 + activity_id
//	time                            incident.time, ms since the epoch
//	start_time, end_time            first and last signal time, ms
//	severity_id, severity           info 1 Informational, low 2 Low,
//	                                medium 3 Medium, high 4 High,
//	                                critical 5 Critical, unset 0 Unknown
//	status_id, status               1 "New" (Vigil has no triage state yet)
//	message                         title
//	risk_score                      score (0-100), rounded
//	finding_info.uid                id
//	finding_info.title, desc        title, description
//	finding_info.types              the distinct signal sources ("rule",
//	                                "anomaly", "model"), or ["rule"]
//	finding_info.analytic           {uid, name: rule_id, type_id 1 "Rule"}
//	finding_info.first_seen_time,
//	  last_seen_time                as start_time, end_time
//	finding_info.attacks            the incident's and each signal's ATT&CK
//	                                mapping, once each: tactic {uid, name},
//	                                technique {uid, name}; a sub-technique
//	                                id (T1059.004) gives technique {uid
//	                                T1059} and sub_technique {uid, name}
//	device                          {hostname, uid: host_id, type_id 0,
//	                                os {name "Linux", type_id 200}}
//	process                         the triggering process: pid, name
//	                                (comm, else the exe's base name),
//	                                cmd_line (argv joined by spaces), file
//	                                {path, name}, user {name, uid},
//	                                created_time, cwd, parent_process (the
//	                                first ancestor, same fields)
//	evidences                       one per signal: data {source, rule_id,
//	                                reason, score, object, repeats, time},
//	                                process {pid, file} when it names one,
//	                                src_endpoint {ip or hostname} for its
//	                                remote host; the triggering process
//	                                appears without its parent
//	observables                     hostname (1), process name (9), user
//	                                name (4), exe path as file name (7),
//	                                login source as IP address (2) or
//	                                hostname (1)
//	remediation.desc                the recommended actions, one a line
//	metadata                        product {name, vendor_name "Vigil"},
//	                                version "1.1.0", uid "ID/REVISION",
//	                                logged_time: received_time (ms),
//	                                sequence: the server's cursor
//	unmapped                        cause, revision, login and the response
//	                                audit trail (actions), which OCSF 1.1
//	                                has no place for in this class
//
// The top-level process is not an attribute of the Detection Finding class
// in OCSF 1.1; it is kept there because every consumer of Vigil's export
// wants it in one obvious place, and it is repeated in the first evidence,
// where the schema puts it.
package ocsf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"path"
	"strconv"
	"strings"

	"google.golang.org/protobuf/types/known/timestamppb"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// Schema constants.
const (
	// SchemaVersion is the OCSF version the findings follow.
	SchemaVersion = "1.1.0"
	// ClassUID is the Detection Finding class.
	ClassUID = 2004
	// CategoryUID is the Findings category.
	CategoryUID = 2
	// ProductName names Vigil in metadata.product.
	ProductName = "Vigil"
)

// Finding is an OCSF Detection Finding. Fields are in the order they are
// written; empty ones are left out.
type Finding struct {
	ClassUID     int    `json:"class_uid"`
	ClassName    string `json:"class_name"`
	CategoryUID  int    `json:"category_uid"`
	CategoryName string `json:"category_name"`
	ActivityID   int    `json:"activity_id"`
	ActivityName string `json:"activity_name"`
	TypeUID      int    `json:"type_uid"`
	// Time is when the triggering event happened, ms since the epoch.
	Time       int64         `json:"time"`
	StartTime  int64         `json:"start_time,omitempty"`
	EndTime    int64         `json:"end_time,omitempty"`
	SeverityID int           `json:"severity_id"`
	Severity   string        `json:"severity"`
	StatusID   int           `json:"status_id"`
	Status     string        `json:"status"`
	Message    string        `json:"message,omitempty"`
	RiskScore  int           `json:"risk_score"`
	Info       FindingInfo   `json:"finding_info"`
	Device     Device        `json:"device"`
	Process    *Process      `json:"process,omitempty"`
	Evidences  []Evidence    `json:"evidences,omitempty"`
	Observable []Observable  `json:"observables,omitempty"`
	Remedy     *Remediation  `json:"remediation,omitempty"`
	Metadata   Metadata      `json:"metadata"`
	Unmapped   *VigilDetails `json:"unmapped,omitempty"`
}

// FindingInfo is OCSF's finding_info object.
type FindingInfo struct {
	UID           string   `json:"uid"`
	Title         string   `json:"title"`
	Desc          string   `json:"desc,omitempty"`
	Types         []string `json:"types"`
	Analytic      Analytic `json:"analytic"`
	Attacks       []Attack `json:"attacks,omitempty"`
	FirstSeenTime int64    `json:"first_seen_time,omitempty"`
	LastSeenTime  int64    `json:"last_seen_time,omitempty"`
}

// Analytic names the rule that fired.
type Analytic struct {
	UID    string `json:"uid,omitempty"`
	Name   string `json:"name"`
	TypeID int    `json:"type_id"`
	Type   string `json:"type"`
}

// Attack is one MITRE ATT&CK mapping.
type Attack struct {
	Tactic       *Ref `json:"tactic,omitempty"`
	Technique    *Ref `json:"technique,omitempty"`
	SubTechnique *Ref `json:"sub_technique,omitempty"`
}

// Ref is an id with an optional name (tactic, technique).
type Ref struct {
	UID  string `json:"uid"`
	Name string `json:"name,omitempty"`
}

// Device is the host the incident happened on.
type Device struct {
	Hostname string `json:"hostname,omitempty"`
	UID      string `json:"uid,omitempty"`
	TypeID   int    `json:"type_id"`
	Type     string `json:"type"`
	OS       OS     `json:"os"`
}

// OS is the device's operating system.
type OS struct {
	Name   string `json:"name"`
	TypeID int    `json:"type_id"`
	Type   string `json:"type"`
}

// Process is an OCSF process object.
type Process struct {
	PID         uint32   `json:"pid"`
	Name        string   `json:"name,omitempty"`
	CmdLine     string   `json:"cmd_line,omitempty"`
	File        *File    `json:"file,omitempty"`
	User        *User    `json:"user,omitempty"`
	CreatedTime int64    `json:"created_time,omitempty"`
	Cwd         string   `json:"working_directory,omitempty"`
	Parent      *Process `json:"parent_process,omitempty"`
}

// File is an OCSF file object.
type File struct {
	Path   string `json:"path"`
	Name   string `json:"name"`
	TypeID int    `json:"type_id"`
	Type   string `json:"type"`
}

// User is an OCSF user object.
type User struct {
	Name string `json:"name,omitempty"`
	UID  string `json:"uid"`
}

// Evidence is an OCSF evidence artifact: one signal of the timeline.
type Evidence struct {
	Data        SignalData `json:"data"`
	Process     *Process   `json:"process,omitempty"`
	SrcEndpoint *Endpoint  `json:"src_endpoint,omitempty"`
}

// SignalData is the free-form part of an evidence: what Vigil saw.
type SignalData struct {
	Source  string  `json:"source,omitempty"`
	RuleID  string  `json:"rule_id,omitempty"`
	Title   string  `json:"title,omitempty"`
	Reason  string  `json:"reason,omitempty"`
	Score   float64 `json:"score,omitempty"`
	Object  string  `json:"object,omitempty"`
	Repeats uint32  `json:"repeats,omitempty"`
	Time    int64   `json:"time,omitempty"`
}

// Endpoint is a network endpoint, by address or by name.
type Endpoint struct {
	IP       string `json:"ip,omitempty"`
	Hostname string `json:"hostname,omitempty"`
}

// Observable is a value worth indexing.
type Observable struct {
	Name   string `json:"name"`
	TypeID int    `json:"type_id"`
	Type   string `json:"type"`
	Value  string `json:"value"`
}

// Remediation says what can be done.
type Remediation struct {
	Desc string `json:"desc"`
}

// Metadata is OCSF's metadata object.
type Metadata struct {
	Product    Product `json:"product"`
	Version    string  `json:"version"`
	UID        string  `json:"uid"`
	LoggedTime int64   `json:"logged_time,omitempty"`
	Sequence   uint64  `json:"sequence,omitempty"`
}

// Product names the reporting product.
type Product struct {
	Name       string `json:"name"`
	VendorName string `json:"vendor_name"`
}

// VigilDetails carries what the class has no attribute for.
type VigilDetails struct {
	Cause    string          `json:"cause,omitempty"`
	Revision uint32          `json:"revision,omitempty"`
	Login    *Login          `json:"login,omitempty"`
	Actions  []ActionSummary `json:"actions,omitempty"`
}

// Login is the login session the process belongs to.
type Login struct {
	SessionID  uint32 `json:"session_id"`
	Service    string `json:"service,omitempty"`
	User       string `json:"user,omitempty"`
	RemoteHost string `json:"remote_host,omitempty"`
	TTY        string `json:"tty,omitempty"`
	Time       int64  `json:"time,omitempty"`
}

// ActionSummary is one response of the incident's audit trail.
type ActionSummary struct {
	Time      int64  `json:"time,omitempty"`
	Action    string `json:"action"`
	Target    string `json:"target,omitempty"`
	Requester string `json:"requester,omitempty"`
	Mode      string `json:"mode,omitempty"`
	Result    string `json:"result,omitempty"`
	Detail    string `json:"detail,omitempty"`
	DryRun    bool   `json:"dry_run,omitempty"`
}

// severities maps Vigil's severity to OCSF's severity_id and caption.
var severities = map[vigilv1.Severity]struct {
	id   int
	name string
}{
	vigilv1.Severity_SEVERITY_UNSPECIFIED: {0, "Unknown"},
	vigilv1.Severity_SEVERITY_INFO:        {1, "Informational"},
	vigilv1.Severity_SEVERITY_LOW:         {2, "Low"},
	vigilv1.Severity_SEVERITY_MEDIUM:      {3, "Medium"},
	vigilv1.Severity_SEVERITY_HIGH:        {4, "High"},
	vigilv1.Severity_SEVERITY_CRITICAL:    {5, "Critical"},
}

// SeverityID returns OCSF's severity_id and caption for a Vigil severity;
// a value this package does not know is 99 "Other".
func SeverityID(s vigilv1.Severity) (int, string) {
	if v, ok := severities[s]; ok {
		return v.id, v.name
	}
	return 99, "Other"
}

// FromIncident maps an incident to a Detection Finding.
func FromIncident(inc *vigilv1.Incident) *Finding {
	activity, activityName := 1, "Create"
	if inc.GetRevision() > 1 {
		activity, activityName = 2, "Update"
	}
	sevID, sevName := SeverityID(inc.GetSeverity())
	f := &Finding{
		ClassUID:     ClassUID,
		ClassName:    "Detection Finding",
		CategoryUID:  CategoryUID,
		CategoryName: "Findings",
		ActivityID:   activity,
		ActivityName: activityName,
		TypeUID:      ClassUID*100 + activity,
		Time:         millis(inc.GetTime()),
		SeverityID:   sevID,
		Severity:     sevName,
		StatusID:     1,
		Status:       "New",
		Message:      inc.GetTitle(),
		RiskScore:    int(math.Round(min(max(inc.GetScore(), 0), 100))),
		Info: FindingInfo{
			UID:   inc.GetId(),
			Title: inc.GetTitle(),
			Desc:  inc.GetDescription(),
			Types: sources(inc.GetSignals()),
			Analytic: Analytic{
				UID: inc.GetRuleId(), Name: inc.GetRuleId(), TypeID: 1, Type: "Rule",
			},
		},
		Device: Device{
			Hostname: inc.GetHostname(),
			UID:      inc.GetHostId(),
			TypeID:   0,
			Type:     "Unknown",
			OS:       OS{Name: "Linux", TypeID: 200, Type: "Linux"},
		},
		Metadata: Metadata{
			Product:    Product{Name: ProductName, VendorName: ProductName},
			Version:    SchemaVersion,
			UID:        inc.GetId() + "/" + strconv.FormatUint(uint64(max(inc.GetRevision(), 1)), 10),
			LoggedTime: millis(inc.GetReceivedTime()),
			Sequence:   inc.GetCursor(),
		},
	}
	if sigs := inc.GetSignals(); len(sigs) > 0 {
		f.StartTime = millis(sigs[0].GetTime())
		f.EndTime = millis(sigs[len(sigs)-1].GetTime())
		f.Info.FirstSeenTime, f.Info.LastSeenTime = f.StartTime, f.EndTime
	}
	f.Info.Attacks = attacks(inc)
	if p := inc.GetProcess(); p != nil {
		f.Process = process(p)
		if anc := inc.GetAncestors(); len(anc) > 0 {
			f.Process.Parent = process(anc[0])
		}
	}
	f.Evidences = evidences(inc, f.Process)
	f.Observable = observables(inc)
	if acts := inc.GetRecommendedActions(); len(acts) > 0 {
		lines := make([]string, len(acts))
		for i, a := range acts {
			lines[i] = strings.TrimSpace(a.GetAction()+" "+a.GetTarget()) + ": " + a.GetReason()
		}
		f.Remedy = &Remediation{Desc: strings.Join(lines, "\n")}
	}
	f.Unmapped = details(inc)
	return f
}

// Marshal returns the finding of inc as one line of JSON, ending in a
// newline.
func Marshal(inc *vigilv1.Incident) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // keep <, > and & readable in titles and argv
	if err := enc.Encode(FromIncident(inc)); err != nil {
		return nil, fmt.Errorf("encode ocsf finding of %s: %w", inc.GetId(), err)
	}
	return b.Bytes(), nil
}

// WriteLine writes the finding of inc to w as one line of JSON, in one
// Write call, so that lines appended to a file by one writer never
// interleave.
func WriteLine(w io.Writer, inc *vigilv1.Incident) error {
	b, err := Marshal(inc)
	if err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write ocsf finding of %s: %w", inc.GetId(), err)
	}
	return nil
}

// millis returns a timestamp in ms since the epoch, 0 when unset.
func millis(ts *timestamppb.Timestamp) int64 {
	if ts == nil {
		return 0
	}
	return ts.AsTime().UnixMilli()
}

// sources returns the distinct signal sources in order of first
// appearance, or ["rule"] when the incident has no timeline.
func sources(sigs []*vigilv1.Signal) []string {
	var out []string
	for _, s := range sigs {
		if src := s.GetSource(); src != "" && !contains(out, src) {
			out = append(out, src)
		}
	}
	if len(out) == 0 {
		out = []string{"rule"}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// attacks returns the incident's ATT&CK mapping and each signal's, once
// each by (tactic, technique).
func attacks(inc *vigilv1.Incident) []Attack {
	var out []Attack
	seen := map[string]bool{}
	add := func(a *vigilv1.Attack) {
		if a == nil || (a.GetTacticId() == "" && a.GetTechniqueId() == "") {
			return
		}
		key := a.GetTacticId() + "/" + a.GetTechniqueId()
		if seen[key] {
			return
		}
		seen[key] = true
		var at Attack
		if a.GetTacticId() != "" || a.GetTactic() != "" {
			at.Tactic = &Ref{UID: a.GetTacticId(), Name: a.GetTactic()}
		}
		if id := a.GetTechniqueId(); id != "" {
			if parent, _, ok := strings.Cut(id, "."); ok {
				at.Technique = &Ref{UID: parent}
				at.SubTechnique = &Ref{UID: id, Name: a.GetTechnique()}
			} else {
				at.Technique = &Ref{UID: id, Name: a.GetTechnique()}
			}
		}
		out = append(out, at)
	}
	add(inc.GetAttack())
	for _, s := range inc.GetSignals() {
		add(s.GetAttack())
	}
	return out
}

// process maps one process.
func process(p *vigilv1.Process) *Process {
	out := &Process{
		PID:         p.GetPid(),
		Name:        p.GetComm(),
		CmdLine:     strings.Join(p.GetArgs(), " "),
		User:        &User{Name: p.GetUser(), UID: strconv.FormatUint(uint64(p.GetUid()), 10)},
		CreatedTime: millis(p.GetStartTime()),
		Cwd:         p.GetCwd(),
	}
	if exe := p.GetExe(); exe != "" {
		out.File = file(exe)
		if out.Name == "" {
			out.Name = path.Base(exe)
		}
	}
	return out
}

// file maps an executable path to a regular file object.
func file(p string) *File {
	return &File{Path: p, Name: path.Base(p), TypeID: 1, Type: "Regular File"}
}

// evidences returns one evidence per signal; the first carries the
// triggering process when the signal is about it.
func evidences(inc *vigilv1.Incident, proc *Process) []Evidence {
	var out []Evidence
	for _, s := range inc.GetSignals() {
		ev := Evidence{Data: SignalData{
			Source: s.GetSource(), RuleID: s.GetRuleId(), Title: s.GetTitle(), Reason: s.GetReason(),
			Score: s.GetScore(), Object: s.GetObject(), Repeats: s.GetRepeats(), Time: millis(s.GetTime()),
		}}
		switch {
		case proc != nil && s.GetPid() == proc.PID:
			p := *proc
			p.Parent = nil // the finding's process has it
			ev.Process = &p
		case s.GetPid() != 0:
			ev.Process = &Process{PID: s.GetPid()}
			if exe := s.GetExe(); exe != "" {
				ev.Process.Name = path.Base(exe)
				ev.Process.File = file(exe)
			}
		}
		if h := s.GetRemoteHost(); h != "" {
			ev.SrcEndpoint = endpoint(h)
		}
		out = append(out, ev)
	}
	return out
}

// endpoint maps a remote host: an address when it parses as one, else a
// name.
func endpoint(h string) *Endpoint {
	if net.ParseIP(h) != nil {
		return &Endpoint{IP: h}
	}
	return &Endpoint{Hostname: h}
}

// observables returns the values worth indexing.
func observables(inc *vigilv1.Incident) []Observable {
	var out []Observable
	add := func(name string, typeID int, typ, value string) {
		if value != "" {
			out = append(out, Observable{Name: name, TypeID: typeID, Type: typ, Value: value})
		}
	}
	add("device.hostname", 1, "Hostname", inc.GetHostname())
	if p := inc.GetProcess(); p != nil {
		name := p.GetComm()
		if name == "" && p.GetExe() != "" {
			name = path.Base(p.GetExe())
		}
		add("process.name", 9, "Process Name", name)
		add("process.user.name", 4, "User Name", p.GetUser())
		add("process.file.path", 7, "File Name", p.GetExe())
	}
	if h := inc.GetLogin().GetRemoteHost(); h != "" {
		if net.ParseIP(h) != nil {
			add("unmapped.login.remote_host", 2, "IP Address", h)
		} else {
			add("unmapped.login.remote_host", 1, "Hostname", h)
		}
	}
	return out
}

// details returns what OCSF has no attribute for, or nil.
func details(inc *vigilv1.Incident) *VigilDetails {
	d := &VigilDetails{Cause: inc.GetCause(), Revision: inc.GetRevision()}
	if l := inc.GetLogin(); l != nil {
		d.Login = &Login{
			SessionID: l.GetSessionId(), Service: l.GetService(), User: l.GetUser(),
			RemoteHost: l.GetRemoteHost(), TTY: l.GetTty(), Time: millis(l.GetTime()),
		}
	}
	for _, a := range inc.GetActions() {
		d.Actions = append(d.Actions, ActionSummary{
			Time: millis(a.GetTime()), Action: a.GetAction(), Target: a.GetTarget(), Requester: a.GetRequester(),
			Mode: a.GetMode(), Result: a.GetResult(), Detail: a.GetDetail(), DryRun: a.GetDryRun(),
		})
	}
	if d.Cause == "" && d.Revision == 0 && d.Login == nil && len(d.Actions) == 0 {
		return nil
	}
	return d
}

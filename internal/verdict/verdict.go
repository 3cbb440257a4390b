// Package verdict derives, from an incident an analyst labelled benign, the
// suppressions that stop the same behaviour from raising incidents again.
// The server uses it to send verdicts to agents and the agent (through
// agent/feedback) to label incidents locally, so both derive them the same
// way.
package verdict

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// Unknown is the value of a suppression's exe or parent_exe when the
// labelled signal's executable (or its parent's) was not known, e.g. a
// parent whose /proc/PID/exe could not be read. It matches only a signal
// whose executable (or parent's) is unknown too: an empty field matches
// anything, and an unknown parent must not become "any parent".
const Unknown = "(unknown)"

// Suppressions derives the suppressions that labelling inc benign adds: one
// per distinct signal (the incident's own rule when it has no timeline). A
// signal on a process is suppressed for the same rule, executable and
// parent executable (Unknown for one that was not known); a host-level
// signal (pid 0) for the same rule and remote host; an anomaly signal also
// keeps its object. by, note and at record who labelled it, why and when.
func Suppressions(inc *vigilv1.Incident, by, note string, at time.Time) []*vigilv1.Suppression {
	sigs := inc.GetSignals()
	if len(sigs) == 0 {
		sigs = []*vigilv1.Signal{{
			RuleId: inc.GetRuleId(), Source: "rule", Pid: inc.GetProcess().GetPid(), Exe: inc.GetProcess().GetExe(),
		}}
	}
	type key struct{ rule, source, exe, parent, remote, object string }
	seen := map[key]bool{}
	var out []*vigilv1.Suppression
	for _, sig := range sigs {
		k := key{rule: sig.GetRuleId(), source: sig.GetSource(), exe: sig.GetExe(), parent: sig.GetParentExe(), object: sig.GetObject()}
		if k.parent == "" && sig.GetPid() != 0 && sig.GetPid() == inc.GetProcess().GetPid() && len(inc.GetAncestors()) > 0 {
			k.parent = inc.GetAncestors()[0].GetExe()
		}
		if sig.GetPid() == 0 {
			k.remote = sig.GetRemoteHost()
		} else {
			// A signal on a process: what was not known stays "not known",
			// never "anything".
			if k.exe == "" {
				k.exe = Unknown
			}
			if k.parent == "" {
				k.parent = Unknown
			}
		}
		if k.source != "anomaly" {
			// A rule fires on a pattern, not on one object: the same rule on
			// the same program under the same parent is the same behaviour.
			k.object = ""
		}
		if k.rule == "" || seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, &vigilv1.Suppression{
			IncidentId: inc.GetId(),
			RuleId:     k.rule,
			Source:     k.source,
			Exe:        k.exe,
			ParentExe:  k.parent,
			RemoteHost: k.remote,
			Object:     k.object,
			Added:      timestamppb.New(at.UTC()),
			By:         by,
			Note:       note,
		})
	}
	return out
}

// Message builds the Suppressions message the server sends to inc's host
// when inc is labelled benign, from the incident's triage: the label's
// author and time, and the newest note written with or before the label.
// It returns nil when inc is not labelled benign or yields no suppression.
func Message(inc *vigilv1.Incident) *vigilv1.Suppressions {
	tr := inc.GetTriage()
	if tr.GetLabel() != vigilv1.Label_LABEL_BENIGN {
		return nil
	}
	at := tr.GetLabelTime().AsTime()
	var note string
	for _, n := range tr.GetNotes() {
		if !n.GetTime().AsTime().After(at) {
			note = n.GetText()
		}
	}
	list := Suppressions(inc, tr.GetLabelAuthor(), note, at)
	if len(list) == 0 {
		return nil
	}
	return &vigilv1.Suppressions{IncidentId: inc.GetId(), Suppressions: list}
}

package cli

import (
	"context"
	"fmt"
	"io"
	"os/user"
	"strings"
	"time"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/render"
)

const updateUsage = `vigilctl incidents update changes an incident's triage: its status, its
label (the analyst's verdict) and its notes, and prints the incident.
An incident labelled benign makes the server send its host suppressions,
so the same behaviour stops raising incidents there.

Usage:
  vigilctl incidents update ID [--status open|acknowledged|resolved]
                               [--label benign|malicious|unlabelled] [--note TEXT]
                               [--author NAME] [--json]

Flags:
  --status STATUS   set the status
  --label LABEL     set the label ('unlabelled' withdraws one)
  --note TEXT       append a note (at most 4 KiB)
  --author NAME     who makes the change (default $USER, else the OS
                    user name); a server started with --tokens records
                    the token's holder instead
  --json            print the incident as one JSON line

Examples:
  vigilctl incidents update 01963c1e-7d2a-7b3c-9f1e-2a3b4c5d6e7f --status acknowledged
  vigilctl incidents update 01963c1e-7d2a-7b3c-9f1e-2a3b4c5d6e7f --label benign --note "nightly build"
`

// statusNames and labelNames are the flag values of update.
var (
	statusNames = map[string]vigilv1.TriageStatus{
		"open":         vigilv1.TriageStatus_TRIAGE_STATUS_OPEN,
		"acknowledged": vigilv1.TriageStatus_TRIAGE_STATUS_ACKNOWLEDGED,
		"resolved":     vigilv1.TriageStatus_TRIAGE_STATUS_RESOLVED,
	}
	labelNames = map[string]vigilv1.Label{
		"unlabelled": vigilv1.Label_LABEL_UNLABELLED,
		"benign":     vigilv1.Label_LABEL_BENIGN,
		"malicious":  vigilv1.Label_LABEL_MALICIOUS,
	}
)

// update runs "vigilctl incidents update".
func (a *app) update(ctx context.Context, args []string) error {
	const cmd = "vigilctl incidents update"
	fs := a.newFlagSet()
	st := fs.String("status", "", "")
	label := fs.String("label", "", "")
	note := fs.String("note", "", "")
	author := fs.String("author", a.defaultAuthor(), "")
	asJSON := fs.Bool("json", false, "")
	pos, err := parse(fs, args)
	if err != nil {
		return a.flagError(cmd, updateUsage, err)
	}
	switch {
	case len(pos) == 0:
		return &usageError{cmd, "missing incident ID"}
	case len(pos) > 1:
		return &usageError{cmd, fmt.Sprintf("unexpected argument %q after the incident ID", pos[1])}
	}
	req := &vigilv1.UpdateIncidentRequest{Id: pos[0], Note: *note, Author: *author}
	if *st != "" {
		v, ok := statusNames[strings.ToLower(*st)]
		if !ok {
			return &usageError{cmd, fmt.Sprintf("--status %q: want open, acknowledged or resolved", *st)}
		}
		req.Status = v
	}
	if *label != "" {
		v, ok := labelNames[strings.ToLower(*label)]
		if !ok {
			return &usageError{cmd, fmt.Sprintf("--label %q: want benign, malicious or unlabelled", *label)}
		}
		req.Label = v
	}
	if req.Status == 0 && req.Label == 0 && req.Note == "" {
		return &usageError{cmd, "nothing to change: give --status, --label or --note"}
	}

	conn, err := a.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	callCtx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	inc, err := vigilv1.NewIncidentServiceClient(conn).UpdateIncident(callCtx, req)
	if err != nil {
		return a.rpcError("update incident", err)
	}
	if *asJSON {
		return render.JSONLine(a.stdout, inc)
	}
	fmt.Fprintf(a.stdout, "Incident  %s\n", inc.GetId())
	return writeTriage(a.stdout, inc)
}

// defaultAuthor is the default of --author: $USER, else the name of the
// user running vigilctl, else "" (the server then shows "-").
func (a *app) defaultAuthor() string {
	if u := a.getenv("USER"); u != "" {
		return u
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return ""
}

// statusWord and labelWord name a status and a label as the flags do.
func statusWord(s vigilv1.TriageStatus) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "TRIAGE_STATUS_"))
}

func labelWord(l vigilv1.Label) string {
	return strings.ToLower(strings.TrimPrefix(l.String(), "LABEL_"))
}

// writeTriage prints an incident's triage: status, label and notes. An
// incident never triaged is open and unlabelled.
func writeTriage(w io.Writer, inc *vigilv1.Incident) error {
	tr := inc.GetTriage()
	if tr == nil {
		tr = &vigilv1.Triage{Status: vigilv1.TriageStatus_TRIAGE_STATUS_OPEN, Label: vigilv1.Label_LABEL_UNLABELLED}
	}
	var b strings.Builder
	b.WriteString("Triage\n")
	fmt.Fprintf(&b, "  Status:  %s\n", statusWord(tr.GetStatus()))
	fmt.Fprintf(&b, "  Label:   %s", labelWord(tr.GetLabel()))
	if tr.GetLabelTime() != nil {
		fmt.Fprintf(&b, " (by %s at %s)", render.Printable(orDash(tr.GetLabelAuthor())), tr.GetLabelTime().AsTime().UTC().Format(time.RFC3339))
	}
	b.WriteString("\n")
	if tr.GetUpdatedTime() != nil {
		fmt.Fprintf(&b, "  Updated: %s\n", tr.GetUpdatedTime().AsTime().UTC().Format(time.RFC3339))
	}
	if len(tr.GetNotes()) > 0 {
		b.WriteString("  Notes:\n")
		for _, n := range tr.GetNotes() {
			// A note may span lines; each is indented under the note
			// and escaped, like every other value shown.
			lines := strings.Split(n.GetText(), "\n")
			for i, l := range lines {
				lines[i] = render.Printable(l)
			}
			fmt.Fprintf(&b, "    %s %s: %s\n", n.GetTime().AsTime().UTC().Format(time.RFC3339), render.Printable(orDash(n.GetAuthor())),
				strings.Join(lines, "\n      "))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// orDash returns s, or "-" when it is empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

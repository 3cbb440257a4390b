package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/vigil-sensor/vigil/agent/config"
	"github.com/vigil-sensor/vigil/agent/feedback"
	"github.com/vigil-sensor/vigil/agent/hostinfo"
)

const labelUsage = `vigil-agent label benign INCIDENT_ID [flags]
vigil-agent label unlabelled INCIDENT_ID [flags]

Marks an incident this agent raised as benign. Each of its signals becomes a
suppression in the agent's feedback file (STATE_DIR/feedback.json): the same
rule on the same program under the same parent (or, for failed logins, from
the same address) no longer raises an incident, and a rare behaviour the
anomaly baseline flagged is learned as normal. The running agent applies it
within seconds, without a restart. Incidents are looked up in the agent's
journal (STATE_DIR/incidents.jsonl).

"unlabelled" withdraws a benign label: the incident's suppressions leave the
feedback file (a behaviour the baseline learned stays learned). A label
withdrawn on the server (vigilctl incidents update ID --label unlabelled)
reaches the agent the same way.

Examples:
  sudo vigil-agent label benign 0193a000-0000-7000-8000-000000000001 --note "nightly build"
  sudo vigil-agent label unlabelled 0193a000-0000-7000-8000-000000000001

Flags:
`

// runLabel implements "vigil-agent label".
func runLabel(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vigil-agent label", flag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), labelUsage)
		fs.PrintDefaults()
	}
	def := config.Default()
	stateDir := fs.String("state-dir", def.StateDir, "the agent's state `directory`")
	note := fs.String("note", "", "why it is benign, kept with the suppression")
	by := fs.String("by", currentUser(), "who labels it")
	// Flags may come before or after the verdict and the id.
	var pos []string
	rest := args
	for {
		if err := parseFlags(fs, rest); err != nil {
			if err == flag.ErrHelp {
				return 0
			}
			fmt.Fprintf(stderr, "vigil-agent label: %v (see vigil-agent label --help)\n", err)
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(pos) != 2 {
		fmt.Fprintln(stderr, "vigil-agent label: want a verdict and an incident id, e.g. vigil-agent label benign ID (see vigil-agent label --help)")
		return 2
	}
	if pos[0] == "unlabelled" {
		removed, err := feedback.Remove(filepath.Join(*stateDir, feedback.FileName), pos[1])
		if err != nil {
			fmt.Fprintf(stderr, "vigil-agent label: %v\n", err)
			return 1
		}
		if removed == 0 {
			fmt.Fprintf(stderr, "vigil-agent label: incident %s has no suppressions in the feedback file\n", pos[1])
			return 1
		}
		fmt.Fprintf(stdout, "incident %s unlabelled: %d suppressions removed\n", pos[1], removed)
		return 0
	}
	if pos[0] != "benign" {
		fmt.Fprintf(stderr, "vigil-agent label: verdict %q: want \"benign\" or \"unlabelled\" (see vigil-agent label --help)\n", pos[0])
		return 2
	}
	j := &feedback.Journal{Path: filepath.Join(*stateDir, feedback.JournalName)}
	inc, err := j.Find(pos[1])
	if err != nil {
		fmt.Fprintf(stderr, "vigil-agent label: %v\n", err)
		return 1
	}
	sups := feedback.FromIncident(inc, *by, *note, time.Now())
	added, err := feedback.Append(filepath.Join(*stateDir, feedback.FileName), sups)
	if err != nil {
		fmt.Fprintf(stderr, "vigil-agent label: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "incident %s (%s) labelled benign: %d new suppressions, %d already there\n",
		inc.GetId(), inc.GetTitle(), added, len(sups)-added)
	for _, s := range sups {
		fmt.Fprintf(stdout, "  %s\n", s.Describe())
	}
	return 0
}

// currentUser names who runs the command, for the audit trail.
func currentUser() string {
	if name := os.Getenv("SUDO_USER"); name != "" {
		return name
	}
	users := &hostinfo.Users{}
	return users.Name(uint32(os.Getuid()))
}

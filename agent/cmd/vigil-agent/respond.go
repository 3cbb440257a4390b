package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-sensor/vigil/agent/config"
	"github.com/vigil-sensor/vigil/agent/control"
	"github.com/vigil-sensor/vigil/agent/feedback"
	"github.com/vigil-sensor/vigil/agent/hostinfo"
	"github.com/vigil-sensor/vigil/agent/response"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

const respondUsage = `vigil-agent respond COMMAND [flags]

Has the running agent act on this host, or say what it would do
(--dry-run). Every request, carried out or refused, is an audit record,
attached to its incident when one is named. The agent refuses to act on
pid 1, kernel threads, itself, its server's address and anything
allow-listed.

Commands:
  approve INCIDENT_ID [N]    carry out recommended action N (default 1) of an incident
  kill PID                   kill a process and its descendants
  freeze PID                 hold a process tree in a quarantine cgroup, frozen
  quarantine PID             hold a process tree and cut its network
  thaw TARGET                let a held tree run again (TARGET: held:ID or a pid in it)
  release TARGET             thaw a held tree and put it back where it was
  block ADDR[/BITS]          drop traffic to and from an address or prefix (--ttl)
  unblock ADDR[/BITS]        lift a block
  isolate                    drop all traffic but the server's and the allow-list's
  release-host               end isolation
  restore PATH               put a watched file back to its last known-good version

Examples:
  sudo vigil-agent respond approve 0193a000-0000-7000-8000-000000000001
  sudo vigil-agent respond block 203.0.113.7 --ttl 30m --reason "ssh brute force"
  sudo vigil-agent respond freeze 4242 --dry-run

Flags:
`

// respondCommands maps the command words to actions.
var respondCommands = map[string]string{
	"kill": response.ActKill, "freeze": response.ActFreeze, "quarantine": response.ActQuarantine,
	"thaw": response.ActThaw, "release": response.ActRelease, "block": response.ActBlock, "unblock": response.ActUnblock,
	"isolate": response.ActIsolate, "release-host": response.ActReleaseHost, "restore": response.ActRestore,
}

// runRespond implements "vigil-agent respond".
func runRespond(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vigil-agent respond", flag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), respondUsage)
		fs.PrintDefaults()
	}
	def := config.Default()
	stateDir := fs.String("state-dir", def.StateDir, "the running agent's state `directory`")
	dryRun := fs.Bool("dry-run", false, "check and say what would happen, change nothing")
	reason := fs.String("reason", "", "why, for the audit record")
	incidentID := fs.String("incident", "", "the incident this action is for (its audit trail gets the record)")
	ttl := fs.Duration("ttl", 0, "how long a block lasts (0: the agent's response.block_ttl)")
	by := fs.String("by", currentUser(), "who asks, for the audit record")
	var pos []string
	rest := args
	for {
		if err := parseFlags(fs, rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			fmt.Fprintf(stderr, "vigil-agent respond: %v (see vigil-agent respond --help)\n", err)
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(pos) == 0 {
		fmt.Fprintln(stderr, "vigil-agent respond: want a command (see vigil-agent respond --help)")
		return 2
	}
	req := control.Request{
		Op: "respond", IncidentID: *incidentID, Reason: *reason, DryRun: *dryRun, TTL: *ttl,
		Requester: "operator:" + *by,
	}
	cmd, args := pos[0], pos[1:]
	switch {
	case cmd == "approve":
		if len(args) < 1 || len(args) > 2 {
			fmt.Fprintln(stderr, "vigil-agent respond approve: want an incident id and optionally the number of the recommended action")
			return 2
		}
		n := 1
		if len(args) == 2 {
			v, err := strconv.Atoi(args[1])
			if err != nil || v < 1 {
				fmt.Fprintf(stderr, "vigil-agent respond approve: %q is not the number of a recommended action (1, 2, ...)\n", args[1])
				return 2
			}
			n = v
		}
		j := &feedback.Journal{Path: filepath.Join(*stateDir, feedback.JournalName)}
		inc, err := j.Find(args[0])
		if err != nil {
			fmt.Fprintf(stderr, "vigil-agent respond approve: %v\n", err)
			return 1
		}
		recs := inc.GetRecommendedActions()
		if n > len(recs) {
			fmt.Fprintf(stderr, "vigil-agent respond approve: incident %s has %d recommended actions, not %d\n", inc.GetId(), len(recs), n)
			return 1
		}
		a := recs[n-1]
		req.Action, req.Target, req.IncidentID = a.GetAction(), a.GetTarget(), inc.GetId()
		// A pid is acted on only if it still names the incident's process.
		if pid, ok := strings.CutPrefix(a.GetTarget(), "pid:"); ok {
			start, err := incidentStart(inc, pid)
			if err != nil {
				fmt.Fprintf(stderr, "vigil-agent respond approve: %v\n", err)
				return 1
			}
			// Converted from wall-clock time: allow for the clocks' drift.
			req.StartTime, req.StartSlack = start, 250*time.Millisecond
		}
		if req.Reason == "" {
			req.Reason = "approved recommendation: " + a.GetReason()
		}
	case respondCommands[cmd] != "":
		req.Action = respondCommands[cmd]
		target, err := respondTarget(req.Action, args)
		if err != nil {
			fmt.Fprintf(stderr, "vigil-agent respond %s: %v\n", cmd, err)
			return 2
		}
		req.Target = target
	default:
		fmt.Fprintf(stderr, "vigil-agent respond: unknown command %q (see vigil-agent respond --help)\n", cmd)
		return 2
	}
	reply, err := control.Call(*stateDir, req, 2*time.Minute)
	if err != nil {
		fmt.Fprintf(stderr, "vigil-agent respond: %v\n", err)
		return 1
	}
	if reply.Error != "" {
		fmt.Fprintf(stderr, "vigil-agent respond: %s\n", reply.Error)
		return 1
	}
	rec, err := reply.DecodeRecord()
	if err != nil {
		fmt.Fprintf(stderr, "vigil-agent respond: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s %s %s: %s (action %s", rec.GetResult(), rec.GetAction(), rec.GetTarget(), rec.GetDetail(), rec.GetId())
	if req.IncidentID != "" {
		fmt.Fprintf(stdout, ", incident %s", req.IncidentID)
	}
	fmt.Fprintln(stdout, ")")
	switch rec.GetResult() {
	case response.ResultDone, response.ResultDryRun:
		return 0
	}
	return 1
}

// respondTarget turns a command's arguments into the target of an action.
func respondTarget(action string, args []string) (string, error) {
	want := func(what string) error {
		return fmt.Errorf("want %s", what)
	}
	switch action {
	case response.ActIsolate, response.ActReleaseHost:
		if len(args) != 0 {
			return "", want("no argument")
		}
		return "host", nil
	}
	if len(args) != 1 {
		return "", want("one argument")
	}
	a := args[0]
	switch action {
	case response.ActKill, response.ActFreeze, response.ActQuarantine:
		if _, err := strconv.ParseUint(a, 10, 32); err != nil {
			return "", fmt.Errorf("%q is not a pid", a)
		}
		return "pid:" + a, nil
	case response.ActThaw, response.ActRelease:
		if strings.HasPrefix(a, "held:") {
			return a, nil
		}
		a = strings.TrimPrefix(a, "pid:")
		if _, err := strconv.ParseUint(a, 10, 32); err != nil {
			return "", fmt.Errorf("%q is neither held:ID nor a pid", a)
		}
		return "pid:" + a, nil
	case response.ActBlock, response.ActUnblock:
		return "addr:" + a, nil
	case response.ActRestore:
		if !strings.HasPrefix(a, "/") {
			return "", fmt.Errorf("%q is not an absolute path", a)
		}
		return "file:" + a, nil
	}
	return "", fmt.Errorf("no target for %s", action)
}

// incidentStart returns the start time, in ns since boot, of process pid as
// the incident records it, so that the agent refuses to act on a process
// that reused the pid since.
func incidentStart(inc *vigilv1.Incident, pid string) (uint64, error) {
	var found *vigilv1.Process
	for _, p := range append(append([]*vigilv1.Process{inc.GetProcess()}, inc.GetAncestors()...), inc.GetRelated()...) {
		if p != nil && strconv.FormatUint(uint64(p.GetPid()), 10) == pid {
			found = p
			break
		}
	}
	if found == nil || found.GetStartTime() == nil {
		return 0, fmt.Errorf("incident %s does not record when process %s started, so the agent could not tell it from a later process with that pid", inc.GetId(), pid)
	}
	boot, err := hostinfo.BootTime()
	if err != nil {
		return 0, err
	}
	d := found.GetStartTime().AsTime().Sub(boot)
	if d < 0 {
		return 0, fmt.Errorf("process %s of incident %s started before this boot: it is gone", pid, inc.GetId())
	}
	return uint64(d), nil
}

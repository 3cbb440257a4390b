package cli

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/render"
)

const agentsUsage = `vigilctl agents lists the agents the server knows: every agent that has
connected since the server started, connected or not, with what its hello
and its latest heartbeat said.

Usage:
  vigilctl agents [--json]

Flags:
  --json          print one JSON object per agent and line instead

LOSSES is the events the kernel could not hand to the agent since it
started (full ring buffers), in all and per event family that lost any,
from the latest heartbeat; "-" before the first heartbeat. POLICY is the
version of the fleet's rule set ('vigilctl rules') the agent runs on, "-"
for none, followed by "(vN refused)" when it refused the latest set sent
to it; --json carries the agent's error (last_rule_set_result).

Example:
  vigilctl agents --server 10.0.0.5:7470
`

const respondUsage = `vigilctl respond asks the agent of a host to carry out one response, and
prints the agent's record of it. The agent treats it like a request made on
the host: its safety rules, its response mode and its audit log apply, so
the answer may be a refusal. The host's agent must be connected.

Usage:
  vigilctl respond HOST ACTION TARGET [--incident ID] [--reason TEXT]
                   [--dry-run] [--ttl DURATION] [--requester NAME] [--json]

HOST is the host id or, when one agent has it, the hostname ('vigilctl
agents' lists both). ACTION is kill, freeze, thaw, release, quarantine, block_source, unblock,
isolate, release_host or restore. TARGET is pid:PID, addr:ADDR[/BITS],
file:PATH, held:ID or host.

Flags:
  --incident ID      the incident the action is for
  --reason TEXT      why (recorded in the agent's audit log)
  --dry-run          check the action without carrying it out
  --ttl DURATION     how long a block lasts (default: the agent's)
  --requester NAME   who asks (default $USER); the agent records server:NAME
  --json             print the record as one JSON line

Exit status is 1 when the agent refused the action or it failed.

Examples:
  vigilctl respond 0f3c9a7e5b2d4c1a8e6f7a9b0c1d2e3f kill pid:4242 --dry-run
  vigilctl respond 0f3c9a7e5b2d4c1a8e6f7a9b0c1d2e3f block_source addr:203.0.113.7 --ttl 1h
`

const actionsUsage = `vigilctl actions lists the actions requested through the server
('vigilctl respond'), newest first. Actions an agent took by itself are in
their incidents ('vigilctl incidents show').

Usage:
  vigilctl actions [--host ID] [--incident ID] [--limit N] [--json]

Flags:
  --host HOST     only actions on this host (host id or hostname)
  --incident ID   only actions for this incident
  --limit N       print at most N actions (default 50)
  --json          print one JSON object per action and line instead

Example:
  vigilctl actions --host 0f3c9a7e5b2d4c1a8e6f7a9b0c1d2e3f
`

// jsonLine writes a message as one line of protojson.
func jsonLine(w io.Writer, m proto.Message) error {
	b, err := protojson.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// agents runs "vigilctl agents".
func (a *app) agents(ctx context.Context, args []string) error {
	const cmd = "vigilctl agents"
	fs := a.newFlagSet()
	asJSON := fs.Bool("json", false, "")
	pos, err := parse(fs, args)
	if err != nil {
		return a.flagError(cmd, agentsUsage, err)
	}
	if len(pos) > 0 {
		return &usageError{cmd, fmt.Sprintf("unexpected argument %q", pos[0])}
	}
	conn, err := a.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	callCtx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	resp, err := vigilv1.NewFleetServiceClient(conn).ListAgents(callCtx, &vigilv1.ListAgentsRequest{})
	if err != nil {
		return a.rpcError("list agents", err)
	}
	if *asJSON {
		for _, ag := range resp.GetAgents() {
			if err := jsonLine(a.stdout, ag); err != nil {
				return err
			}
		}
		return nil
	}
	return agentsTable(a.stdout, resp.GetAgents())
}

// agentsTable writes agents as a table with aligned columns.
func agentsTable(w io.Writer, agents []*vigilv1.Agent) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tHOSTNAME\tVERSION\tKERNEL\tCONNECTED\tLAST SEEN\tLOSSES\tPOLICY")
	for _, ag := range agents {
		connected := "no"
		if ag.GetConnected() {
			connected = "yes"
		}
		fmt.Fprintln(tw, strings.Join([]string{
			render.Printable(ag.GetHostId()), dashed(ag.GetHostname()), dashed(ag.GetAgentVersion()),
			dashed(ag.GetKernel()), connected, render.Time(ag.GetLastSeen()), losses(ag.GetLastHeartbeat()), policy(ag),
		}, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	return nil
}

// policy writes the rule set version an agent runs on, "v3", "-" for
// none, and a refused latest set: "v3 (v4 refused)".
func policy(ag *vigilv1.Agent) string {
	out := "-"
	if v := ag.GetPolicyVersion(); v > 0 {
		out = "v" + strconv.FormatUint(v, 10)
	}
	if r := ag.GetLastRuleSetResult(); r != nil && !r.GetApplied() {
		out += fmt.Sprintf(" (v%d refused)", r.GetVersion())
	}
	return out
}

// dashed returns s made printable, or "-" when it is empty.
func dashed(s string) string {
	if s == "" {
		return "-"
	}
	return render.Printable(s)
}

// losses writes a heartbeat's lost events: the total, then the families
// that lost any, e.g. "3 (file=1,net=2)"; "-" without a heartbeat.
func losses(hb *vigilv1.Heartbeat) string {
	if hb == nil {
		return "-"
	}
	var total uint64
	var fams []string
	for fam, n := range hb.GetEventsLost() {
		total += n
		if n > 0 {
			fams = append(fams, render.Printable(fam)+"="+strconv.FormatUint(n, 10))
		}
	}
	if len(fams) == 0 {
		return "0"
	}
	slices.Sort(fams)
	return fmt.Sprintf("%d (%s)", total, strings.Join(fams, ","))
}

// respond runs "vigilctl respond".
func (a *app) respond(ctx context.Context, args []string) error {
	const cmd = "vigilctl respond"
	fs := a.newFlagSet()
	incident := fs.String("incident", "", "")
	reason := fs.String("reason", "", "")
	dryRun := fs.Bool("dry-run", false, "")
	ttl := fs.Duration("ttl", 0, "")
	requester := fs.String("requester", a.defaultAuthor(), "")
	asJSON := fs.Bool("json", false, "")
	pos, err := parse(fs, args)
	if err != nil {
		return a.flagError(cmd, respondUsage, err)
	}
	switch {
	case len(pos) < 3:
		return &usageError{cmd, "want HOST ACTION TARGET"}
	case len(pos) > 3:
		return &usageError{cmd, fmt.Sprintf("unexpected argument %q after the target", pos[3])}
	case *ttl < 0 || *ttl%time.Second != 0:
		return &usageError{cmd, fmt.Sprintf("--ttl %v: want a positive whole number of seconds", *ttl)}
	}
	req := &vigilv1.RequestActionRequest{
		HostId: pos[0], Action: pos[1], Target: pos[2], IncidentId: *incident, Reason: *reason,
		DryRun: *dryRun, TtlSeconds: uint32(*ttl / time.Second), Requester: *requester,
	}
	conn, err := a.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	if req.HostId, err = a.resolveHost(ctx, conn, req.HostId); err != nil {
		return err
	}
	// The server waits up to 30 s for the agent: wait a little longer.
	callCtx, cancel := context.WithTimeout(ctx, max(a.timeout, 35*time.Second))
	defer cancel()
	rec, err := vigilv1.NewResponseServiceClient(conn).RequestAction(callCtx, req)
	if err != nil {
		return a.rpcError("request action", err)
	}
	if *asJSON {
		err = jsonLine(a.stdout, rec)
	} else {
		err = writeRecord(a.stdout, req.HostId, rec)
	}
	if err != nil {
		return err
	}
	if r := rec.GetResult(); r == "refused" || r == "failed" {
		return fmt.Errorf("action %s: %s", r, rec.GetDetail())
	}
	return nil
}

// writeRecord prints one action record, a field a line.
func writeRecord(w io.Writer, host string, rec *vigilv1.ActionRecord) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, f := range [][2]string{
		{"Action", rec.GetAction() + " " + rec.GetTarget()},
		{"Host", host},
		{"Result", rec.GetResult()},
		{"Detail", rec.GetDetail()},
		{"Mode", rec.GetMode()},
		{"Requester", rec.GetRequester()},
		{"Incident", rec.GetIncidentId()},
		{"Time", render.Time(rec.GetTime())},
		{"Id", rec.GetId()},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", f[0], dashed(f[1]))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write record: %w", err)
	}
	return nil
}

// actions runs "vigilctl actions".
func (a *app) actions(ctx context.Context, args []string) error {
	const cmd = "vigilctl actions"
	fs := a.newFlagSet()
	host := fs.String("host", "", "")
	incident := fs.String("incident", "", "")
	limit := fs.Int("limit", 50, "")
	asJSON := fs.Bool("json", false, "")
	pos, err := parse(fs, args)
	if err != nil {
		return a.flagError(cmd, actionsUsage, err)
	}
	if len(pos) > 0 {
		return &usageError{cmd, fmt.Sprintf("unexpected argument %q", pos[0])}
	}
	if *limit <= 0 {
		return &usageError{cmd, fmt.Sprintf("--limit %d is not positive", *limit)}
	}
	conn, err := a.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	if *host, err = a.resolveHost(ctx, conn, *host); err != nil {
		return err
	}
	client := vigilv1.NewResponseServiceClient(conn)
	var acts []*vigilv1.StoredAction
	token := ""
	for len(acts) < *limit {
		callCtx, cancel := context.WithTimeout(ctx, a.timeout)
		resp, err := client.ListActions(callCtx, &vigilv1.ListActionsRequest{
			HostId: *host, IncidentId: *incident, PageSize: uint32(min(*limit-len(acts), 1000)), PageToken: token,
		})
		cancel()
		if err != nil {
			return a.rpcError("list actions", err)
		}
		acts = append(acts, resp.GetActions()...)
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	if *asJSON {
		for _, act := range acts {
			if err := jsonLine(a.stdout, act); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tHOST\tACTION\tTARGET\tRESULT\tREQUESTER\tINCIDENT\tDETAIL")
	for _, act := range acts {
		r := act.GetRecord()
		action := r.GetAction()
		if r.GetDryRun() {
			action += " (dry run)"
		}
		fmt.Fprintln(tw, strings.Join([]string{
			render.Time(r.GetTime()), dashed(act.GetHostId()), dashed(action), dashed(r.GetTarget()), dashed(r.GetResult()),
			dashed(r.GetRequester()), dashed(r.GetIncidentId()), dashed(r.GetDetail()),
		}, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	return nil
}

package cli

import (
	"context"
	"fmt"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/ocsf"
	"github.com/vigil-sensor/vigil/server/render"
)

const exportUsage = `vigilctl incidents export writes stored incidents, oldest first, one JSON
object a line, for a SIEM or a data lake: every incident after a cursor that
was stored when the command started, then it exits. With --follow it goes
on with each new incident (and each new revision of one) until Ctrl-C,
reconnecting and resuming where it was if the connection drops.

Usage:
  vigilctl incidents export [--format ocsf|json] [--after-cursor N] [--follow]
                            [--host ID] [--rule ID] [--min-severity LEVEL]

Flags:
  --format FORMAT        ocsf (default): OCSF 1.1.0 Detection Finding
                         (class_uid 2004); json: Vigil's own incident JSON
                         (protobuf JSON field names, as list --json)
  --after-cursor N       start after this cursor (default 0: from the first
                         stored incident); an OCSF line carries its cursor
                         in metadata.sequence, so the last line exported
                         says where the next export starts
  --follow               keep exporting new incidents until Ctrl-C
  --host HOST            only incidents of this host id or hostname
  --rule ID              only incidents raised by this rule
  --min-severity LEVEL   only incidents at least this severe:
                         info, low, medium, high or critical

Examples:
  vigilctl incidents export > findings.jsonl
  vigilctl incidents export --after-cursor "$(tail -n1 findings.jsonl | jq .metadata.sequence)" >> findings.jsonl
  vigilctl incidents export --follow --min-severity high | your-shipper
`

// export runs "vigilctl incidents export".
func (a *app) export(ctx context.Context, args []string) error {
	const cmd = "vigilctl incidents export"
	fs := a.newFlagSet()
	format := fs.String("format", "ocsf", "")
	after := fs.Uint64("after-cursor", 0, "")
	follow := fs.Bool("follow", false, "")
	var ff filterFlags
	ff.add(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return a.flagError(cmd, exportUsage, err)
	}
	if len(pos) > 0 {
		return &usageError{cmd, fmt.Sprintf("unexpected argument %q", pos[0])}
	}
	var emit func(*vigilv1.Incident) error
	switch *format {
	case "ocsf":
		emit = func(inc *vigilv1.Incident) error { return ocsf.WriteLine(a.stdout, inc) }
	case "json":
		emit = func(inc *vigilv1.Incident) error { return render.JSONLine(a.stdout, inc) }
	default:
		return &usageError{cmd, fmt.Sprintf("--format %q: want ocsf or json", *format)}
	}
	filter, err := ff.filter()
	if err != nil {
		return &usageError{cmd, err.Error()}
	}

	conn, err := a.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	if filter.HostId, err = a.resolveStoredHost(ctx, conn, filter.HostId); err != nil {
		return err
	}
	client := vigilv1.NewIncidentServiceClient(conn)
	if *follow {
		return a.followRetrying(ctx, client, filter, *after, 0, emit)
	}

	// Without --follow, stop at the newest matching incident stored now.
	callCtx, cancel := context.WithTimeout(ctx, a.timeout)
	resp, err := client.ListIncidents(callCtx, &vigilv1.ListIncidentsRequest{Filter: filter, PageSize: 1})
	cancel()
	if err != nil {
		return a.rpcError("list incidents", err)
	}
	if len(resp.GetIncidents()) == 0 {
		return nil
	}
	newest := resp.GetIncidents()[0].GetCursor()
	if newest <= *after {
		return nil
	}
	return a.followRetrying(ctx, client, filter, *after, newest, emit)
}

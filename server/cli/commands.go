package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/render"
)

// parseSeverity reads a --min-severity value.
var parseSeverity = render.ParseSeverity

// list runs "vigilctl incidents list".
func (a *app) list(ctx context.Context, args []string) error {
	const cmd = "vigilctl incidents list"
	fs := a.newFlagSet()
	limit := fs.Int("limit", 50, "")
	asJSON := fs.Bool("json", false, "")
	var ff filterFlags
	ff.add(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return a.flagError(cmd, listUsage, err)
	}
	if len(pos) > 0 {
		return &usageError{cmd, fmt.Sprintf("unexpected argument %q", pos[0])}
	}
	if *limit <= 0 {
		return &usageError{cmd, fmt.Sprintf("--limit %d is not positive", *limit)}
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

	// Fetch pages until the limit or the last page.
	var incs []*vigilv1.Incident
	token := ""
	for len(incs) < *limit {
		size := min(*limit-len(incs), 1000)
		callCtx, cancel := context.WithTimeout(ctx, a.timeout)
		resp, err := client.ListIncidents(callCtx, &vigilv1.ListIncidentsRequest{
			Filter: filter, PageSize: uint32(size), PageToken: token,
		})
		cancel()
		if err != nil {
			return a.rpcError("list incidents", err)
		}
		incs = append(incs, resp.GetIncidents()...)
		token = resp.GetNextPageToken()
		if token == "" {
			break
		}
	}
	if len(incs) > *limit {
		incs = incs[:*limit]
	}

	if *asJSON {
		for _, inc := range incs {
			if err := render.JSONLine(a.stdout, inc); err != nil {
				return err
			}
		}
		return nil
	}
	if err := render.Table(a.stdout, incs); err != nil {
		return err
	}
	if token != "" {
		// More are stored: say so where it does not spoil piped output.
		fmt.Fprintf(a.stderr, "(the newest %d shown; more are stored: --limit N for more)\n", len(incs))
	}
	return nil
}

// show runs "vigilctl incidents show".
func (a *app) show(ctx context.Context, args []string) error {
	const cmd = "vigilctl incidents show"
	fs := a.newFlagSet()
	asJSON := fs.Bool("json", false, "")
	pos, err := parse(fs, args)
	if err != nil {
		return a.flagError(cmd, showUsage, err)
	}
	switch {
	case len(pos) == 0:
		return &usageError{cmd, "missing incident ID"}
	case len(pos) > 1:
		return &usageError{cmd, fmt.Sprintf("unexpected argument %q after the incident ID", pos[1])}
	}

	conn, err := a.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	callCtx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	inc, err := vigilv1.NewIncidentServiceClient(conn).GetIncident(callCtx, &vigilv1.GetIncidentRequest{Id: pos[0]})
	if err != nil {
		return a.rpcError("get incident", err)
	}
	if *asJSON {
		return render.JSONLine(a.stdout, inc)
	}
	if err := render.Show(a.stdout, inc); err != nil {
		return err
	}
	fmt.Fprintln(a.stdout)
	return writeTriage(a.stdout, inc)
}

// Reconnect delays of tail after the connection drops.
const (
	minRetry = 500 * time.Millisecond
	maxRetry = 5 * time.Second
)

// tail runs "vigilctl incidents tail".
func (a *app) tail(ctx context.Context, args []string) error {
	const cmd = "vigilctl incidents tail"
	fs := a.newFlagSet()
	after := fs.Uint64("after", 0, "")
	asJSON := fs.Bool("json", false, "")
	var ff filterFlags
	ff.add(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return a.flagError(cmd, tailUsage, err)
	}
	if len(pos) > 0 {
		return &usageError{cmd, fmt.Sprintf("unexpected argument %q", pos[0])}
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

	if !*asJSON {
		fmt.Fprintln(a.stdout, render.FeedHeader())
	}
	emit := func(inc *vigilv1.Incident) error {
		if *asJSON {
			return render.JSONLine(a.stdout, inc)
		}
		_, err := fmt.Fprintln(a.stdout, render.Feed(inc))
		return err
	}
	return a.followRetrying(ctx, client, filter, *after, 0, emit)
}

// followRetrying streams incidents after cursor to emit, reconnecting and
// resuming after the last one emitted when a server that was up goes away,
// until ctx ends, or, when until is not 0, until it has emitted the one at
// cursor until or later.
func (a *app) followRetrying(ctx context.Context, client vigilv1.IncidentServiceClient, filter *vigilv1.IncidentFilter,
	cursor, until uint64, emit func(*vigilv1.Incident) error) error {
	retry := minRetry
	everUp := false
	for {
		up, err := a.follow(ctx, client, filter, &cursor, until, emit)
		if errors.Is(err, errCaughtUp) {
			return nil
		}
		if ctx.Err() != nil {
			return nil // Ctrl-C
		}
		var werr *writeError
		if errors.As(err, &werr) {
			return werr.err
		}
		everUp = everUp || up
		if !everUp || status.Code(err) != codes.Unavailable {
			return a.rpcError("follow incidents", err)
		}
		if up {
			retry = minRetry
		}
		// The server was there and went away: resume after the last
		// incident printed, until Ctrl-C.
		fmt.Fprintf(a.stderr, "vigilctl: connection to %s lost (%s); reconnecting after cursor %d\n",
			a.server, status.Convert(err).Message(), cursor)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(retry):
		}
		retry = min(2*retry, maxRetry)
	}
}

// writeError is a failure to write output; tail stops on it.
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }

// errCaughtUp ends follow once it has emitted the incident at its until
// cursor.
var errCaughtUp = errors.New("caught up")

// follow streams incidents after *cursor and emits them, advancing
// *cursor, until the stream ends, or until it emitted the incident at
// cursor until or later (until > 0; it then returns errCaughtUp). up
// reports whether the stream was established (the server answered) before
// it ended.
func (a *app) follow(ctx context.Context, client vigilv1.IncidentServiceClient, filter *vigilv1.IncidentFilter,
	cursor *uint64, until uint64, emit func(*vigilv1.Incident) error) (up bool, err error) {
	if until > 0 && *cursor >= until {
		return false, errCaughtUp
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.StreamIncidents(ctx, &vigilv1.StreamIncidentsRequest{Filter: filter, AfterCursor: *cursor})
	if err != nil {
		return false, err
	}
	// The server sends headers as soon as the stream is up.
	md, err := stream.Header()
	if err != nil {
		return false, err
	}
	if md == nil {
		// The call ended without headers: read its status.
		if _, err := stream.Recv(); err != nil && !errors.Is(err, io.EOF) {
			return false, err
		}
		return false, status.Error(codes.Unavailable, "server ended the stream")
	}
	for {
		inc, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return true, status.Error(codes.Unavailable, "server ended the stream")
		}
		if err != nil {
			return true, err
		}
		if err := emit(inc); err != nil {
			return true, &writeError{err}
		}
		*cursor = inc.GetCursor()
		if until > 0 && *cursor >= until {
			return true, errCaughtUp
		}
	}
}

// Package console is vigil-server's web console: a few embedded static
// files (one page, its script and its style sheet, no external fetches)
// and a small read-only JSON API over the store.
//
//	GET /api/incidents?limit=N&before=CURSOR&host=ID&rule=ID&min_severity=LEVEL
//	    stored incidents, newest first: {"incidents":[...],"nextBefore":"N"}
//	GET /api/incidents/{id}
//	    one incident (protobuf JSON), 404 when unknown
//	GET /api/events?after=CURSOR (or the Last-Event-ID header), same filters
//	    Server-Sent Events: every incident stored after the cursor, oldest
//	    first, then each new incident or revision as it is stored; the
//	    event id is the incident's cursor
//	GET /api/fleet
//	    the agents the server has heard from since it started
//
// Incidents are encoded with protojson, as vigilctl --json prints them.
package console

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/fleet"
	"github.com/vigil-sensor/vigil/server/render"
	"github.com/vigil-sensor/vigil/server/store"
)

// DefaultAddr is where vigil-server serves the console unless told otherwise.
const DefaultAddr = "127.0.0.1:7471"

// DefaultLimit and MaxLimit bound the page size of /api/incidents.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// eventBatch is how many incidents one After call of the event stream reads.
const eventBatch = 100

// keepAlive is how often an idle event stream sends a comment line, so
// that proxies keep it open and a gone client is noticed.
const keepAlive = 15 * time.Second

//go:embed assets
var assets embed.FS

// Handler serves the console's pages and API.
type Handler struct {
	store store.Store
	fleet *fleet.Registry
	log   *slog.Logger
	mux   *http.ServeMux
}

// New returns the console over st. reg may be nil: /api/fleet then
// answers 404. log may be nil.
func New(st store.Store, reg *fleet.Registry, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{store: st, fleet: reg, log: log, mux: http.NewServeMux()}
	static, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded tree always has assets/
	}
	h.mux.Handle("GET /", http.FileServerFS(static))
	h.mux.HandleFunc("GET /api/incidents", h.list)
	h.mux.HandleFunc("GET /api/incidents/{id}", h.get)
	h.mux.HandleFunc("GET /api/events", h.events)
	if reg != nil {
		h.mux.HandleFunc("GET /api/fleet", h.fleetList)
	}
	return h
}

// ServeHTTP sets headers that keep the browser from running anything but
// the console's own script, then dispatches.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Frame-Options", "DENY")
	if strings.HasPrefix(r.URL.Path, "/api/") {
		hd.Set("Cache-Control", "no-store")
	}
	h.mux.ServeHTTP(w, r)
}

// filter reads the host, rule and min_severity query parameters.
func filter(r *http.Request) (*vigilv1.IncidentFilter, error) {
	q := r.URL.Query()
	f := &vigilv1.IncidentFilter{HostId: q.Get("host"), RuleId: q.Get("rule")}
	if s := q.Get("min_severity"); s != "" {
		sev, err := render.ParseSeverity(s)
		if err != nil {
			return nil, fmt.Errorf("min_severity: %w", err)
		}
		f.MinSeverity = sev
	}
	return f, nil
}

// uintParam reads a non-negative integer query parameter, def when absent.
func uintParam(r *http.Request, name string, def uint64) (uint64, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s %q: want a non-negative integer", name, s)
	}
	return v, nil
}

// list answers GET /api/incidents.
func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	f, err := filter(r)
	if err != nil {
		httpError(w, http.StatusBadRequest, err)
		return
	}
	limit, err := uintParam(r, "limit", DefaultLimit)
	if err == nil && (limit == 0 || limit > MaxLimit) {
		err = fmt.Errorf("limit %d: want 1 to %d", limit, MaxLimit)
	}
	if err != nil {
		httpError(w, http.StatusBadRequest, err)
		return
	}
	before, err := uintParam(r, "before", 0)
	if err != nil {
		httpError(w, http.StatusBadRequest, err)
		return
	}
	incs, err := h.store.List(r.Context(), f, before, int(limit))
	if err != nil {
		h.log.Warn("console: list incidents", "error", err)
		httpError(w, http.StatusInternalServerError, errors.New("cannot read the store"))
		return
	}
	var b strings.Builder
	b.WriteString(`{"incidents":[`)
	for i, inc := range incs {
		if i > 0 {
			b.WriteByte(',')
		}
		js, err := protojson.Marshal(inc)
		if err != nil {
			httpError(w, http.StatusInternalServerError, fmt.Errorf("encode incident: %w", err))
			return
		}
		b.Write(js)
	}
	b.WriteString(`]`)
	// The next page starts below the oldest incident of a full page.
	if len(incs) == int(limit) {
		fmt.Fprintf(&b, `,"nextBefore":"%d"`, incs[len(incs)-1].GetCursor())
	}
	b.WriteString("}\n")
	writeJSON(w, []byte(b.String()))
}

// get answers GET /api/incidents/{id}.
func (h *Handler) get(w http.ResponseWriter, r *http.Request) {
	inc, err := h.store.Get(r.Context(), r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		httpError(w, http.StatusNotFound, errors.New("no incident with this id"))
		return
	}
	if err != nil {
		h.log.Warn("console: get incident", "error", err)
		httpError(w, http.StatusInternalServerError, errors.New("cannot read the store"))
		return
	}
	js, err := protojson.Marshal(inc)
	if err != nil {
		httpError(w, http.StatusInternalServerError, fmt.Errorf("encode incident: %w", err))
		return
	}
	writeJSON(w, append(js, '\n'))
}

// events answers GET /api/events with a Server-Sent Events stream. It
// follows the store as StreamIncidents does: read After the cursor until
// a short batch, then wait on Changed. Each write blocks until the client
// takes it, so a slow client is served at its own pace and nothing is
// buffered for it.
func (h *Handler) events(w http.ResponseWriter, r *http.Request) {
	f, err := filter(r)
	if err != nil {
		httpError(w, http.StatusBadRequest, err)
		return
	}
	cursor, err := uintParam(r, "after", 0)
	if err != nil {
		httpError(w, http.StatusBadRequest, err)
		return
	}
	// A reconnecting EventSource resumes after the last event it got.
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		if cursor, err = strconv.ParseUint(id, 10, 64); err != nil {
			httpError(w, http.StatusBadRequest, fmt.Errorf("Last-Event-ID %q: want a cursor", id))
			return
		}
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// Ask the browser to wait a little before reconnecting.
	if _, err := fmt.Fprint(w, "retry: 2000\n\n"); err != nil || rc.Flush() != nil {
		return
	}
	ctx := r.Context()
	tick := time.NewTicker(keepAlive)
	defer tick.Stop()
	for {
		changed := h.store.Changed()
		incs, err := h.store.After(ctx, f, cursor, eventBatch)
		if err != nil {
			if ctx.Err() == nil {
				h.log.Warn("console: event stream", "error", err)
			}
			return
		}
		for _, inc := range incs {
			js, err := protojson.Marshal(inc)
			if err != nil {
				h.log.Warn("console: encode incident", "id", inc.GetId(), "error", err)
				return
			}
			// protojson never writes a raw newline, so one data line holds it.
			if _, err := fmt.Fprintf(w, "id: %d\nevent: incident\ndata: %s\n\n", inc.GetCursor(), js); err != nil {
				return
			}
			cursor = inc.GetCursor()
		}
		if err := rc.Flush(); err != nil {
			return
		}
		if len(incs) == eventBatch {
			continue
		}
		for waiting := true; waiting; {
			select {
			case <-ctx.Done():
				return
			case <-changed:
				waiting = false
			case <-tick.C:
				if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil || rc.Flush() != nil {
					return
				}
			}
		}
	}
}

// agentJSON is one agent of /api/fleet.
type agentJSON struct {
	HostID        string          `json:"hostId"`
	Hello         json.RawMessage `json:"hello,omitempty"`
	Peer          string          `json:"peer,omitempty"`
	Connected     bool            `json:"connected"`
	ConnectedAt   *time.Time      `json:"connectedAt,omitempty"`
	LastSeen      *time.Time      `json:"lastSeen,omitempty"`
	LastHeartbeat json.RawMessage `json:"lastHeartbeat,omitempty"`
}

// fleetList answers GET /api/fleet.
func (h *Handler) fleetList(w http.ResponseWriter, r *http.Request) {
	agents := h.fleet.Agents()
	out := struct {
		Agents []agentJSON `json:"agents"`
	}{Agents: make([]agentJSON, 0, len(agents))}
	for _, a := range agents {
		j := agentJSON{HostID: a.HostID, Peer: a.Peer, Connected: a.Connections > 0}
		if !a.ConnectedAt.IsZero() {
			j.ConnectedAt = &a.ConnectedAt
		}
		if !a.LastSeen.IsZero() {
			j.LastSeen = &a.LastSeen
		}
		j.Hello = protoJSON(a.Hello)
		j.LastHeartbeat = protoJSON(a.LastHeartbeat)
		out.Agents = append(out.Agents, j)
	}
	js, err := json.Marshal(out)
	if err != nil {
		httpError(w, http.StatusInternalServerError, fmt.Errorf("encode fleet: %w", err))
		return
	}
	writeJSON(w, append(js, '\n'))
}

// protoJSON encodes m with protojson, nil when m is nil or fails to encode.
func protoJSON(m proto.Message) json.RawMessage {
	if m == nil || !m.ProtoReflect().IsValid() {
		return nil
	}
	js, err := protojson.Marshal(m)
	if err != nil {
		return nil
	}
	return js
}

func writeJSON(w http.ResponseWriter, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(body) //nolint:errcheck // the client went away
}

// httpError answers with status and {"error": msg}.
func httpError(w http.ResponseWriter, status int, err error) {
	js, _ := json.Marshal(map[string]string{"error": err.Error()})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(js, '\n')) //nolint:errcheck // the client went away
}

// HTTPServer serves the console on a TCP listener.
type HTTPServer struct {
	srv    *http.Server
	lis    net.Listener
	cancel context.CancelFunc // ends the requests' context, and so event streams
}

// Serve listens on addr (host:port; port 0 picks a free one) and serves h
// in the background until Shutdown.
func Serve(addr string, h http.Handler) (*HTTPServer, error) {
	lis, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("console: listen on %s: address already in use: %w", addr, err)
	}
	if err != nil {
		return nil, fmt.Errorf("console: listen on %s: %w", addr, err)
	}
	base, cancel := context.WithCancel(context.Background())
	s := &HTTPServer{
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			BaseContext:       func(net.Listener) context.Context { return base },
		},
		lis:    lis,
		cancel: cancel,
	}
	go s.srv.Serve(lis) //nolint:errcheck // ends with ErrServerClosed at Shutdown
	return s, nil
}

// Addr is the address the console is served on, host:port.
func (s *HTTPServer) Addr() string { return s.lis.Addr().String() }

// Shutdown stops serving: it ends the event streams, which never end on
// their own, and waits for other requests until ctx ends.
func (s *HTTPServer) Shutdown(ctx context.Context) error {
	s.cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("console: shutdown: %w", err)
	}
	return nil
}

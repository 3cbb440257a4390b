// Package console is vigil-server's web console: a few embedded static
// files (one page, its script and its style sheet, no external fetches)
// and a small JSON API over the store and the server's gRPC handlers.
//
//	GET /api/session
//	    whether the API needs a token, and whose the request's is:
//	    {"tokens":true,"name":"alice","role":"responder"}
//	GET /api/incidents?limit=N&before=CURSOR&host=ID&rule=ID&min_severity=LEVEL
//	    stored incidents, newest first: {"incidents":[...],"nextBefore":"N"}
//	GET /api/incidents/{id}
//	    one incident (protobuf JSON), 404 when unknown
//	GET /api/incidents/{id}/actions
//	    the action records stored for the incident, newest first (a
//	    vigil.v1.ListActionsResponse)
//	POST /api/incidents/{id}/actions
//	    run one of the incident's recommended actions on its host, through
//	    ResponseService.RequestAction; the body is a RequestActionRequest
//	    ({"action":"kill","target":"pid:4242","dryRun":true}), the answer
//	    the agent's ActionRecord
//	POST /api/incidents/{id}/triage
//	    change the status, label or notes, through
//	    IncidentService.UpdateIncident; the body is an UpdateIncidentRequest
//	    ({"label":"LABEL_BENIGN","note":"nightly build"}), the answer the
//	    incident as now stored
//	GET /api/events?after=CURSOR (or the Last-Event-ID header), same filters
//	    Server-Sent Events: every incident stored after the cursor, oldest
//	    first, then each new incident or revision as it is stored; the
//	    event id is the incident's cursor
//	GET /api/fleet
//	    the agents the server has heard from since it started, each with
//	    its health
//
// Incidents are encoded with protojson, as vigilctl --json prints them.
//
// Every API route is checked against the server's token policy as the
// gRPC method it stands for (GET /api/incidents as ListIncidents, POST
// .../actions as RequestAction, and so on): with tokens, a request needs
// "Authorization: Bearer TOKEN" with the method's role, else 401 or 403.
// A POST must also be a same-origin request of the console's own script:
// Content-Type application/json, the header Vigil-Console: 1 (which a page
// of another site cannot send without a CORS preflight, which the console
// never grants) and, when the browser sends them, an Origin of this host
// and a Sec-Fetch-Site of same-origin. Otherwise it is refused before
// anything is read or changed.
package console

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/api"
	"github.com/vigil-sensor/vigil/server/fleet"
	"github.com/vigil-sensor/vigil/server/grpcserver"
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

// Config is what a console serves.
type Config struct {
	// Store holds the incidents. Required.
	Store store.Store
	// Fleet lists the agents; nil makes /api/fleet answer 404.
	Fleet *fleet.Registry
	// Incidents triages incidents (POST /api/incidents/{id}/triage); nil
	// makes that route answer 404.
	Incidents *api.IncidentService
	// Responses requests and lists actions (/api/incidents/{id}/actions);
	// nil makes those routes answer 404.
	Responses *api.ResponseService
	// Policy is the server's access policy; its tokens and method roles
	// apply to the API. nil, or a policy without tokens, leaves the API
	// open to whoever reaches the console.
	Policy *grpcserver.Policy
	// LoopbackOnly answers only requests whose Host header names a
	// loopback address (localhost, 127.0.0.0/8, ::1), with 421 otherwise:
	// a console that listens on loopback is then out of reach of pages of
	// other sites that rebind their name to 127.0.0.1 (DNS rebinding).
	LoopbackOnly bool
	// Log receives warnings; nil discards them.
	Log *slog.Logger
}

// Handler serves the console's pages and API.
type Handler struct {
	store     store.Store
	fleet     *fleet.Registry
	incidents *api.IncidentService
	responses *api.ResponseService
	policy    *grpcserver.Policy
	loopback  bool
	log       *slog.Logger
	mux       *http.ServeMux
}

// New returns the console cfg describes.
func New(cfg Config) *Handler {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{
		store: cfg.Store, fleet: cfg.Fleet, incidents: cfg.Incidents, responses: cfg.Responses,
		policy: cfg.Policy, loopback: cfg.LoopbackOnly, log: log, mux: http.NewServeMux(),
	}
	static, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded tree always has assets/
	}
	// The page itself holds no data: it loads without a token and asks
	// for one when the API answers 401.
	h.mux.Handle("GET /", http.FileServerFS(static))
	h.mux.HandleFunc("GET /api/session", h.session)
	h.handle("GET /api/incidents", vigilv1.IncidentService_ListIncidents_FullMethodName, h.list)
	h.handle("GET /api/incidents/{id}", vigilv1.IncidentService_GetIncident_FullMethodName, h.get)
	h.handle("GET /api/events", vigilv1.IncidentService_StreamIncidents_FullMethodName, h.events)
	if h.fleet != nil {
		h.handle("GET /api/fleet", vigilv1.FleetService_ListAgents_FullMethodName, h.fleetList)
	}
	if h.responses != nil {
		h.handle("GET /api/incidents/{id}/actions", vigilv1.ResponseService_ListActions_FullMethodName, h.listActions)
		h.handle("POST /api/incidents/{id}/actions", vigilv1.ResponseService_RequestAction_FullMethodName, h.requestAction)
	}
	if h.incidents != nil {
		h.handle("POST /api/incidents/{id}/triage", vigilv1.IncidentService_UpdateIncident_FullMethodName, h.triage)
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
	if h.loopback && !loopbackHost(r.Host) {
		httpError(w, http.StatusMisdirectedRequest, fmt.Errorf("this console answers only on a loopback address, not %q", r.Host))
		return
	}
	h.mux.ServeHTTP(w, r)
}

// loopbackHost reports whether a Host header names a loopback address.
func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
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
	// Health is one of the Health* values; HealthDetail says why.
	Health       string `json:"health"`
	HealthDetail string `json:"healthDetail"`
}

// The values of an agent's health on /api/fleet, worst first.
const (
	// HealthDisconnected: the agent has no stream open to this server.
	HealthDisconnected = "disconnected"
	// HealthSilent: connected, but nothing arrived for longer than SilentAfter.
	HealthSilent = "silent"
	// HealthLosing: the agent lost events within fleet.LossWindow.
	HealthLosing = "losing events"
	// HealthStarting: connected, no heartbeat yet.
	HealthStarting = "starting"
	// HealthOK: connected, heard from lately, no event lost.
	HealthOK = "ok"
)

// SilentAfter is how long a connected agent may send nothing before its
// health is HealthSilent: three of the agent's default heartbeat intervals.
const SilentAfter = 30 * time.Second

// health judges an agent at now and says why, in words.
func health(a fleet.Agent, now time.Time) (string, string) {
	switch {
	case a.Connections == 0:
		if a.LastSeen.IsZero() {
			return HealthDisconnected, "not connected"
		}
		return HealthDisconnected, "not connected; last heard from " + ago(now.Sub(a.LastSeen))
	case !a.LastSeen.IsZero() && now.Sub(a.LastSeen) > SilentAfter:
		return HealthSilent, "connected, but nothing received for " + now.Sub(a.LastSeen).Round(time.Second).String()
	case a.LastHeartbeat == nil:
		return HealthStarting, "connected, no heartbeat yet"
	}
	// Losing events is about now: losses that grew within
	// fleet.LossWindow, so that one loss at start-up does not mark the
	// agent for as long as it runs.
	lost := a.RecentLosses(now)
	var total uint64
	for _, n := range a.LastHeartbeat.GetEventsLost() {
		total += n
	}
	if len(lost) == 0 {
		if total > 0 {
			return HealthOK, fmt.Sprintf("connected, no event lost in the last %s (%d since the agent started)", window, total)
		}
		return HealthOK, "connected, no event lost"
	}
	families := slices.Sorted(maps.Keys(lost))
	parts := make([]string, len(families))
	var recent uint64
	for i, f := range families {
		parts[i] = fmt.Sprintf("%s %d", f, lost[f])
		recent += lost[f]
	}
	return HealthLosing, fmt.Sprintf("%d events lost in the last %s (%s)", recent, window, strings.Join(parts, ", "))
}

// window names fleet.LossWindow in words.
var window = fmt.Sprintf("%d minutes", int(fleet.LossWindow.Minutes()))

// ago says how long ago d was, to the second.
func ago(d time.Duration) string {
	return d.Round(time.Second).String() + " ago"
}

// fleetList answers GET /api/fleet.
func (h *Handler) fleetList(w http.ResponseWriter, r *http.Request) {
	agents := h.fleet.Agents()
	now := time.Now()
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
		j.Health, j.HealthDetail = health(a, now)
		out.Agents = append(out.Agents, j)
	}
	writeJSONValue(w, out)
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

// writeJSONValue answers with v encoded by encoding/json.
func writeJSONValue(w http.ResponseWriter, v any) {
	js, err := json.Marshal(v)
	if err != nil {
		httpError(w, http.StatusInternalServerError, fmt.Errorf("encode answer: %w", err))
		return
	}
	writeJSON(w, append(js, '\n'))
}

// writeJSON answers with body, which is JSON.
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

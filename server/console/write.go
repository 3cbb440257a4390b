package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/grpcserver"
	"github.com/vigil-sensor/vigil/server/store"
)

// HeaderConsole is the header every POST of the console's script carries,
// set to "1". A page of another site cannot add it to a request to the
// console without a CORS preflight, which the console never grants.
const HeaderConsole = "Vigil-Console"

// MaxBodyBytes bounds the body of a POST.
const MaxBodyBytes = 64 << 10

// DefaultRequester names who asked, in action records and triage notes,
// when tokens are off and the request names nobody.
const DefaultRequester = "console"

// handle registers fn for pattern as the gRPC method fullMethod: POSTs
// must pass the same-origin checks, and every request is authorized
// against the server's policy as a call of fullMethod, its context then
// carrying the caller's identity.
func (h *Handler) handle(pattern, fullMethod string, fn http.HandlerFunc) {
	post := strings.HasPrefix(pattern, "POST ")
	h.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if post {
			if code, err := sameOrigin(r); err != nil {
				httpError(w, code, err)
				return
			}
		}
		ctx, err := h.policy.Authorize(r.Context(), fullMethod, bearer(r))
		if err != nil {
			grpcError(w, err)
			return
		}
		fn(w, r.WithContext(ctx))
	})
}

// bearer returns the token of the request's Authorization header, "" when
// there is none.
func bearer(r *http.Request) string {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

// sameOrigin refuses a POST that is not the console's own script's: one
// without a JSON body and the console header, or whose browser says it
// comes from another origin. It returns the status to answer with.
func sameOrigin(r *http.Request) (int, error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return http.StatusUnsupportedMediaType, errors.New("the body must be JSON (Content-Type: application/json)")
	}
	if r.Header.Get(HeaderConsole) != "1" {
		return http.StatusForbidden, fmt.Errorf("missing header %s: 1", HeaderConsole)
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return http.StatusForbidden, fmt.Errorf("cross-site request refused (Sec-Fetch-Site: %s)", site)
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		u, err := url.Parse(origin)
		if err != nil || u.Host != r.Host {
			return http.StatusForbidden, fmt.Errorf("cross-origin request refused (Origin %s, console %s)", origin, r.Host)
		}
	}
	return 0, nil
}

// readBody decodes the JSON body of r into m with protojson: field names
// as in the .proto (camelCase or snake_case), enums by name, unknown
// fields refused.
func readBody(r *http.Request, m proto.Message) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if len(b) > MaxBodyBytes {
		return fmt.Errorf("body is larger than %d bytes", MaxBodyBytes)
	}
	if err := protojson.Unmarshal(b, m); err != nil {
		return fmt.Errorf("body: %w", err)
	}
	return nil
}

// caller is who makes the request: the token's holder when tokens are
// checked, else what the request says, else DefaultRequester.
func caller(ctx context.Context, said string) string {
	if id, ok := grpcserver.CallerIdentity(ctx); ok && id.Name != "" {
		return id.Name
	}
	if said != "" {
		return said
	}
	return DefaultRequester
}

// sessionJSON is the answer of GET /api/session.
type sessionJSON struct {
	// Tokens is set when the API needs a bearer token.
	Tokens bool `json:"tokens"`
	// Name and Role are the request's token's, when it carried a valid one.
	Name string `json:"name,omitempty"`
	Role string `json:"role,omitempty"`
}

// session answers GET /api/session. It needs no token, so that the page
// can learn whether to ask for one, but an unknown token is refused.
func (h *Handler) session(w http.ResponseWriter, r *http.Request) {
	out := sessionJSON{Tokens: h.policy != nil && h.policy.Tokens != nil}
	if token := bearer(r); out.Tokens && token != "" {
		id, ok := h.policy.Tokens.Lookup(token)
		if !ok {
			grpcError(w, status.Error(codes.Unauthenticated, "unknown bearer token"))
			return
		}
		out.Name, out.Role = id.Name, id.Role.String()
	}
	writeJSONValue(w, out)
}

// incident reads the incident of the request's path, answering the error
// itself when there is none.
func (h *Handler) incident(w http.ResponseWriter, r *http.Request) (*vigilv1.Incident, bool) {
	inc, err := h.store.Get(r.Context(), r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		httpError(w, http.StatusNotFound, errors.New("no incident with this id"))
		return nil, false
	}
	if err != nil {
		h.log.Warn("console: get incident", "error", err)
		httpError(w, http.StatusInternalServerError, errors.New("cannot read the store"))
		return nil, false
	}
	return inc, true
}

// listActions answers GET /api/incidents/{id}/actions through
// ResponseService.ListActions.
func (h *Handler) listActions(w http.ResponseWriter, r *http.Request) {
	resp, err := h.responses.ListActions(r.Context(), &vigilv1.ListActionsRequest{IncidentId: r.PathValue("id"), PageSize: 100})
	if err != nil {
		grpcError(w, err)
		return
	}
	writeProto(w, resp)
}

// requestAction answers POST /api/incidents/{id}/actions: it runs one of
// the incident's recommended actions on the incident's host through
// ResponseService.RequestAction and answers with the agent's record,
// whatever its result (done, dry-run, refused, failed).
func (h *Handler) requestAction(w http.ResponseWriter, r *http.Request) {
	var req vigilv1.RequestActionRequest
	if err := readBody(r, &req); err != nil {
		httpError(w, http.StatusBadRequest, err)
		return
	}
	inc, ok := h.incident(w, r)
	if !ok {
		return
	}
	switch {
	case req.GetHostId() != "" && req.GetHostId() != inc.GetHostId():
		httpError(w, http.StatusBadRequest, fmt.Errorf("hostId %q: the action runs on the incident's host, %s", req.GetHostId(), inc.GetHostId()))
		return
	case req.GetIncidentId() != "" && req.GetIncidentId() != inc.GetId():
		httpError(w, http.StatusBadRequest, fmt.Errorf("incidentId %q is not the incident of the path", req.GetIncidentId()))
		return
	}
	var rec *vigilv1.RecommendedAction
	for _, a := range inc.GetRecommendedActions() {
		if a.GetAction() == req.GetAction() && a.GetTarget() == req.GetTarget() {
			rec = a
			break
		}
	}
	if rec == nil {
		httpError(w, http.StatusBadRequest, fmt.Errorf("%s %s is not one of the incident's recommended actions", req.GetAction(), req.GetTarget()))
		return
	}
	req.HostId, req.IncidentId = inc.GetHostId(), inc.GetId()
	if req.GetReason() == "" {
		req.Reason = rec.GetReason()
	}
	req.Requester = caller(r.Context(), req.GetRequester())
	out, err := h.responses.RequestAction(r.Context(), &req)
	if err != nil {
		grpcError(w, err)
		return
	}
	writeProto(w, out)
}

// triage answers POST /api/incidents/{id}/triage through
// IncidentService.UpdateIncident and answers with the incident as now
// stored.
func (h *Handler) triage(w http.ResponseWriter, r *http.Request) {
	var req vigilv1.UpdateIncidentRequest
	if err := readBody(r, &req); err != nil {
		httpError(w, http.StatusBadRequest, err)
		return
	}
	id := r.PathValue("id")
	if req.GetId() != "" && req.GetId() != id {
		httpError(w, http.StatusBadRequest, fmt.Errorf("id %q is not the incident of the path", req.GetId()))
		return
	}
	req.Id = id
	req.Author = caller(r.Context(), req.GetAuthor())
	inc, err := h.incidents.UpdateIncident(r.Context(), &req)
	if err != nil {
		grpcError(w, err)
		return
	}
	writeProto(w, inc)
}

// httpStatus maps a gRPC status code to the HTTP status that says the same.
func httpStatus(c codes.Code) int {
	switch c {
	case codes.InvalidArgument, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.Aborted, codes.FailedPrecondition:
		return http.StatusConflict
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unavailable, codes.Canceled:
		return http.StatusServiceUnavailable
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.Unimplemented:
		return http.StatusNotImplemented
	}
	return http.StatusInternalServerError
}

// grpcError answers with the HTTP form of a handler's status error.
func grpcError(w http.ResponseWriter, err error) {
	st := status.Convert(err)
	code := httpStatus(st.Code())
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="vigil"`)
	}
	httpError(w, code, errors.New(st.Message()))
}

// writeProto answers with m as protojson.
func writeProto(w http.ResponseWriter, m proto.Message) {
	js, err := protojson.Marshal(m)
	if err != nil {
		httpError(w, http.StatusInternalServerError, fmt.Errorf("encode answer: %w", err))
		return
	}
	writeJSON(w, append(js, '\n'))
}

// Package fleet keeps, in memory, what the server knows about each agent:
// its hello, whether it is connected, when it was last heard from, its
// latest heartbeat and the server rule set it runs on.
package fleet

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// Agent is the server's view of one agent, keyed by host id.
type Agent struct {
	// HostID identifies the host (its /etc/machine-id).
	HostID string
	// Hello is the hello of the agent's latest connection.
	Hello *vigilv1.Hello
	// Peer is the network address of the latest connection.
	Peer string
	// Connections counts the agent's open Connect streams (normally 0 or 1).
	Connections int
	// ConnectedAt is when the latest connection said hello.
	ConnectedAt time.Time
	// LastSeen is when the server last received anything from the agent.
	LastSeen time.Time
	// LastHeartbeat is the latest heartbeat, nil until the first one.
	LastHeartbeat *vigilv1.Heartbeat
	// PolicyVersion and PolicyHash identify the server rule set the agent
	// runs on, from its latest hello, heartbeat or applied RuleSetResult.
	PolicyVersion uint64
	// PolicyHash is the RuleSet.hash of PolicyVersion.
	PolicyHash string
	// LastRuleSetResult is the agent's answer to the latest rule set sent
	// to it, nil until the first.
	LastRuleSetResult *vigilv1.RuleSetResult

	// losses are the heartbeats' lost-event counts of about the last
	// LossWindow, oldest first (see RecentLosses).
	losses []lossSample
}

// LossWindow is how far back RecentLosses looks: an agent that lost
// events once, at start-up say, is losing events for this long after, not
// for as long as it runs.
const LossWindow = 5 * time.Minute

// lossSample is the lost-event counts of one heartbeat (per family, since
// the agent started) and when the server received it.
type lossSample struct {
	at   time.Time
	lost map[string]uint64
}

// RecentLosses returns, per event family, the events the agent lost
// within LossWindow before now: how much its counts grew since the
// heartbeat before the window (from zero when the agent started within
// it). Families that lost nothing are left out; nil when none lost any.
func (a Agent) RecentLosses(now time.Time) map[string]uint64 {
	if len(a.losses) == 0 {
		return nil
	}
	cutoff := now.Add(-LossWindow)
	base := a.losses[0]
	for _, s := range a.losses {
		if s.at.After(cutoff) {
			break
		}
		base = s
	}
	var out map[string]uint64
	for f, n := range a.losses[len(a.losses)-1].lost {
		if d := n - base.lost[f]; n > base.lost[f] {
			if out == nil {
				out = make(map[string]uint64)
			}
			out[f] = d
		}
	}
	return out
}

// addLosses records the lost-event counts of a heartbeat received at now.
// r.mu must be held.
func (a *Agent) addLosses(now time.Time, lost map[string]uint64) {
	restarted := len(a.losses) == 0
	if !restarted {
		for f, n := range a.losses[len(a.losses)-1].lost {
			if lost[f] < n { // counts since the agent started went down
				restarted = true
			}
		}
	}
	if restarted {
		// The counts start from zero when the agent starts, so what it
		// reports first was lost since then.
		a.losses = []lossSample{{at: now}}
	}
	a.losses = append(a.losses, lossSample{at: now, lost: maps.Clone(lost)})
	// Keep one sample at or before the window as the baseline.
	cutoff := now.Add(-LossWindow)
	for len(a.losses) > 2 && !a.losses[1].at.After(cutoff) {
		a.losses = a.losses[1:]
	}
}

// Registry holds the Agent of every host seen since the server started.
// It is safe for concurrent use. The zero value is not usable; call New.
type Registry struct {
	mu     sync.Mutex
	now    func() time.Time
	agents map[string]*Agent
}

// New returns an empty registry.
func New() *Registry {
	return &Registry{now: time.Now, agents: make(map[string]*Agent)}
}

// Connected records a Connect stream that said hello from peer.
func (r *Registry) Connected(hello *vigilv1.Hello, peer string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	a := r.agent(hello.GetHostId())
	a.Hello = proto.Clone(hello).(*vigilv1.Hello)
	a.Peer = peer
	a.Connections++
	a.ConnectedAt = now
	a.LastSeen = now
	a.PolicyVersion, a.PolicyHash = hello.GetPolicyVersion(), hello.GetPolicyHash()
}

// Disconnected records the end of one Connect stream of hostID.
func (r *Registry) Disconnected(hostID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if a, ok := r.agents[hostID]; ok && a.Connections > 0 {
		a.Connections--
	}
}

// Seen records that something arrived from hostID now.
func (r *Registry) Seen(hostID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.agent(hostID).LastSeen = r.now()
}

// Heartbeat keeps hb as the latest heartbeat of hostID.
func (r *Registry) Heartbeat(hostID string, hb *vigilv1.Heartbeat) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.agent(hostID)
	a.LastHeartbeat = proto.Clone(hb).(*vigilv1.Heartbeat)
	a.LastSeen = r.now()
	a.addLosses(a.LastSeen, hb.GetEventsLost())
	a.PolicyVersion, a.PolicyHash = hb.GetPolicyVersion(), hb.GetPolicyHash()
}

// RuleSetResult keeps res as hostID's answer to the latest rule set; an
// applied set is the one the agent now runs on.
func (r *Registry) RuleSetResult(hostID string, res *vigilv1.RuleSetResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.agent(hostID)
	a.LastRuleSetResult = proto.Clone(res).(*vigilv1.RuleSetResult)
	a.LastSeen = r.now()
	if res.GetApplied() {
		a.PolicyVersion, a.PolicyHash = res.GetVersion(), res.GetHash()
	}
}

// ConnectedCount returns how many agents have a Connect stream open.
func (r *Registry) ConnectedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, a := range r.agents {
		if a.Connections > 0 {
			n++
		}
	}
	return n
}

// Get returns a copy of the agent of hostID.
func (r *Registry) Get(hostID string) (Agent, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, ok := r.agents[hostID]
	if !ok {
		return Agent{}, false
	}
	return copyAgent(a), true
}

// Agents returns a copy of every agent, sorted by host id.
func (r *Registry) Agents() []Agent {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Agent, 0, len(r.agents))
	for _, a := range r.agents {
		out = append(out, copyAgent(a))
	}
	slices.SortFunc(out, func(a, b Agent) int { return strings.Compare(a.HostID, b.HostID) })
	return out
}

// agent returns the entry of hostID, creating it. r.mu must be held.
func (r *Registry) agent(hostID string) *Agent {
	a, ok := r.agents[hostID]
	if !ok {
		a = &Agent{HostID: hostID}
		r.agents[hostID] = a
	}
	return a
}

// copyAgent returns a deep copy, so callers cannot race with the registry.
func copyAgent(a *Agent) Agent {
	c := *a
	c.losses = slices.Clone(a.losses) // the maps are never changed once stored
	if a.Hello != nil {
		c.Hello = proto.Clone(a.Hello).(*vigilv1.Hello)
	}
	if a.LastHeartbeat != nil {
		c.LastHeartbeat = proto.Clone(a.LastHeartbeat).(*vigilv1.Heartbeat)
	}
	if a.LastRuleSetResult != nil {
		c.LastRuleSetResult = proto.Clone(a.LastRuleSetResult).(*vigilv1.RuleSetResult)
	}
	return c
}

// Proto returns the agent as the FleetService sends it.
func (a Agent) Proto() *vigilv1.Agent {
	out := &vigilv1.Agent{
		HostId:        a.HostID,
		Hostname:      a.Hello.GetHostname(),
		Kernel:        a.Hello.GetKernelRelease(),
		AgentVersion:  a.Hello.GetAgentVersion(),
		Capabilities:  a.Hello.GetCapabilities(),
		Connected:     a.Connections > 0,
		LastHeartbeat: a.LastHeartbeat,
		Peer:          a.Peer,

		PolicyVersion:     a.PolicyVersion,
		PolicyHash:        a.PolicyHash,
		LastRuleSetResult: a.LastRuleSetResult,
	}
	if !a.LastSeen.IsZero() {
		out.LastSeen = timestamppb.New(a.LastSeen)
	}
	if !a.ConnectedAt.IsZero() {
		out.ConnectedTime = timestamppb.New(a.ConnectedAt)
	}
	return out
}

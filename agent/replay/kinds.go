package replay

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
)

// kind is one event type the codec knows: its name on disk and how to turn
// its Go value into the JSON mirror and back.
type kind struct {
	// name is the value of the line's "type" member.
	name string
	// encode returns the mirror of ev, a *E or an E.
	encode func(ev any) (any, error)
	// decode reads the mirror from data and returns a *E.
	decode func(data []byte) (any, error)
}

// kinds by name, and by Go type (both E and *E).
var (
	kindsByName = map[string]*kind{}
	kindsByType = map[reflect.Type]*kind{}
)

func init() {
	register("fork", forkTo, forkFrom)
	register("exec", execTo, execFrom)
	register("exit", exitTo, exitFrom)
	register("file", fileTo, fileFrom)
	register("cred_change", credChangeTo, credChangeFrom)
	register("ptrace", ptraceTo, ptraceFrom)
	register("module", moduleTo, moduleFrom)
	register("memfd_create", memfdCreateTo, memfdCreateFrom)
	register("mount", mountTo, mountFrom)
	register("bpf_prog_load", bpfProgLoadTo, bpfProgLoadFrom)
	register("kill", killTo, killFrom)
	register("login", loginTo, loginFrom)
	register("tcp_connect", tcpConnectTo, tcpConnectFrom)
	register("tcp_accept", tcpAcceptTo, tcpAcceptFrom)
	register("tcp_close", tcpCloseTo, tcpCloseFrom)
	register("udp_flow", udpFlowTo, udpFlowFrom)
	register("dns", dnsTo, dnsFrom)
}

// register adds event type E, written as name through the mirror J.
func register[E, J any](name string, to func(*E) *J, from func(*J) *E) {
	k := &kind{
		name: name,
		encode: func(ev any) (any, error) {
			switch e := ev.(type) {
			case *E:
				if e == nil {
					return nil, fmt.Errorf("nil %T", e)
				}
				return to(e), nil
			case E:
				return to(&e), nil
			}
			panic(fmt.Sprintf("replay: %s codec given %T", name, ev))
		},
		decode: func(data []byte) (any, error) {
			j := new(J)
			if err := unmarshalStrict(data, j); err != nil {
				return nil, err
			}
			return from(j), nil
		},
	}
	if kindsByName[name] != nil {
		panic("replay: event type " + name + " registered twice")
	}
	kindsByName[name] = k
	t := reflect.TypeFor[E]()
	kindsByType[t] = k
	kindsByType[reflect.PointerTo(t)] = k
}

// Types returns the names of the event types, sorted: the values the
// "type" member of a line may take.
func Types() []string {
	return slices.Sorted(maps.Keys(kindsByName))
}

// unmarshalStrict decodes one JSON value from data into v, refusing
// members v has no field for (a misspelt name in a hand-written recording
// would otherwise read back silently as zero) and anything after the value.
func unmarshalStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the JSON object")
	}
	return nil
}

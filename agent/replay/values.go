package replay

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"time"

	"github.com/vigil-sensor/vigil/agent/event"
)

// This file holds the JSON forms of the values inside events that are not
// plain numbers, strings or booleans: times, enums and fixed-size arrays.

// timeLayout is RFC 3339 with all nine digits of the fraction, so that every
// time in a recording has the same width and lines sort by time as text.
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// stamp is a wall-clock time, written in UTC as RFC 3339 with nanoseconds.
// Any RFC 3339 offset is accepted on reading; the time is read back in UTC.
type stamp time.Time

// IsZero lets omitzero leave out unset times.
func (s stamp) IsZero() bool { return time.Time(s).IsZero() }

// MarshalJSON writes the time as a quoted RFC 3339 string in UTC.
func (s stamp) MarshalJSON() ([]byte, error) {
	t := time.Time(s).UTC()
	if y := t.Year(); y < 0 || y > 9999 {
		return nil, fmt.Errorf("time %v: year outside [0,9999]", t)
	}
	b := make([]byte, 0, len(timeLayout)+2)
	b = append(b, '"')
	b = t.AppendFormat(b, timeLayout)
	return append(b, '"'), nil
}

// UnmarshalJSON reads a quoted RFC 3339 time.
func (s *stamp) UnmarshalJSON(b []byte) error {
	var text string
	if err := json.Unmarshal(b, &text); err != nil {
		return fmt.Errorf("time: want an RFC 3339 string, got %s", b)
	}
	t, err := time.Parse(time.RFC3339Nano, text)
	if err != nil {
		return fmt.Errorf("time %q: not RFC 3339", text)
	}
	*s = stamp(t.UTC())
	return nil
}

// enumJSON writes name when the value has one and the bare number when it
// does not, so that every value round-trips.
func enumJSON(name string, named bool, n int64) ([]byte, error) {
	if named {
		return json.Marshal(name)
	}
	return strconv.AppendInt(nil, n, 10), nil
}

// enumFromJSON reads either a name, which lookup must know, or a number in
// [lo, hi]. what names the enum in errors.
func enumFromJSON(b []byte, what string, lo, hi int64, lookup func(string) (int64, bool)) (int64, error) {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var name string
		if err := json.Unmarshal(b, &name); err != nil {
			return 0, fmt.Errorf("%s: %w", what, err)
		}
		n, ok := lookup(name)
		if !ok {
			return 0, fmt.Errorf("unknown %s %q", what, name)
		}
		return n, nil
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%s: want a name or an integer in [%d,%d], got %s", what, lo, hi, b)
	}
	return n, nil
}

// direction is event.Direction, written as "outbound" or "inbound".
type direction event.Direction

// MarshalJSON writes the direction's name, or its number if it has none.
func (d direction) MarshalJSON() ([]byte, error) {
	v := event.Direction(d)
	return enumJSON(v.String(), v == event.Outbound || v == event.Inbound, int64(v))
}

// UnmarshalJSON reads a direction's name or number.
func (d *direction) UnmarshalJSON(b []byte) error {
	n, err := enumFromJSON(b, "direction", 0, math.MaxUint8, func(name string) (int64, bool) {
		switch name {
		case event.Outbound.String():
			return int64(event.Outbound), true
		case event.Inbound.String():
			return int64(event.Inbound), true
		}
		return 0, false
	})
	*d = direction(n)
	return err
}

// loginOps are the LoginOp values that have a name.
var loginOps = []event.LoginOp{
	event.LoginAuthenticate, event.LoginAccount, event.LoginOpenSession, event.LoginCloseSession,
}

// loginOp is event.LoginOp, written as the libpam function's name.
type loginOp event.LoginOp

// MarshalJSON writes the operation's name, or its number if it has none.
func (op loginOp) MarshalJSON() ([]byte, error) {
	v := event.LoginOp(op)
	for _, known := range loginOps {
		if v == known {
			return enumJSON(v.String(), true, 0)
		}
	}
	return enumJSON("", false, int64(v))
}

// UnmarshalJSON reads an operation's name or number.
func (op *loginOp) UnmarshalJSON(b []byte) error {
	n, err := enumFromJSON(b, "login op", 0, math.MaxUint8, func(name string) (int64, bool) {
		for _, known := range loginOps {
			if name == known.String() {
				return int64(known), true
			}
		}
		return 0, false
	})
	*op = loginOp(n)
	return err
}

// pamResult is event.PAMResult, written as the libpam name (PAM_AUTH_ERR).
type pamResult event.PAMResult

// named reports whether r has a libpam name.
func (r pamResult) named() bool { return r >= 0 && r <= pamResult(event.PAMIncomplete) }

// MarshalJSON writes the code's name, or its number if it has none.
func (r pamResult) MarshalJSON() ([]byte, error) {
	return enumJSON(event.PAMResult(r).String(), r.named(), int64(r))
}

// UnmarshalJSON reads a code's name or number.
func (r *pamResult) UnmarshalJSON(b []byte) error {
	n, err := enumFromJSON(b, "PAM result", math.MinInt32, math.MaxInt32, func(name string) (int64, bool) {
		for c := pamResult(0); c.named(); c++ {
			if name == event.PAMResult(c).String() {
				return int64(c), true
			}
		}
		return 0, false
	})
	*r = pamResult(n)
	return err
}

// args3 is the three syscall arguments of a CredChange; reading insists on
// exactly three, where a plain array would drop or zero-fill silently.
type args3 [3]int64

// UnmarshalJSON reads an array of exactly three integers.
func (a *args3) UnmarshalJSON(b []byte) error {
	var s []int64
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("args: %w", err)
	}
	if len(s) != len(a) {
		return errors.New("args: want exactly 3 integers")
	}
	copy(a[:], s)
	return nil
}

// addrPort is an address and port in netip's text form ("192.0.2.1:53",
// "[2001:db8::1]:443"); the unset address is left out.
type addrPort netip.AddrPort

// MarshalText writes the address and port.
func (a addrPort) MarshalText() ([]byte, error) { return netip.AddrPort(a).MarshalText() }

// UnmarshalText reads an address and port.
func (a *addrPort) UnmarshalText(text []byte) error {
	if err := (*netip.AddrPort)(a).UnmarshalText(text); err != nil {
		return fmt.Errorf("address %q: want IP:port", text)
	}
	return nil
}

// addrs are IP addresses in netip's text form.
type addrs []netip.Addr

// UnmarshalJSON reads an array of IP addresses.
func (a *addrs) UnmarshalJSON(b []byte) error {
	var texts []string
	if err := json.Unmarshal(b, &texts); err != nil {
		return fmt.Errorf("answers: want an array of strings, got %s", b)
	}
	if texts == nil {
		*a = nil
		return nil
	}
	*a = make(addrs, len(texts))
	for i, text := range texts {
		if err := (*a)[i].UnmarshalText([]byte(text)); err != nil {
			return fmt.Errorf("address %q: want an IP address", text)
		}
	}
	return nil
}

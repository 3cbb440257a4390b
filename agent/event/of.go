package event

import "time"

// Header returns the process and time of any event of this package, given
// as a pointer; ok is false for other values.
func Header(ev any) (p *Process, t time.Time, ok bool) {
	switch e := ev.(type) {
	case *Fork:
		return &e.Process, e.Time, true
	case *Exec:
		return &e.Process, e.Time, true
	case *Exit:
		return &e.Process, e.Time, true
	case *File:
		return &e.Process, e.Time, true
	case *CredChange:
		return &e.Process, e.Time, true
	case *Ptrace:
		return &e.Process, e.Time, true
	case *Module:
		return &e.Process, e.Time, true
	case *MemfdCreate:
		return &e.Process, e.Time, true
	case *Mount:
		return &e.Process, e.Time, true
	case *BPFProgLoad:
		return &e.Process, e.Time, true
	case *Kill:
		return &e.Process, e.Time, true
	case *Login:
		return &e.Process, e.Time, true
	case *TCPConnect:
		return &e.Process, e.Time, true
	case *TCPAccept:
		return &e.Process, e.Time, true
	case *TCPClose:
		return &e.Process, e.Time, true
	case *UDPFlow:
		return &e.Process, e.Time, true
	case *DNS:
		return &e.Process, e.Time, true
	}
	return nil, time.Time{}, false
}

package event

import (
	"testing"
	"time"
)

func TestHeaderOfEveryEvent(t *testing.T) {
	at := time.Unix(1700000000, 5)
	p := Process{PID: 42, Comm: "x"}
	events := []any{
		&Fork{Time: at, Process: p}, &Exec{Time: at, Process: p}, &Exit{Time: at, Process: p},
		&File{Time: at, Process: p}, &CredChange{Time: at, Process: p}, &Ptrace{Time: at, Process: p},
		&Module{Time: at, Process: p}, &MemfdCreate{Time: at, Process: p}, &Mount{Time: at, Process: p},
		&BPFProgLoad{Time: at, Process: p}, &Kill{Time: at, Process: p}, &Login{Time: at, Process: p},
		&TCPConnect{Time: at, Process: p}, &TCPAccept{Time: at, Process: p}, &TCPClose{Time: at, Process: p},
		&UDPFlow{Time: at, Process: p}, &DNS{Time: at, Process: p},
	}
	for _, ev := range events {
		got, when, ok := Header(ev)
		if !ok || *got != p || !when.Equal(at) {
			t.Errorf("Header(%T) = %+v, %v, %v", ev, got, when, ok)
		}
	}
	if _, _, ok := Header(Exec{}); ok {
		t.Error("Header of a value (not a pointer) succeeded")
	}
}

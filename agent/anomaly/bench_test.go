package anomaly

import (
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/agent/event"
)

func BenchmarkBaselineObserveFile(b *testing.B) {
	bl := NewBaseline(BaselineOptions{LearningPeriod: time.Second})
	p := event.Process{PID: nginxEntry.PID}
	evs := make([]*event.File, 256)
	for i := range evs {
		evs[i] = &event.File{Process: p, Path: "/proc/" + strconv.Itoa(i) + "/status"}
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		ev := evs[i%len(evs)]
		ev.Time = t0.Add(time.Duration(i) * time.Millisecond)
		bl.Observe(ev, nginxEntry, nil)
	}
}

func BenchmarkFlowsObserveConnect(b *testing.B) {
	f := NewFlows(FlowOptions{})
	ev := &event.TCPConnect{Process: event.Process{PID: nmap.PID, StartTime: nmap.StartTime}}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		ev.Time = t0.Add(time.Duration(i) * time.Millisecond)
		ev.Remote = netip.AddrPortFrom(netip.MustParseAddr("10.0.0.9"), uint16(i%1000))
		f.Observe(ev, nmap)
	}
}

package network

import (
	"reflect"
	"testing"
	"unsafe"

	"github.com/vigil-sensor/vigil/agent/sensor"
	"github.com/vigil-sensor/vigil/bpf"
)

// tcpRecord builds the raw bytes of a TCP record as the kernel writes them.
func tcpRecord(typ bpf.NetNetEventType) []byte {
	var rec bpf.NetTcpEvent
	rec.Hdr.Type = uint32(typ)
	rec.Hdr.KtimeBoot = 5_000_000_000
	rec.Proc.Pid, rec.Proc.Tid, rec.Proc.Ppid = 1234, 1235, 1
	rec.Proc.Uid, rec.Proc.Gid, rec.Proc.Euid, rec.Proc.Loginuid, rec.Proc.Sessionid = 1000, 1001, 1002, 1003, 7
	rec.Proc.StartBoottime, rec.Proc.CgroupId = 4_000_000_000, 77
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&rec.Proc.Comm[0])), len(rec.Proc.Comm)), "loadgen")
	rec.Tuple.Family, rec.Tuple.Proto = afInet, 6
	rec.Tuple.Laddr = [16]uint8{127, 0, 0, 1}
	rec.Tuple.Raddr = [16]uint8{127, 0, 0, 1}
	rec.Tuple.Lport, rec.Tuple.Rport = 40000, 8080
	rec.Cookie, rec.EstablishedBoot = 99, 4_900_000_000
	rec.BytesAcked, rec.BytesReceived = 3000, 5000
	rec.Flags = uint32(bpf.NetNetFlagsNET_OUTBOUND)
	return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&rec)), unsafe.Sizeof(rec))...)
}

// BenchmarkDecodeTCP decodes the four records of one connection (connect,
// accept, two closes): the agent's work per connection of a connect storm.
func BenchmarkDecodeTCP(b *testing.B) {
	recs := [][]byte{
		tcpRecord(bpf.NetNetEventTypeEVENT_TCP_CONNECT),
		tcpRecord(bpf.NetNetEventTypeEVENT_TCP_ACCEPT),
		tcpRecord(bpf.NetNetEventTypeEVENT_TCP_CLOSE),
		tcpRecord(bpf.NetNetEventTypeEVENT_TCP_CLOSE),
	}
	var d Decoder
	b.ReportAllocs()
	for b.Loop() {
		for _, r := range recs {
			if _, err := d.Decode(r); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// TestProcessOf checks that the decoder's comm-reusing conversion gives what
// sensor.ProcessOf gives, for a new comm and for a repeated one.
func TestProcessOf(t *testing.T) {
	var rec bpf.NetTcpEvent
	if err := sensor.Into(&rec, tcpRecord(bpf.NetNetEventTypeEVENT_TCP_CLOSE)); err != nil {
		t.Fatal(err)
	}
	want := sensor.ProcessOf(bpf.ProcessProcessInfo(rec.Proc))
	var d Decoder
	for i := range 2 {
		if got := d.processOf(&rec.Proc); !reflect.DeepEqual(got, want) {
			t.Errorf("processOf (call %d) = %+v, want %+v", i+1, got, want)
		}
	}
	rec.Proc.Comm = [16]int8{'s', 'h'}
	if got := d.processOf(&rec.Proc); got.Comm != "sh" {
		t.Errorf("processOf after a new comm: comm %q, want sh", got.Comm)
	}
}

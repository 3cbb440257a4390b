package replay

import (
	"bytes"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/agent/event"
)

// gen hands out distinct non-zero values, so that a field written under
// one name and read back into another does not go unnoticed.
type gen struct{ n int }

func (g *gen) next() int           { g.n++; return 1000 + g.n }
func (g *gen) u16() uint16         { return uint16(g.next()) }
func (g *gen) u32() uint32         { return uint32(g.next()) }
func (g *gen) i32() int32          { return -int32(g.next()) }
func (g *gen) i64() int64          { return -int64(g.next()) << 33 }
func (g *gen) u64() uint64         { return 1<<60 + uint64(g.next()) } // beyond float64's exact integers
func (g *gen) str(p string) string { return fmt.Sprintf("%s-%d", p, g.next()) }

func (g *gen) time() time.Time {
	return time.Date(2025, 3, 1, 12, 0, g.next(), 123456789, time.UTC)
}

func (g *gen) addrPort(v6 bool) netip.AddrPort {
	n := g.next()
	if v6 {
		return netip.AddrPortFrom(netip.MustParseAddr(fmt.Sprintf("2001:db8::%x", n)), uint16(n))
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(n)}), uint16(n))
}

func (g *gen) process() event.Process {
	return event.Process{
		PID: g.u32(), TID: g.u32(), PPID: g.u32(), UID: g.u32(), GID: g.u32(), EUID: g.u32(),
		LoginUID: g.u32(), SessionID: g.u32(), StartTime: g.u64(), CgroupID: g.u64(), Comm: g.str("comm"),
	}
}

func (g *gen) creds() event.Creds {
	return event.Creds{
		UID: g.u32(), EUID: g.u32(), SUID: g.u32(), FSUID: g.u32(),
		GID: g.u32(), EGID: g.u32(), SGID: g.u32(), FSGID: g.u32(),
		CapEffective: g.u64(), CapPermitted: g.u64(),
	}
}

// exec is the Exec the golden line encodes.
func exec() *event.Exec {
	return &event.Exec{
		Time: time.Date(2025, 3, 1, 12, 0, 0, 1, time.UTC),
		Process: event.Process{
			PID: 4242, TID: 4243, PPID: 1, UID: 1000, GID: 1001, EUID: 1002,
			LoginUID: 1003, SessionID: 7, StartTime: 123456789012, CgroupID: 1 << 60, Comm: "bash",
		},
		Filename: "./run.sh", Exe: "/tmp/a&b/<run>", Cwd: "/tmp/a&b", Args: []string{"run.sh", "-x", "é\t\"q\""},
		ArgsTruncated: true, ExeTruncated: true, CwdTruncated: true, ExeDeleted: true, ExeMemfd: true,
		Killed: true,
	}
}

const execGolden = `{"type":"exec","event":{"time":"2025-03-01T12:00:00.000000001Z",` +
	`"process":{"pid":4242,"tid":4243,"ppid":1,"uid":1000,"gid":1001,"euid":1002,"login_uid":1003,` +
	`"session_id":7,"start_time_ns":123456789012,"cgroup_id":1152921504606846976,"comm":"bash"},` +
	`"filename":"./run.sh","exe":"/tmp/a&b/<run>","cwd":"/tmp/a&b","args":["run.sh","-x","é\t\"q\""],` +
	`"args_truncated":true,"exe_truncated":true,"cwd_truncated":true,"exe_deleted":true,"exe_memfd":true,"killed":true}}` + "\n"

// everyType returns one event of every type, every field set to a distinct
// non-zero value.
func everyType() []any {
	g := &gen{}
	return []any{
		&event.Fork{Time: g.time(), Process: g.process()},
		exec(),
		&event.Exit{Time: g.time(), Process: g.process(), ExitCode: g.i32()},
		&event.File{
			Time: g.time(), Process: g.process(), Op: event.FileRename, Syscall: g.str("renameat2"),
			Ret: g.i64(), Path: g.str("/etc/a"), Path2: g.str("/etc/b"), Flags: g.u64(), Mode: g.u32(),
			UID: g.u32(), GID: g.u32(), Read: true, Write: true, Create: true, Truncate: true,
			PathTruncated: true, Path2Truncated: true, PathUnresolved: true,
		},
		&event.CredChange{
			Time: g.time(), Process: g.process(), Syscall: g.str("setresuid"), Ret: g.i64(),
			Args: [3]int64{g.i64(), g.i64(), g.i64()}, Old: g.creds(), New: g.creds(),
		},
		&event.Ptrace{Time: g.time(), Process: g.process(), Ret: g.i64(), Request: event.PtraceSeize, TargetPID: g.u32()},
		&event.Module{
			Time: g.time(), Process: g.process(), Syscall: g.str("delete_module"), Ret: g.i64(),
			Unload: true, Name: g.str("mod"), Path: g.str("/lib/mod.ko"), Flags: g.u64(),
		},
		&event.MemfdCreate{Time: g.time(), Process: g.process(), Ret: g.i64(), Name: g.str("memfd"), Flags: g.u32()},
		&event.Mount{
			Time: g.time(), Process: g.process(), Syscall: g.str("mount"), Ret: g.i64(), Unmount: true,
			Source: g.str("/dev/sda"), Target: g.str("/mnt"), FSType: g.str("ext4"), Flags: g.u64(),
			TargetTruncated: true,
		},
		&event.BPFProgLoad{
			Time: g.time(), Process: g.process(), Ret: g.i64(), ProgType: g.u32(), InsnCount: g.u32(),
			ProgName: g.str("prog"),
		},
		&event.Kill{
			Time: g.time(), Process: g.process(), Syscall: g.str("tgkill"), Ret: g.i64(),
			TargetPID: g.i32(), TargetTID: g.i32(), Signal: g.i32(),
		},
		&event.Login{
			Time: g.time(), Process: g.process(), Op: event.LoginOpenSession, Result: event.PAMAuthErr,
			Service: g.str("sshd"), User: g.str("alice"), RemoteUser: g.str("bob"), RemoteHost: g.str("host"),
			TTY: g.str("pts"), SessionID: g.u32(), Duration: time.Duration(g.i64()),
			Truncated: true, LayoutMismatch: true, NoHandle: true,
		},
		&event.TCPConnect{
			Time: g.time(), Process: g.process(), Local: g.addrPort(false), Remote: g.addrPort(true),
			Cookie: g.u64(), Failed: true,
		},
		&event.TCPAccept{
			Time: g.time(), Process: g.process(), Local: g.addrPort(true), Remote: g.addrPort(false),
			Cookie: g.u64(), Established: g.time(),
		},
		&event.TCPClose{
			Time: g.time(), Process: g.process(), NoProcess: true, Direction: event.Inbound,
			Local: g.addrPort(false), Remote: g.addrPort(false), Cookie: g.u64(), Established: g.time(),
			BytesSent: g.u64(), BytesReceived: g.u64(),
		},
		&event.UDPFlow{
			Time: g.time(), Process: g.process(), Direction: event.Outbound,
			Local: g.addrPort(true), Remote: g.addrPort(true),
		},
		&event.DNS{
			Time: g.time(), Process: g.process(), NoProcess: true, Direction: event.Inbound,
			Local: g.addrPort(false), Remote: g.addrPort(true), ID: g.u16(), Response: true, RCode: 3,
			Name: g.str("example.com"), QType: 28,
			Answers: []netip.Addr{g.addrPort(false).Addr(), g.addrPort(true).Addr()},
			CNAMEs:  []string{g.str("a.example.com"), g.str("b.example.com")}, Truncated: true,
		},
	}
}

// checkFilled fails when a field of ev is zero, or when two of its
// non-boolean fields hold the same value: the round trip would then not
// notice a field written under one name and read back into another.
func checkFilled(t *testing.T, ev any) {
	t.Helper()
	seen := map[string]string{}
	var walk func(v reflect.Value, path string)
	walk = func(v reflect.Value, path string) {
		if v.IsZero() {
			t.Errorf("%s is zero", path)
			return
		}
		switch v.Interface().(type) {
		case time.Time, netip.Addr, netip.AddrPort:
		default:
			switch v.Kind() {
			case reflect.Struct:
				for i := range v.NumField() {
					walk(v.Field(i), path+"."+v.Type().Field(i).Name)
				}
				return
			case reflect.Slice, reflect.Array:
				for i := range v.Len() {
					walk(v.Index(i), fmt.Sprintf("%s[%d]", path, i))
				}
				return
			case reflect.Bool:
				return
			}
		}
		key := fmt.Sprint(v.Interface())
		if other, dup := seen[key]; dup {
			t.Errorf("%s and %s both hold %s", other, path, key)
		}
		seen[key] = path
	}
	v := reflect.ValueOf(ev).Elem()
	walk(v, v.Type().Name())
}

func TestEveryTypeRoundTrips(t *testing.T) {
	events := everyType()
	names := map[string]bool{}
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, ev := range events {
		checkFilled(t, ev)
		names[kindsByType[reflect.TypeOf(ev)].name] = true
		if err := w.Write(ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if len(names) != len(kindsByName) {
		t.Errorf("the test covers %d event types, the codec knows %d", len(names), len(kindsByName))
	}

	r := NewReader(&buf)
	for i, want := range events {
		got, err := r.Next()
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("event %d:\n got %#v\nwant %#v", i, got, want)
		}
	}
	if ev, err := r.Next(); err != io.EOF {
		t.Errorf("after the last event: %v, %v; want io.EOF", ev, err)
	}
}

func TestExecGolden(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if err := w.Write(exec()); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if buf.String() != execGolden {
		t.Errorf("exec line:\n got %s\nwant %s", buf.String(), execGolden)
	}
	ev, err := NewReader(strings.NewReader(execGolden)).Next()
	if err != nil || !reflect.DeepEqual(ev, exec()) {
		t.Errorf("golden line read back as %#v, %v", ev, err)
	}
}

// TestEveryEventTypeIsKnown keeps the codec in step with agent/event: every
// exported struct there with a Time field is an event and must be known.
func TestEveryEventTypeIsKnown(t *testing.T) {
	files, err := filepath.Glob("../event/*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("agent/event sources: %v, %v", files, err)
	}
	var events []string
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, spec := range gd.Specs {
				ts := spec.(*ast.TypeSpec)
				st, ok := ts.Type.(*ast.StructType)
				if !ok || !ts.Name.IsExported() {
					continue
				}
				for _, field := range st.Fields.List {
					if len(field.Names) == 1 && field.Names[0].Name == "Time" {
						events = append(events, ts.Name.Name)
					}
				}
			}
		}
	}
	var known []string
	for typ := range kindsByType {
		if typ.Kind() == reflect.Struct {
			known = append(known, typ.Name())
		}
	}
	slices.Sort(events)
	slices.Sort(known)
	if !slices.Equal(events, known) {
		t.Errorf("agent/event has events %v\nthe codec knows %v", events, known)
	}
}

func TestTypes(t *testing.T) {
	want := []string{
		"bpf_prog_load", "cred_change", "dns", "exec", "exit", "file", "fork", "kill", "login",
		"memfd_create", "module", "mount", "ptrace", "tcp_accept", "tcp_close", "tcp_connect", "udp_flow",
	}
	if got := Types(); !slices.Equal(got, want) {
		t.Errorf("Types() = %q", got)
	}
}

func TestEnumsWithoutNamesRoundTrip(t *testing.T) {
	events := []any{
		&event.Login{Op: 200, Result: -5},
		&event.Login{Op: event.LoginAuthenticate, Result: 99},
		&event.Login{}, // PAM_SUCCESS is written even though it is zero
		&event.TCPClose{Direction: 9},
		&event.File{Op: "splice"},
	}
	want := `{"type":"login","event":{"op":200,"result":-5}}
{"type":"login","event":{"op":"pam_authenticate","result":99}}
{"type":"login","event":{"result":"PAM_SUCCESS"}}
{"type":"tcp_close","event":{"direction":9}}
{"type":"file","event":{"op":"splice"}}
`
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, ev := range events {
		if err := w.Write(ev); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	if buf.String() != want {
		t.Errorf("got\n%swant\n%s", buf.String(), want)
	}
	r := NewReader(&buf)
	for _, want := range events {
		got, err := r.Next()
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("read %#v, %v; want %#v", got, err, want)
		}
	}
}

func TestReaderAcceptsHandWrittenLines(t *testing.T) {
	in := "# a recording\n\n   \n  # indented comment\r\n" +
		`{"event":{"time":"2025-03-01T14:00:00.5+02:00","direction":"outbound","local":"[::1]:53","answers":["10.0.0.1"]},"type":"dns"}` + "\r\n" +
		`{"type":"login","event":{"op":"pam_close_session","result":"PAM_AUTH_ERR","time":"2025-03-01T12:00:00Z"}}`
	r := NewReader(strings.NewReader(in))
	got, err := r.Next()
	want := &event.DNS{
		Time:      time.Date(2025, 3, 1, 12, 0, 0, 5e8, time.UTC),
		Direction: event.Outbound,
		Local:     netip.MustParseAddrPort("[::1]:53"),
		Answers:   []netip.Addr{netip.MustParseAddr("10.0.0.1")},
	}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("dns line: %#v, %v", got, err)
	}
	got, err = r.Next()
	wantLogin := &event.Login{
		Time: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC),
		Op:   event.LoginCloseSession, Result: event.PAMAuthErr,
	}
	if err != nil || !reflect.DeepEqual(got, wantLogin) {
		t.Errorf("login line (no final newline): %#v, %v", got, err)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Errorf("at the end: %v", err)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Errorf("after the end: %v", err)
	}
}

func TestReaderErrors(t *testing.T) {
	for _, tc := range []struct{ line, want string }{
		{`{"type":"exec","event":{}`, `replay: line 2: bad JSON: unexpected end of JSON input`},
		{`{"type":"exec"} x`, `replay: line 2: bad JSON: invalid character 'x' after top-level value`},
		{`[1,2]`, `replay: line 2: not a JSON object`},
		{`null`, `replay: line 2: not a JSON object`},
		{`{"event":{}}`, `replay: line 2: missing "type"`},
		{`{"type":7,"event":{}}`, `replay: line 2: "type" is not a string`},
		{`{"type":"frok","event":{}}`, `replay: line 2: unknown event type "frok"`},
		{`{"type":"exec"}`, `replay: line 2: exec: missing "event"`},
		{`{"type":"exec","event":null}`, `replay: line 2: exec: missing "event"`},
		{`{"type":"exec","event":[]}`, `replay: line 2: exec: "event" is not an object`},
		{`{"type":"exec","event":{},"extra":1}`, `replay: line 2: unknown member "extra"`},
		{`{"type":"exec","event":{"process":{"pdi":1}}}`, `replay: line 2: exec event: json: unknown field "pdi"`},
		{`{"type":"exec","event":{"time":"yesterday"}}`, `replay: line 2: exec event: time "yesterday": not RFC 3339`},
		{`{"type":"exec","event":{"time":17}}`, `replay: line 2: exec event: time: want an RFC 3339 string, got 17`},
		{`{"type":"udp_flow","event":{"direction":"sideways"}}`, `replay: line 2: udp_flow event: unknown direction "sideways"`},
		{`{"type":"udp_flow","event":{"direction":256}}`, `replay: line 2: udp_flow event: direction: want a name or an integer in [0,255], got 256`},
		{`{"type":"login","event":{"result":"PAM_OOPS"}}`, `replay: line 2: login event: unknown PAM result "PAM_OOPS"`},
		{`{"type":"login","event":{"op":"pam_setcred"}}`, `replay: line 2: login event: unknown login op "pam_setcred"`},
		{`{"type":"cred_change","event":{"args":[1,2]}}`, `replay: line 2: cred_change event: args: want exactly 3 integers`},
		{`{"type":"tcp_connect","event":{"local":"example.com:80"}}`, `replay: line 2: tcp_connect event: address "example.com:80": want IP:port`},
		{`{"type":"dns","event":{"answers":["10.0.0.1","::1%eth0","x"]}}`, `replay: line 2: dns event: address "x": want an IP address`},
		{`{"type":"dns","event":{"answers":"10.0.0.1"}}`, `replay: line 2: dns event: answers: want an array of strings, got "10.0.0.1"`},
	} {
		r := NewReader(strings.NewReader("# header\n" + tc.line + "\n" + `{"type":"fork","event":{}}` + "\n"))
		ev, err := r.Next()
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s:\n got %v, %v\nwant %s", tc.line, ev, err, tc.want)
			continue
		}
		if le, ok := errors.AsType[*LineError](err); !ok || le.Line != 2 {
			t.Errorf("%s: %#v is not a *LineError for line 2", tc.line, err)
		}
		// The bad line is skipped; reading goes on.
		if ev, err := r.Next(); err != nil || !reflect.DeepEqual(ev, &event.Fork{}) {
			t.Errorf("%s: the next line read as %#v, %v", tc.line, ev, err)
		}
	}

	_, err := NewReader(strings.NewReader(`{"type":"frok","event":{}}`)).Next()
	if !errors.Is(err, ErrUnknownType) {
		t.Errorf("unknown type: %v is not ErrUnknownType", err)
	}
}

func TestLineLength(t *testing.T) {
	// An exec whose line is exactly MaxLineSize bytes, without the newline.
	frame := len(`{"type":"exec","event":{"filename":""}}`)
	ev := &event.Exec{Filename: strings.Repeat("x", MaxLineSize-frame)}
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if err := w.Write(ev); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	if buf.Len() != MaxLineSize+1 {
		t.Fatalf("line of %d bytes, want %d", buf.Len(), MaxLineSize+1)
	}
	got, err := NewReader(bytes.NewReader(buf.Bytes())).Next()
	if err != nil || !reflect.DeepEqual(got, ev) {
		t.Errorf("line of MaxLineSize bytes: %v", err)
	}
	// The same without the newline, at the end of the input.
	if _, err := NewReader(bytes.NewReader(buf.Bytes()[:MaxLineSize])).Next(); err != nil {
		t.Errorf("last line of MaxLineSize bytes: %v", err)
	}

	// One byte more: the Writer refuses it, the Reader too.
	ev.Filename += "x"
	err = w.Write(ev)
	if want := "replay: write exec event: line longer than 1 MiB"; err == nil || err.Error() != want {
		t.Errorf("writing a long line: %v; want %s", err, want)
	}
	if !errors.Is(err, ErrLineTooLong) {
		t.Errorf("%v is not ErrLineTooLong", err)
	}
	long := "# comment\n" + strings.Repeat("#", MaxLineSize+1)
	for _, in := range []string{long, long + "\n", long + strings.Repeat("#", 1<<20) + "\n{}\n"} {
		r := NewReader(strings.NewReader(in))
		_, err = r.Next()
		if want := "replay: line 2: line longer than 1 MiB"; err == nil || err.Error() != want {
			t.Errorf("reading a long line: %v; want %s", err, want)
		}
		if _, err2 := r.Next(); err2 != err {
			t.Errorf("after a long line: %v; want the same error again", err2)
		}
	}
}

func TestWriterErrors(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, tc := range []struct {
		ev   any
		want string
	}{
		{struct{ X int }{}, "replay: write struct { X int }: unknown event type"},
		{&event.Process{}, "replay: write *event.Process: unknown event type"},
		{nil, "replay: write <nil>: unknown event type"},
		{(*event.Exec)(nil), "replay: write exec event: nil *event.Exec"},
		{&event.Fork{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
			"replay: encode fork event: json: error calling MarshalJSON for type replay.stamp: time 10000-01-01 00:00:00 +0000 UTC: year outside [0,9999]"},
	} {
		if err := w.Write(tc.ev); err == nil || err.Error() != tc.want {
			t.Errorf("Write(%#v) = %v; want %s", tc.ev, err, tc.want)
		}
	}
	if err := w.Write(&event.Fork{}); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(event.Exit{ExitCode: 9}); err != nil { // a value, not a pointer
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if want := "{\"type\":\"fork\",\"event\":{}}\n{\"type\":\"exit\",\"event\":{\"exit_code\":9}}\n"; buf.String() != want {
		t.Errorf("wrote %q; want %q", buf.String(), want)
	}
	if err := w.Write(&event.Fork{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Write after Close: %v", err)
	}
	if err := w.Flush(); !errors.Is(err, ErrClosed) {
		t.Errorf("Flush after Close: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	w = NewWriter(failWriter{})
	w.Write(&event.Fork{})
	if err := w.Flush(); err == nil || err.Error() != "replay: flush: disk full" {
		t.Errorf("Flush to a failing writer: %v", err)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestCreateAndReadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rec.jsonl")
	w, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteComment("recorded by a test\non one host"); err != nil {
		t.Fatal(err)
	}
	events := everyType()
	for _, ev := range events {
		if err := w.Write(ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("recording's mode: %v, %v", fi.Mode(), err)
	}
	data, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(data), "# recorded by a test\n# on one host\n{") {
		t.Errorf("recording starts %q", data[:40])
	}
	got, err := ReadFile(path)
	if err != nil || !reflect.DeepEqual(got, events) {
		t.Errorf("ReadFile: %d events, %v", len(got), err)
	}

	os.WriteFile(path, []byte("\n\n{\"type\":\"exec\"}\n"), 0o600)
	_, err = ReadFile(path)
	if want := "replay: " + path + `:3: exec: missing "event"`; err == nil || err.Error() != want {
		t.Errorf("ReadFile of a bad recording: %v; want %s", err, want)
	}
	_, err = ReadFile(filepath.Join(t.TempDir(), "none"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadFile of no file: %v", err)
	}
}

func TestConcurrentWriters(t *testing.T) {
	const writers, each = 8, 500
	var buf bytes.Buffer
	w := NewWriter(&buf)
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range each {
				var err error
				if i%2 == 0 {
					err = w.Write(&event.Exec{Process: event.Process{PID: uint32(g), TID: uint32(i)}, Args: []string{"a", "b"}})
				} else {
					err = w.Write(&event.TCPConnect{Process: event.Process{PID: uint32(g), TID: uint32(i)}, Cookie: 1 << 62})
				}
				if err != nil {
					t.Error(err)
					return
				}
				if i%97 == 0 {
					if err := w.Flush(); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	seen := make(map[[2]uint32]bool)
	r := NewReader(&buf)
	for {
		ev, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var p event.Process
		switch e := ev.(type) {
		case *event.Exec:
			p = e.Process
			if p.TID%2 != 0 || !slices.Equal(e.Args, []string{"a", "b"}) {
				t.Errorf("bad exec %#v", e)
			}
		case *event.TCPConnect:
			p = e.Process
			if p.TID%2 != 1 || e.Cookie != 1<<62 {
				t.Errorf("bad connect %#v", e)
			}
		}
		key := [2]uint32{p.PID, p.TID}
		if seen[key] {
			t.Errorf("event %v read twice", key)
		}
		seen[key] = true
	}
	if len(seen) != writers*each {
		t.Errorf("read %d events; want %d", len(seen), writers*each)
	}
}

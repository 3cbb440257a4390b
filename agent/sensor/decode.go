package sensor

import (
	"bytes"
	"errors"
	"fmt"
	"time"
	"unsafe"

	"github.com/vigil-sensor/vigil/agent/event"
	"github.com/vigil-sensor/vigil/bpf"
)

// MaxArgs is the most arguments an Exec event keeps; more mark it truncated.
const MaxArgs = 16

// ErrShortRecord is returned for a ring-buffer record too short for its type.
var ErrShortRecord = errors.New("short record")

// ErrUnknownType is returned for a record of a type this agent does not know.
var ErrUnknownType = errors.New("unknown event type")

// Decoder turns raw process-family records into event values. BootTime maps
// the kernel's since-boot timestamps to wall-clock time.
type Decoder struct {
	// BootTime is the wall-clock time of boot (CLOCK_BOOTTIME zero).
	BootTime time.Time
}

// Decode decodes one record into an *event.Fork, *event.Exec or *event.Exit.
func (d *Decoder) Decode(raw []byte) (any, error) {
	var hdr bpf.ProcessEventHeader
	if err := into(&hdr, raw); err != nil {
		return nil, err
	}
	switch bpf.ProcessEventType(hdr.Type) {
	case bpf.ProcessEventTypeEVENT_FORK:
		var rec bpf.ProcessForkEvent
		if err := into(&rec, raw); err != nil {
			return nil, fmt.Errorf("fork: %w", err)
		}
		return &event.Fork{Time: d.wallTime(rec.Hdr.KtimeBoot), Process: processOf(&rec.Proc)}, nil
	case bpf.ProcessEventTypeEVENT_EXEC:
		var rec bpf.ProcessExecEvent
		if err := into(&rec, raw); err != nil {
			return nil, fmt.Errorf("exec: %w", err)
		}
		return d.exec(&rec), nil
	case bpf.ProcessEventTypeEVENT_EXIT:
		var rec bpf.ProcessExitEvent
		if err := into(&rec, raw); err != nil {
			return nil, fmt.Errorf("exit: %w", err)
		}
		return &event.Exit{Time: d.wallTime(rec.Hdr.KtimeBoot), Process: processOf(&rec.Proc), ExitCode: rec.ExitCode}, nil
	default:
		return nil, fmt.Errorf("%w %d", ErrUnknownType, hdr.Type)
	}
}

func (d *Decoder) exec(rec *bpf.ProcessExecEvent) *event.Exec {
	flags := bpf.ProcessExecFlags(rec.Flags)
	args, truncated := splitArgs(bytesOf(rec.Args[:], rec.ArgsLen))
	return &event.Exec{
		Time:          d.wallTime(rec.Hdr.KtimeBoot),
		Process:       processOf(&rec.Proc),
		Filename:      string(bytesOf(rec.Filename[:], rec.FilenameLen)),
		Exe:           string(bytesOf(rec.Exe[:], rec.ExeLen)),
		Cwd:           string(bytesOf(rec.Cwd[:], rec.CwdLen)),
		Args:          args,
		ArgsTruncated: truncated || flags&bpf.ProcessExecFlagsEXEC_ARGS_TRUNCATED != 0,
		ExeTruncated:  flags&bpf.ProcessExecFlagsEXEC_EXE_TRUNCATED != 0,
		CwdTruncated:  flags&bpf.ProcessExecFlagsEXEC_CWD_TRUNCATED != 0,
		ExeDeleted:    flags&bpf.ProcessExecFlagsEXEC_EXE_DELETED != 0,
		ExeMemfd:      flags&bpf.ProcessExecFlagsEXEC_EXE_MEMFD != 0,
	}
}

func (d *Decoder) wallTime(ktimeBoot uint64) time.Time {
	return d.BootTime.Add(time.Duration(ktimeBoot))
}

func processOf(p *bpf.ProcessProcessInfo) event.Process {
	return event.Process{
		PID:       p.Pid,
		TID:       p.Tid,
		PPID:      p.Ppid,
		UID:       p.Uid,
		GID:       p.Gid,
		EUID:      p.Euid,
		LoginUID:  p.Loginuid,
		StartTime: p.StartBoottime,
		CgroupID:  p.CgroupId,
		Comm:      cString(p.Comm[:]),
	}
}

// into copies raw into the fixed-layout record v (a pointer to a bpf2go type).
func into[T any](v *T, raw []byte) error {
	size := int(unsafe.Sizeof(*v))
	if len(raw) < size {
		return fmt.Errorf("%w: %d bytes, want %d", ErrShortRecord, len(raw), size)
	}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(v)), size), raw)
	return nil
}

// bytesOf views the first n bytes of a C char array, bounded by its size.
func bytesOf(a []int8, n uint32) []byte {
	if int(n) > len(a) {
		n = uint32(len(a))
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(a))), len(a))[:n]
}

// cString converts a NUL-terminated C char array.
func cString(a []int8) string {
	b := bytesOf(a, uint32(len(a)))
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// splitArgs splits NUL-separated argv bytes, keeping at most MaxArgs.
func splitArgs(b []byte) ([]string, bool) {
	b = bytes.TrimSuffix(b, []byte{0})
	if len(b) == 0 {
		return nil, false
	}
	parts := bytes.Split(b, []byte{0})
	truncated := false
	if len(parts) > MaxArgs {
		parts = parts[:MaxArgs]
		truncated = true
	}
	args := make([]string, len(parts))
	for i, p := range parts {
		args[i] = string(p)
	}
	return args, truncated
}

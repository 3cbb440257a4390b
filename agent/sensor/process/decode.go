package process

import (
	"fmt"
	"time"

	"github.com/vigil-sensor/vigil/agent/event"
	"github.com/vigil-sensor/vigil/agent/sensor"
	"github.com/vigil-sensor/vigil/bpf"
)

// Decoder turns raw process-family records into event values. BootTime maps
// the kernel's since-boot timestamps to wall-clock time. A Decoder is not
// safe for concurrent use (each ring has one reader).
//
// A host runs the same few programs over and over (a build, a shell loop, a
// cron job), so the decoder interns the strings of its events (comm,
// executable, file name, working directory, argv): every exec of
// /bin/true shares one copy of each, which saves an allocation per string
// per event and, in the process tree that keeps exited processes for a
// while, the memory of every copy.
type Decoder struct {
	// BootTime is the wall-clock time of boot (CLOCK_BOOTTIME zero).
	BootTime time.Time

	strs map[string]string
	argv map[string][]string
}

// Bounds on the interning tables; past them a table starts again empty.
const (
	maxInternedStrings = 2048
	maxInternedArgv    = 512
)

// str returns b as a string, the same one for the same bytes while the
// table holds it.
func (d *Decoder) str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if s, ok := d.strs[string(b)]; ok {
		return s
	}
	if d.strs == nil || len(d.strs) >= maxInternedStrings {
		d.strs = make(map[string]string, 64)
	}
	s := string(b)
	d.strs[s] = s
	return s
}

// args splits raw argv (event.SplitArgv), sharing the result between
// events with the same bytes. Nothing changes an event's Args in place.
func (d *Decoder) args(b []byte) ([]string, bool) {
	if len(b) > event.MaxArgsBytes {
		return event.SplitArgv(b)
	}
	if a, ok := d.argv[string(b)]; ok {
		return a, false // only whole argv are kept
	}
	a, truncated := event.SplitArgv(b)
	if truncated {
		return a, true
	}
	if d.argv == nil || len(d.argv) >= maxInternedArgv {
		d.argv = make(map[string][]string, 64)
	}
	d.argv[string(b)] = a
	return a, false
}

// Decode decodes one record into an *event.Fork, *event.Exec or *event.Exit.
func (d *Decoder) Decode(raw []byte) (any, error) {
	var hdr bpf.ProcessEventHeader
	if err := sensor.Into(&hdr, raw); err != nil {
		return nil, err
	}
	switch bpf.ProcessEventType(hdr.Type) {
	case bpf.ProcessEventTypeEVENT_FORK:
		var rec bpf.ProcessForkEvent
		if err := sensor.Into(&rec, raw); err != nil {
			return nil, fmt.Errorf("fork: %w", err)
		}
		return &event.Fork{Time: d.wallTime(rec.Hdr.KtimeBoot), Process: d.processOf(&rec.Proc)}, nil
	case bpf.ProcessEventTypeEVENT_EXEC:
		var rec bpf.ProcessExecEvent
		if err := sensor.Into(&rec, raw); err != nil {
			return nil, fmt.Errorf("exec: %w", err)
		}
		return d.exec(&rec), nil
	case bpf.ProcessEventTypeEVENT_EXIT:
		var rec bpf.ProcessExitEvent
		if err := sensor.Into(&rec, raw); err != nil {
			return nil, fmt.Errorf("exit: %w", err)
		}
		return &event.Exit{Time: d.wallTime(rec.Hdr.KtimeBoot), Process: d.processOf(&rec.Proc), ExitCode: rec.ExitCode}, nil
	default:
		return nil, fmt.Errorf("%w %d", sensor.ErrUnknownType, hdr.Type)
	}
}

func (d *Decoder) exec(rec *bpf.ProcessExecEvent) *event.Exec {
	flags := bpf.ProcessExecFlags(rec.Flags)
	args, truncated := d.args(sensor.Bytes(rec.Args[:], rec.ArgsLen))
	return &event.Exec{
		Time:          d.wallTime(rec.Hdr.KtimeBoot),
		Process:       d.processOf(&rec.Proc),
		Filename:      d.str(sensor.Bytes(rec.Filename[:], rec.FilenameLen)),
		Exe:           d.str(sensor.Bytes(rec.Exe[:], rec.ExeLen)),
		Cwd:           d.str(sensor.Bytes(rec.Cwd[:], rec.CwdLen)),
		Args:          args,
		ArgsTruncated: truncated || flags&bpf.ProcessExecFlagsEXEC_ARGS_TRUNCATED != 0,
		ExeTruncated:  flags&bpf.ProcessExecFlagsEXEC_EXE_TRUNCATED != 0,
		CwdTruncated:  flags&bpf.ProcessExecFlagsEXEC_CWD_TRUNCATED != 0,
		ExeDeleted:    flags&bpf.ProcessExecFlagsEXEC_EXE_DELETED != 0,
		ExeMemfd:      flags&bpf.ProcessExecFlagsEXEC_EXE_MEMFD != 0,
		Killed:        flags&bpf.ProcessExecFlagsEXEC_KILLED != 0,
	}
}

func (d *Decoder) wallTime(ktimeBoot uint64) time.Time {
	return d.BootTime.Add(time.Duration(ktimeBoot))
}

func (d *Decoder) processOf(p *bpf.ProcessProcessInfo) event.Process {
	return sensor.ProcessWithComm(*p, d.str)
}

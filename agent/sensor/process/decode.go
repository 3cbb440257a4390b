package process

import (
	"fmt"
	"time"

	"github.com/vigil-sensor/vigil/agent/event"
	"github.com/vigil-sensor/vigil/agent/sensor"
	"github.com/vigil-sensor/vigil/bpf"
)

// Decoder turns raw process-family records into event values. BootTime maps
// the kernel's since-boot timestamps to wall-clock time.
type Decoder struct {
	// BootTime is the wall-clock time of boot (CLOCK_BOOTTIME zero).
	BootTime time.Time
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
		return &event.Fork{Time: d.wallTime(rec.Hdr.KtimeBoot), Process: processOf(&rec.Proc)}, nil
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
		return &event.Exit{Time: d.wallTime(rec.Hdr.KtimeBoot), Process: processOf(&rec.Proc), ExitCode: rec.ExitCode}, nil
	default:
		return nil, fmt.Errorf("%w %d", sensor.ErrUnknownType, hdr.Type)
	}
}

func (d *Decoder) exec(rec *bpf.ProcessExecEvent) *event.Exec {
	flags := bpf.ProcessExecFlags(rec.Flags)
	args, truncated := event.SplitArgv(sensor.Bytes(rec.Args[:], rec.ArgsLen))
	return &event.Exec{
		Time:          d.wallTime(rec.Hdr.KtimeBoot),
		Process:       processOf(&rec.Proc),
		Filename:      string(sensor.Bytes(rec.Filename[:], rec.FilenameLen)),
		Exe:           string(sensor.Bytes(rec.Exe[:], rec.ExeLen)),
		Cwd:           string(sensor.Bytes(rec.Cwd[:], rec.CwdLen)),
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

func processOf(p *bpf.ProcessProcessInfo) event.Process {
	return sensor.ProcessOf(bpf.ProcessProcessInfo(*p))
}

package file

import (
	"fmt"
	"time"

	"github.com/vigil-sensor/vigil/agent/event"
	"github.com/vigil-sensor/vigil/agent/sensor"
	"github.com/vigil-sensor/vigil/bpf"
)

// Decoder turns raw file-family records into event values. BootTime maps
// the kernel's since-boot timestamps to wall-clock time.
type Decoder struct {
	// BootTime is the wall-clock time of boot (CLOCK_BOOTTIME zero).
	BootTime time.Time
}

// Open flags the decoder looks at.
const (
	oAccMode = 0o3
	oWronly  = 0o1
	oRdwr    = 0o2
	oCreat   = 0o100
	oTrunc   = 0o1000
)

var fileOps = map[bpf.FileFileEventType]event.FileOp{
	bpf.FileFileEventTypeEVENT_FILE_OPEN:    event.FileOpen,
	bpf.FileFileEventTypeEVENT_FILE_RENAME:  event.FileRename,
	bpf.FileFileEventTypeEVENT_FILE_UNLINK:  event.FileUnlink,
	bpf.FileFileEventTypeEVENT_FILE_CHMOD:   event.FileChmod,
	bpf.FileFileEventTypeEVENT_FILE_CHOWN:   event.FileChown,
	bpf.FileFileEventTypeEVENT_FILE_LINK:    event.FileLink,
	bpf.FileFileEventTypeEVENT_FILE_SYMLINK: event.FileSymlink,
}

var syscallNames = map[bpf.FileFileSyscall]string{
	bpf.FileFileSyscallFSYS_OPEN:          "open",
	bpf.FileFileSyscallFSYS_OPENAT:        "openat",
	bpf.FileFileSyscallFSYS_OPENAT2:       "openat2",
	bpf.FileFileSyscallFSYS_CREAT:         "creat",
	bpf.FileFileSyscallFSYS_RENAME:        "rename",
	bpf.FileFileSyscallFSYS_RENAMEAT:      "renameat",
	bpf.FileFileSyscallFSYS_RENAMEAT2:     "renameat2",
	bpf.FileFileSyscallFSYS_UNLINK:        "unlink",
	bpf.FileFileSyscallFSYS_UNLINKAT:      "unlinkat",
	bpf.FileFileSyscallFSYS_RMDIR:         "rmdir",
	bpf.FileFileSyscallFSYS_CHMOD:         "chmod",
	bpf.FileFileSyscallFSYS_FCHMOD:        "fchmod",
	bpf.FileFileSyscallFSYS_FCHMODAT:      "fchmodat",
	bpf.FileFileSyscallFSYS_FCHMODAT2:     "fchmodat2",
	bpf.FileFileSyscallFSYS_CHOWN:         "chown",
	bpf.FileFileSyscallFSYS_LCHOWN:        "lchown",
	bpf.FileFileSyscallFSYS_FCHOWN:        "fchown",
	bpf.FileFileSyscallFSYS_FCHOWNAT:      "fchownat",
	bpf.FileFileSyscallFSYS_LINK:          "link",
	bpf.FileFileSyscallFSYS_LINKAT:        "linkat",
	bpf.FileFileSyscallFSYS_SYMLINK:       "symlink",
	bpf.FileFileSyscallFSYS_SYMLINKAT:     "symlinkat",
	bpf.FileFileSyscallFSYS_SETUID:        "setuid",
	bpf.FileFileSyscallFSYS_SETGID:        "setgid",
	bpf.FileFileSyscallFSYS_SETREUID:      "setreuid",
	bpf.FileFileSyscallFSYS_SETREGID:      "setregid",
	bpf.FileFileSyscallFSYS_SETRESUID:     "setresuid",
	bpf.FileFileSyscallFSYS_SETRESGID:     "setresgid",
	bpf.FileFileSyscallFSYS_CAPSET:        "capset",
	bpf.FileFileSyscallFSYS_PTRACE:        "ptrace",
	bpf.FileFileSyscallFSYS_INIT_MODULE:   "init_module",
	bpf.FileFileSyscallFSYS_FINIT_MODULE:  "finit_module",
	bpf.FileFileSyscallFSYS_DELETE_MODULE: "delete_module",
	bpf.FileFileSyscallFSYS_MEMFD_CREATE:  "memfd_create",
	bpf.FileFileSyscallFSYS_MOUNT:         "mount",
	bpf.FileFileSyscallFSYS_UMOUNT2:       "umount2",
	bpf.FileFileSyscallFSYS_BPF:           "bpf",
	bpf.FileFileSyscallFSYS_KILL:          "kill",
	bpf.FileFileSyscallFSYS_TKILL:         "tkill",
	bpf.FileFileSyscallFSYS_TGKILL:        "tgkill",
}

// SyscallName names a record's syscall (enum file_syscall), e.g. "openat".
func SyscallName(nr uint32) string {
	if name, ok := syscallNames[bpf.FileFileSyscall(nr)]; ok {
		return name
	}
	return fmt.Sprintf("syscall(%d)", nr)
}

// Decode decodes one record into one of the event types Sensor.Next returns.
func (d *Decoder) Decode(raw []byte) (any, error) {
	var hdr bpf.FileEventHeader
	if err := sensor.Into(&hdr, raw); err != nil {
		return nil, err
	}
	typ := bpf.FileFileEventType(hdr.Type)
	switch typ {
	case bpf.FileFileEventTypeEVENT_FILE_OPEN, bpf.FileFileEventTypeEVENT_FILE_RENAME,
		bpf.FileFileEventTypeEVENT_FILE_UNLINK, bpf.FileFileEventTypeEVENT_FILE_CHMOD,
		bpf.FileFileEventTypeEVENT_FILE_CHOWN, bpf.FileFileEventTypeEVENT_FILE_LINK,
		bpf.FileFileEventTypeEVENT_FILE_SYMLINK:
		var rec bpf.FileFileEvent
		if err := sensor.Into(&rec, raw); err != nil {
			return nil, fmt.Errorf("file: %w", err)
		}
		return d.file(fileOps[typ], &rec), nil
	case bpf.FileFileEventTypeEVENT_CRED_CHANGE:
		var rec bpf.FileCredEvent
		if err := sensor.Into(&rec, raw); err != nil {
			return nil, fmt.Errorf("cred: %w", err)
		}
		return &event.CredChange{
			Time: d.wallTime(rec.Hdr.KtimeBoot), Process: processOf(&rec.Proc),
			Syscall: SyscallName(rec.Sys.Nr), Ret: rec.Sys.Ret, Args: rec.Args,
			Old: credsOf(&rec.Old), New: credsOf(&rec.New),
		}, nil
	case bpf.FileFileEventTypeEVENT_PTRACE:
		var rec bpf.FilePtraceEvent
		if err := sensor.Into(&rec, raw); err != nil {
			return nil, fmt.Errorf("ptrace: %w", err)
		}
		return &event.Ptrace{
			Time: d.wallTime(rec.Hdr.KtimeBoot), Process: processOf(&rec.Proc),
			Ret: rec.Sys.Ret, Request: rec.Request, TargetPID: rec.TargetPid,
		}, nil
	case bpf.FileFileEventTypeEVENT_MODULE_LOAD, bpf.FileFileEventTypeEVENT_MODULE_UNLOAD:
		var rec bpf.FileModuleEvent
		if err := sensor.Into(&rec, raw); err != nil {
			return nil, fmt.Errorf("module: %w", err)
		}
		return &event.Module{
			Time: d.wallTime(rec.Hdr.KtimeBoot), Process: processOf(&rec.Proc),
			Syscall: SyscallName(rec.Sys.Nr), Ret: rec.Sys.Ret,
			Unload: typ == bpf.FileFileEventTypeEVENT_MODULE_UNLOAD,
			Name:   string(sensor.Bytes(rec.Name[:], uint32(rec.NameLen))),
			Path:   string(sensor.Bytes(rec.Path[:], uint32(rec.PathLen))),
			Flags:  rec.Flags,
		}, nil
	case bpf.FileFileEventTypeEVENT_MEMFD_CREATE:
		var rec bpf.FileMemfdEvent
		if err := sensor.Into(&rec, raw); err != nil {
			return nil, fmt.Errorf("memfd: %w", err)
		}
		return &event.MemfdCreate{
			Time: d.wallTime(rec.Hdr.KtimeBoot), Process: processOf(&rec.Proc),
			Ret: rec.Sys.Ret, Name: string(sensor.Bytes(rec.Name[:], rec.NameLen)), Flags: rec.Flags,
		}, nil
	case bpf.FileFileEventTypeEVENT_MOUNT, bpf.FileFileEventTypeEVENT_UMOUNT:
		var rec bpf.FileMountEvent
		if err := sensor.Into(&rec, raw); err != nil {
			return nil, fmt.Errorf("mount: %w", err)
		}
		return &event.Mount{
			Time: d.wallTime(rec.Hdr.KtimeBoot), Process: processOf(&rec.Proc),
			Syscall: SyscallName(rec.Sys.Nr), Ret: rec.Sys.Ret,
			Unmount:         typ == bpf.FileFileEventTypeEVENT_UMOUNT,
			Source:          string(sensor.Bytes(rec.Source[:], uint32(rec.SourceLen))),
			Target:          string(sensor.Bytes(rec.Target[:], uint32(rec.TargetLen))),
			FSType:          string(sensor.Bytes(rec.Fstype[:], uint32(rec.FstypeLen))),
			Flags:           rec.Flags,
			TargetTruncated: rec.Sys.Vflags&uint32(bpf.FileFileVflagsFILE_PATH2TRUNCATED) != 0,
		}, nil
	case bpf.FileFileEventTypeEVENT_BPF_PROG_LOAD:
		var rec bpf.FileBpfProgEvent
		if err := sensor.Into(&rec, raw); err != nil {
			return nil, fmt.Errorf("bpf: %w", err)
		}
		return &event.BPFProgLoad{
			Time: d.wallTime(rec.Hdr.KtimeBoot), Process: processOf(&rec.Proc),
			Ret: rec.Sys.Ret, ProgType: rec.ProgType, InsnCount: rec.InsnCnt,
			ProgName: sensor.CString(rec.ProgName[:]),
		}, nil
	case bpf.FileFileEventTypeEVENT_KILL:
		var rec bpf.FileKillEvent
		if err := sensor.Into(&rec, raw); err != nil {
			return nil, fmt.Errorf("kill: %w", err)
		}
		return &event.Kill{
			Time: d.wallTime(rec.Hdr.KtimeBoot), Process: processOf(&rec.Proc),
			Syscall: SyscallName(rec.Sys.Nr), Ret: rec.Sys.Ret,
			TargetPID: rec.TargetPid, TargetTID: rec.TargetTid, Signal: rec.Sig,
		}, nil
	default:
		return nil, fmt.Errorf("%w %d", sensor.ErrUnknownType, hdr.Type)
	}
}

func (d *Decoder) file(op event.FileOp, rec *bpf.FileFileEvent) *event.File {
	vf := rec.Sys.Vflags
	ev := &event.File{
		Time:           d.wallTime(rec.Hdr.KtimeBoot),
		Process:        processOf(&rec.Proc),
		Op:             op,
		Syscall:        SyscallName(rec.Sys.Nr),
		Ret:            rec.Sys.Ret,
		Path:           string(sensor.Bytes(rec.Path[:], uint32(rec.PathLen))),
		Path2:          string(sensor.Bytes(rec.Path2[:], uint32(rec.Path2Len))),
		Flags:          rec.Flags,
		Mode:           rec.Mode,
		UID:            rec.Uid,
		GID:            rec.Gid,
		PathTruncated:  vf&uint32(bpf.FileFileVflagsFILE_PATH_TRUNCATED) != 0,
		Path2Truncated: vf&uint32(bpf.FileFileVflagsFILE_PATH2TRUNCATED) != 0,
		PathUnresolved: vf&uint32(bpf.FileFileVflagsFILE_PATH_UNRESOLVED|bpf.FileFileVflagsFILE_PATH2UNRESOLVED) != 0,
	}
	if op == event.FileOpen {
		acc := rec.Flags & oAccMode
		ev.Read = acc != oWronly
		ev.Write = acc == oWronly || acc == oRdwr
		ev.Create = rec.Flags&oCreat != 0
		ev.Truncate = rec.Flags&oTrunc != 0
	}
	return ev
}

func (d *Decoder) wallTime(ktimeBoot uint64) time.Time {
	return d.BootTime.Add(time.Duration(ktimeBoot))
}

func credsOf(c *bpf.FileCredIds) event.Creds {
	return event.Creds{
		UID: c.Uid, EUID: c.Euid, SUID: c.Suid, FSUID: c.Fsuid,
		GID: c.Gid, EGID: c.Egid, SGID: c.Sgid, FSGID: c.Fsgid,
		CapEffective: c.CapEffective, CapPermitted: c.CapPermitted,
	}
}

func processOf(p *bpf.FileProcessInfo) event.Process {
	return sensor.ProcessOf(bpf.ProcessProcessInfo(*p))
}

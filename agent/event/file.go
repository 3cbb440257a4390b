package event

import "time"

// FileOp names what a File event did to its path.
type FileOp string

// The operations a File event reports.
const (
	// FileOpen is an open of a watched path (for write, or for read where
	// reads are watched).
	FileOpen FileOp = "open"
	// FileRename renames Path to Path2.
	FileRename FileOp = "rename"
	// FileUnlink removes Path (a file, or a directory with rmdir or
	// AT_REMOVEDIR).
	FileUnlink FileOp = "unlink"
	// FileChmod changes the mode of Path to Mode.
	FileChmod FileOp = "chmod"
	// FileChown changes the owner of Path to UID and GID.
	FileChown FileOp = "chown"
	// FileLink makes Path2 a hard link to Path.
	FileLink FileOp = "link"
	// FileSymlink makes Path a symbolic link whose target is Path2.
	FileSymlink FileOp = "symlink"
)

// File reports a syscall on a watched path. Paths are absolute (made so from
// the working directory or the dirfd when the caller passed a relative one)
// but lexical: symbolic links and ".." are not resolved.
type File struct {
	// Time is when the syscall was entered.
	Time time.Time
	// Process is the calling process, with its credentials at entry.
	Process Process
	// Op is what the syscall did.
	Op FileOp
	// Syscall is the syscall's name (openat, renameat2, fchmodat, ...).
	Syscall string
	// Ret is the syscall's return value: a descriptor or 0 on success, a
	// negated errno on failure.
	Ret int64
	// Path is the file (rename and link: the old path; symlink: the new link).
	Path string
	// Path2 is the new path of a rename or link, or the target of a symlink
	// exactly as given.
	Path2 string
	// Flags are the open flags (O_*), the rename flags (RENAME_*), or the
	// AT_* flags of unlinkat, fchmodat2, fchownat and linkat.
	Flags uint64
	// Mode is the mode of open with O_CREAT, creat and chmod.
	Mode uint32
	// UID and GID are the new owner of a chown (-1 as uint32: unchanged).
	UID, GID uint32
	// Read is set for an open that reads (O_RDONLY or O_RDWR).
	Read bool
	// Write is set for an open that writes (O_WRONLY or O_RDWR).
	Write bool
	// Create is set for an open with O_CREAT (and creat).
	Create bool
	// Truncate is set for an open with O_TRUNC (and creat).
	Truncate bool
	// PathTruncated and Path2Truncated are set when a path was longer than
	// the sensor keeps; the head of the path is kept.
	PathTruncated, Path2Truncated bool
	// PathUnresolved is set when a relative path could not be made absolute
	// (its dirfd named no open file); Path is then as given.
	PathUnresolved bool
}

// Creds are a task's user and group ids and capability sets.
type Creds struct {
	// UID, EUID, SUID and FSUID are the real, effective, saved and file-system user ids.
	UID, EUID, SUID, FSUID uint32
	// GID, EGID, SGID and FSGID are the real, effective, saved and file-system group ids.
	GID, EGID, SGID, FSGID uint32
	// CapEffective and CapPermitted are the capability bit sets.
	CapEffective, CapPermitted uint64
}

// CredChange reports a successful setuid, setgid, setreuid, setregid,
// setresuid, setresgid or capset that changed the calling thread's
// credentials.
type CredChange struct {
	// Time is when the syscall was entered.
	Time time.Time
	// Process is the calling process (its ids are the old ones).
	Process Process
	// Syscall is the syscall's name.
	Syscall string
	// Ret is the syscall's return value (always 0: only successes are reported).
	Ret int64
	// Args are the ids requested, -1 where the syscall takes fewer or leaves one unchanged.
	Args [3]int64
	// Old are the thread's credentials before the call.
	Old Creds
	// New are the thread's credentials after the call.
	New Creds
}

// Ptrace request numbers a Ptrace event reports.
const (
	PtraceTraceme = 0
	PtraceAttach  = 16
	PtraceSeize   = 0x4206
)

// Ptrace reports PTRACE_ATTACH, PTRACE_SEIZE or PTRACE_TRACEME.
type Ptrace struct {
	// Time is when the syscall was entered.
	Time time.Time
	// Process is the tracer (for PTRACE_TRACEME, the tracee).
	Process Process
	// Ret is the syscall's return value.
	Ret int64
	// Request is the ptrace request (PtraceAttach, PtraceSeize, PtraceTraceme).
	Request int64
	// TargetPID is the tracee, or for PTRACE_TRACEME the parent that will trace.
	TargetPID uint32
}

// Module reports a kernel module load (init_module, finit_module) or unload
// (delete_module).
type Module struct {
	// Time is when the syscall was entered.
	Time time.Time
	// Process is the calling process.
	Process Process
	// Syscall is the syscall's name.
	Syscall string
	// Ret is the syscall's return value.
	Ret int64
	// Unload is set for delete_module.
	Unload bool
	// Name is the module name of delete_module (empty for loads: the name is
	// inside the image).
	Name string
	// Path is the file finit_module loads from (empty for init_module).
	Path string
	// Flags are the finit_module or delete_module flags.
	Flags uint64
}

// MemfdCreate reports memfd_create.
type MemfdCreate struct {
	// Time is when the syscall was entered.
	Time time.Time
	// Process is the calling process.
	Process Process
	// Ret is the syscall's return value (the descriptor).
	Ret int64
	// Name is the name given (the file appears as /memfd:<name>).
	Name string
	// Flags are the MFD_* flags.
	Flags uint32
}

// Mount reports mount or umount2.
type Mount struct {
	// Time is when the syscall was entered.
	Time time.Time
	// Process is the calling process.
	Process Process
	// Syscall is the syscall's name (mount, umount2).
	Syscall string
	// Ret is the syscall's return value.
	Ret int64
	// Unmount is set for umount2.
	Unmount bool
	// Source is the mount source as given (device, path or name).
	Source string
	// Target is the mount point, made absolute.
	Target string
	// FSType is the file-system type as given.
	FSType string
	// Flags are the MS_* flags of mount or the MNT_* flags of umount2.
	Flags uint64
	// TargetTruncated is set when Target was longer than the sensor keeps.
	TargetTruncated bool
}

// BPFProgLoad reports bpf(BPF_PROG_LOAD).
type BPFProgLoad struct {
	// Time is when the syscall was entered.
	Time time.Time
	// Process is the calling process.
	Process Process
	// Ret is the syscall's return value (the program's descriptor).
	Ret int64
	// ProgType is the BPF program type (BPF_PROG_TYPE_*).
	ProgType uint32
	// InsnCount is the number of instructions.
	InsnCount uint32
	// ProgName is the program's name (at most 15 bytes).
	ProgName string
}

// Kill reports kill, tkill or tgkill of another process with a non-zero
// signal.
type Kill struct {
	// Time is when the syscall was entered.
	Time time.Time
	// Process is the sender.
	Process Process
	// Syscall is the syscall's name.
	Syscall string
	// Ret is the syscall's return value.
	Ret int64
	// TargetPID is the pid argument of kill (0 or negative for process
	// groups, -1 for all) or the tgid of tgkill; 0 for tkill.
	TargetPID int32
	// TargetTID is the thread of tkill and tgkill; -1 for kill.
	TargetTID int32
	// Signal is the signal number.
	Signal int32
}

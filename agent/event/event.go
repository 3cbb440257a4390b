// Package event is the agent's model of what the kernel reports: typed,
// decoded events with Go strings and wall-clock times, independent of the
// raw layouts of the BPF records.
package event

import "time"

// Process identifies a process and carries the credentials it had when an
// event was recorded. A process is identified by (PID, StartTime), never by
// PID alone, because PIDs are reused.
type Process struct {
	// PID is the thread-group id.
	PID uint32
	// TID is the id of the thread that caused the event.
	TID uint32
	// PPID is the thread-group id of the real parent.
	PPID uint32
	// UID is the real user id.
	UID uint32
	// GID is the real group id.
	GID uint32
	// EUID is the effective user id.
	EUID uint32
	// LoginUID is the audit login uid; NoLoginUID when unset.
	LoginUID uint32
	// SessionID is the audit session id, shared by every process of one
	// login; NoSessionID when unset.
	SessionID uint32
	// StartTime is when the process started, in nanoseconds since boot
	// (CLOCK_BOOTTIME), the clock /proc/<pid>/stat uses.
	StartTime uint64
	// CgroupID is the id of the process's cgroup v2.
	CgroupID uint64
	// Comm is the kernel's task name (at most 15 bytes).
	Comm string
}

// NoLoginUID is the login uid of a process that never went through a login.
const NoLoginUID = ^uint32(0)

// Fork reports a new process (threads are not reported).
type Fork struct {
	// Time is when the process was created.
	Time time.Time
	// Process is the child.
	Process Process
}

// Exec reports that a process replaced its image.
type Exec struct {
	// Time is when the new image was loaded.
	Time time.Time
	// Process is the process after exec.
	Process Process
	// Filename is the path passed to execve, possibly relative or a script.
	Filename string
	// Exe is the absolute path of the loaded image (what /proc/<pid>/exe shows).
	Exe string
	// Cwd is the working directory.
	Cwd string
	// Args is argv, bounded by the sensor.
	Args []string
	// ArgsTruncated is set when argv was longer than the sensor's bound.
	ArgsTruncated bool
	// ExeTruncated is set when Exe keeps only the tail of a longer path.
	ExeTruncated bool
	// CwdTruncated is set when Cwd keeps only the tail of a longer path.
	CwdTruncated bool
	// ExeDeleted is set when the image had no link left in the file system.
	ExeDeleted bool
	// ExeMemfd is set when the image is an anonymous memory file.
	ExeMemfd bool
	// Killed is set when the executable or its name was on the process
	// sensor's kill list: the kernel sent SIGKILL during the exec, so the
	// new image never ran an instruction (its Exit follows with signal 9).
	Killed bool
}

// Exit reports that the last thread of a process exited.
type Exit struct {
	// Time is when the process exited.
	Time time.Time
	// Process is the process that exited.
	Process Process
	// ExitCode is the wait status: exit code << 8 | terminating signal.
	ExitCode int32
}

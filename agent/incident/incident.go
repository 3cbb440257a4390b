// Package incident turns a rule match on an exec into an incident in the
// wire format: who, what, where, why, and the process with its ancestry.
package incident

import (
	"fmt"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-sensor/vigil/agent/detect"
	"github.com/vigil-sensor/vigil/agent/event"
	"github.com/vigil-sensor/vigil/agent/proctree"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// Builder builds incidents for one host.
type Builder struct {
	// HostID and Hostname identify the host.
	HostID, Hostname string
	// BootTime converts start times since boot to wall-clock time.
	BootTime time.Time
	// UserName resolves a uid to a name; nil leaves names empty.
	UserName func(uid uint32) string
}

// Build returns the incident for match on exec x of process proc, whose
// ancestors (parent first) are ancestors, within login session login (nil
// when the process belongs to none the agent saw).
func (b *Builder) Build(m detect.Match, x *event.Exec, proc proctree.Entry, ancestors []proctree.Entry, login *vigilv1.Login) (*vigilv1.Incident, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return nil, fmt.Errorf("make incident id: %w", err)
	}
	desc := m.Reason
	if m.Repeats > 0 {
		desc += fmt.Sprintf(" (%d identical executions in the previous %s were not reported separately)", m.Repeats, detect.RepeatWindow)
	}
	inc := &vigilv1.Incident{
		Id:          id.String(),
		HostId:      b.HostID,
		Hostname:    b.Hostname,
		Time:        timestamppb.New(x.Time),
		Severity:    m.Rule.Severity,
		Title:       m.Rule.Title,
		Description: desc,
		RuleId:      m.Rule.ID,
		Attack:      m.Rule.Attack,
		Process:     b.process(&proc),
		Login:       login,
	}
	for i := range ancestors {
		inc.Ancestors = append(inc.Ancestors, b.process(&ancestors[i]))
	}
	return inc, nil
}

func (b *Builder) process(e *proctree.Entry) *vigilv1.Process {
	p := &vigilv1.Process{
		Pid:           e.PID,
		Ppid:          e.PPID,
		StartTime:     timestamppb.New(b.BootTime.Add(time.Duration(e.StartTime))),
		Uid:           e.UID,
		Gid:           e.GID,
		LoginUid:      e.LoginUID,
		SessionId:     e.SessionID,
		Comm:          e.Comm,
		Exe:           e.Exe,
		Args:          e.Args,
		ArgsTruncated: e.ArgsTruncated,
		Cwd:           e.Cwd,
		CgroupId:      e.CgroupID,
		ExeDeleted:    e.ExeDeleted,
		ExeMemfd:      e.ExeMemfd,
		Exited:        e.Exited,
		ExitCode:      e.ExitCode,
	}
	if b.UserName != nil {
		p.User = b.UserName(e.UID)
	}
	return p
}

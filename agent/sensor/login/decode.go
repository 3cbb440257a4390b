package login

import (
	"fmt"
	"time"

	"github.com/vigil-sensor/vigil/agent/event"
	"github.com/vigil-sensor/vigil/agent/sensor"
	"github.com/vigil-sensor/vigil/bpf"
)

// Decoder turns raw login-family records into *event.Login values.
type Decoder struct {
	// BootTime is the wall-clock time of boot (CLOCK_BOOTTIME zero).
	BootTime time.Time
}

var opOfType = map[bpf.LoginLoginEventType]event.LoginOp{
	bpf.LoginLoginEventTypeEVENT_PAM_AUTHENTICATE:  event.LoginAuthenticate,
	bpf.LoginLoginEventTypeEVENT_PAM_ACCT_MGMT:     event.LoginAccount,
	bpf.LoginLoginEventTypeEVENT_PAM_OPEN_SESSION:  event.LoginOpenSession,
	bpf.LoginLoginEventTypeEVENT_PAM_CLOSE_SESSION: event.LoginCloseSession,
}

// Decode decodes one record into an *event.Login.
func (d *Decoder) Decode(raw []byte) (any, error) {
	var hdr bpf.LoginEventHeader
	if err := sensor.Into(&hdr, raw); err != nil {
		return nil, err
	}
	op, ok := opOfType[bpf.LoginLoginEventType(hdr.Type)]
	if !ok {
		return nil, fmt.Errorf("%w %d", sensor.ErrUnknownType, hdr.Type)
	}
	var rec bpf.LoginLoginEvent
	if err := sensor.Into(&rec, raw); err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	flags := bpf.LoginLoginFlags(rec.Flags)
	return &event.Login{
		Time:           d.BootTime.Add(time.Duration(rec.Hdr.KtimeBoot)),
		Process:        processOf(&rec.Proc),
		Op:             op,
		Result:         event.PAMResult(rec.Result),
		Service:        sensor.CString(rec.Service[:]),
		User:           sensor.CString(rec.User[:]),
		RemoteUser:     sensor.CString(rec.Ruser[:]),
		RemoteHost:     sensor.CString(rec.Rhost[:]),
		TTY:            sensor.CString(rec.Tty[:]),
		SessionID:      rec.Sessionid,
		Duration:       time.Duration(rec.DurationNs),
		Truncated:      flags&bpf.LoginLoginFlagsLOGIN_ITEM_TRUNCATED != 0,
		LayoutMismatch: flags&bpf.LoginLoginFlagsLOGIN_LAYOUT_MISMATCH != 0,
		NoHandle:       flags&bpf.LoginLoginFlagsLOGIN_NO_HANDLE != 0,
	}, nil
}

func processOf(p *bpf.LoginProcessInfo) event.Process {
	return sensor.ProcessOf(bpf.ProcessProcessInfo(*p))
}

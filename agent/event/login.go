package event

import (
	"strconv"
	"time"
)

// LoginOp names the PAM call a Login event reports.
type LoginOp uint8

// The PAM calls the login sensor reports.
const (
	// LoginAuthenticate is pam_authenticate: the user proved who they are (or not).
	LoginAuthenticate LoginOp = iota + 1
	// LoginAccount is pam_acct_mgmt: the account may log in now (not expired, not locked).
	LoginAccount
	// LoginOpenSession is pam_open_session: a session begins.
	LoginOpenSession
	// LoginCloseSession is pam_close_session: a session ends.
	LoginCloseSession
)

// String returns the name of the libpam function.
func (op LoginOp) String() string {
	switch op {
	case LoginAuthenticate:
		return "pam_authenticate"
	case LoginAccount:
		return "pam_acct_mgmt"
	case LoginOpenSession:
		return "pam_open_session"
	case LoginCloseSession:
		return "pam_close_session"
	}
	return "LoginOp(" + strconv.Itoa(int(op)) + ")"
}

// PAMResult is a PAM return code (security/_pam_types.h).
type PAMResult int32

// PAM return codes the login sensor may report; libpam defines 32 in all.
const (
	PAMSuccess           PAMResult = 0
	PAMOpenErr           PAMResult = 1
	PAMSymbolErr         PAMResult = 2
	PAMServiceErr        PAMResult = 3
	PAMSystemErr         PAMResult = 4
	PAMBufErr            PAMResult = 5
	PAMPermDenied        PAMResult = 6
	PAMAuthErr           PAMResult = 7
	PAMCredInsufficient  PAMResult = 8
	PAMAuthinfoUnavail   PAMResult = 9
	PAMUserUnknown       PAMResult = 10
	PAMMaxtries          PAMResult = 11
	PAMNewAuthtokReqd    PAMResult = 12
	PAMAcctExpired       PAMResult = 13
	PAMSessionErr        PAMResult = 14
	PAMCredUnavail       PAMResult = 15
	PAMCredExpired       PAMResult = 16
	PAMCredErr           PAMResult = 17
	PAMNoModuleData      PAMResult = 18
	PAMConvErr           PAMResult = 19
	PAMAuthtokErr        PAMResult = 20
	PAMAuthtokRecoverErr PAMResult = 21
	PAMAuthtokLockBusy   PAMResult = 22
	PAMAuthtokDisableAge PAMResult = 23
	PAMTryAgain          PAMResult = 24
	PAMIgnore            PAMResult = 25
	PAMAbort             PAMResult = 26
	PAMAuthtokExpired    PAMResult = 27
	PAMModuleUnknown     PAMResult = 28
	PAMBadItem           PAMResult = 29
	PAMConvAgain         PAMResult = 30
	PAMIncomplete        PAMResult = 31
)

var pamResultNames = [...]string{
	"PAM_SUCCESS", "PAM_OPEN_ERR", "PAM_SYMBOL_ERR", "PAM_SERVICE_ERR", "PAM_SYSTEM_ERR",
	"PAM_BUF_ERR", "PAM_PERM_DENIED", "PAM_AUTH_ERR", "PAM_CRED_INSUFFICIENT",
	"PAM_AUTHINFO_UNAVAIL", "PAM_USER_UNKNOWN", "PAM_MAXTRIES", "PAM_NEW_AUTHTOK_REQD",
	"PAM_ACCT_EXPIRED", "PAM_SESSION_ERR", "PAM_CRED_UNAVAIL", "PAM_CRED_EXPIRED",
	"PAM_CRED_ERR", "PAM_NO_MODULE_DATA", "PAM_CONV_ERR", "PAM_AUTHTOK_ERR",
	"PAM_AUTHTOK_RECOVERY_ERR", "PAM_AUTHTOK_LOCK_BUSY", "PAM_AUTHTOK_DISABLE_AGING",
	"PAM_TRY_AGAIN", "PAM_IGNORE", "PAM_ABORT", "PAM_AUTHTOK_EXPIRED", "PAM_MODULE_UNKNOWN",
	"PAM_BAD_ITEM", "PAM_CONV_AGAIN", "PAM_INCOMPLETE",
}

// String returns the libpam name of the code, e.g. PAM_AUTH_ERR.
func (r PAMResult) String() string {
	if r >= 0 && int(r) < len(pamResultNames) {
		return pamResultNames[r]
	}
	return "PAMResult(" + strconv.Itoa(int(r)) + ")"
}

// Login reports one PAM call (authentication, account check, session open
// or close) made by a program such as sshd, su, sudo or login, with its
// result. The items are those of the PAM handle when the call returned.
type Login struct {
	// Time is when the call returned.
	Time time.Time
	// Process is the process that called libpam. For a session open, its
	// LoginUID is already the logged-in user's when pam_loginuid ran.
	Process Process
	// Op is the PAM call.
	Op LoginOp
	// Result is what the call returned; PAMSuccess means it succeeded.
	Result PAMResult
	// Service is the PAM service name (PAM_SERVICE), e.g. "sshd", "su", "sudo".
	Service string
	// User is the user being authenticated or logged in (PAM_USER).
	User string
	// RemoteUser is the requesting user (PAM_RUSER): for su and sudo, the
	// user who ran the command.
	RemoteUser string
	// RemoteHost is the remote host (PAM_RHOST), e.g. "127.0.0.1" for sshd.
	RemoteHost string
	// TTY is the terminal (PAM_TTY); sshd sets "ssh" when there is none.
	TTY string
	// SessionID is the caller's audit session id when the call returned:
	// after a successful session open through pam_loginuid, every process
	// of the session has it (/proc/<pid>/sessionid). NoSessionID when unset.
	SessionID uint32
	// Duration is how long the call took, including any failure delay.
	Duration time.Duration
	// Truncated is set when an item was longer than the sensor keeps.
	Truncated bool
	// LayoutMismatch is set when the PAM handle did not look as the sensor
	// expects it; the items are then left empty.
	LayoutMismatch bool
	// NoHandle is set when the call was given a NULL PAM handle.
	NoHandle bool
}

// NoSessionID is the audit session id of a process outside any login session.
const NoSessionID = ^uint32(0)

// Succeeded reports whether the call returned PAM_SUCCESS.
func (l *Login) Succeeded() bool { return l.Result == PAMSuccess }

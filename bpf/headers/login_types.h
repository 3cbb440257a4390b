/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Records of the login family: PAM calls seen through uprobes on libpam. */
#ifndef VIGIL_LOGIN_TYPES_H
#define VIGIL_LOGIN_TYPES_H

#include "types.h"

#define LOGIN_SERVICE_LEN 64
#define LOGIN_USER_LEN 64
#define LOGIN_RUSER_LEN 64
#define LOGIN_RHOST_LEN 256
#define LOGIN_TTY_LEN 64

/* Event types of the login family (40-49): which PAM call returned. */
enum login_event_type {
	EVENT_PAM_AUTHENTICATE = 40,
	EVENT_PAM_ACCT_MGMT = 41,
	EVENT_PAM_OPEN_SESSION = 42,
	EVENT_PAM_CLOSE_SESSION = 43,
};

/* login_event.flags */
enum login_flags {
	LOGIN_NO_HANDLE = 1 << 0,        /* the call got a NULL pam_handle_t */
	LOGIN_LAYOUT_MISMATCH = 1 << 1,  /* the handle did not look like the expected layout: no items read */
	LOGIN_ITEM_TRUNCATED = 1 << 2,   /* at least one item was longer than its field */
};

/*
 * Where the items sit in libpam's private struct pam_handle. Linux-PAM has
 * kept its first fields (authtok, caller_is, pam_conversation, oldauthtok,
 * prompt, service_name, user, rhost, ruser, tty) in this order since 0.99;
 * the agent sets the offsets at load and may override them.
 */
struct pam_layout {
	__u32 caller_is;
	__u32 service;
	__u32 user;
	__u32 rhost;
	__u32 ruser;
	__u32 tty;
};

/*
 * One PAM call (pam_authenticate, pam_acct_mgmt, pam_open_session or
 * pam_close_session) that returned. The items are read from the handle when
 * the call returns, so a user name asked for during authentication is there.
 * The strings are NUL-terminated; an unset item is empty.
 */
struct login_event {
	struct event_header hdr;
	struct process_info proc; /* the process that called libpam (sshd, su, sudo, login...) */
	__s32 result;             /* the PAM return code: PAM_SUCCESS = 0, PAM_AUTH_ERR = 7, ... */
	__u32 flags;              /* enum login_flags */
	__u32 sessionid;          /* the caller's audit session id when the call returned */
	__u32 pad;
	__u64 duration_ns;        /* from entry to return */
	char service[LOGIN_SERVICE_LEN]; /* PAM_SERVICE */
	char user[LOGIN_USER_LEN];       /* PAM_USER */
	char ruser[LOGIN_RUSER_LEN];     /* PAM_RUSER */
	char rhost[LOGIN_RHOST_LEN];     /* PAM_RHOST */
	char tty[LOGIN_TTY_LEN];         /* PAM_TTY */
};

#endif /* VIGIL_LOGIN_TYPES_H */

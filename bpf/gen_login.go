package bpf

// The login family: PAM authentication, account and session calls. The
// uprobes read function arguments from registers, so the object is built per
// architecture (amd64, arm64) instead of once for bpfel.
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 -type event_header -type process_info -type login_event -type event_family -type login_event_type -type login_flags Login login.bpf.c -- -I./headers

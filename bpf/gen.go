// Package bpf holds Vigil's kernel programs and the Go bindings that bpf2go
// generates for them. The C sources are compiled by `make generate`; the
// generated *_bpfel.go and *_bpfel.o files are committed so that building
// the agent needs no clang.
package bpf

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -type event_header -type process_info -type fork_event -type exec_event -type exit_event -type event_type -type event_family -type exec_flags Process process.bpf.c -- -I./headers

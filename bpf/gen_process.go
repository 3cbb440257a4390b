package bpf

// The process family: fork, exec and exit.
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -type event_header -type process_info -type fork_event -type exec_event -type exit_event -type event_type -type event_family -type exec_flags -type kill_exe_key -type kill_name_key Process process.bpf.c -- -I./headers

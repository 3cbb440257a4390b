package bpf

// The file and syscall family: watched-path opens and metadata changes,
// privilege changes, ptrace, modules, memfd, mount, bpf and kill.
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -type event_header -type process_info -type event_family -type syscall_result -type file_event -type cred_ids -type cred_event -type ptrace_event -type module_event -type memfd_event -type mount_event -type bpf_prog_event -type kill_event -type file_config -type watch_key -type watch_value -type exe_key -type file_event_type -type file_syscall -type file_vflags -type watch_flags -type file_counter -type allow_flags File file.bpf.c -- -I./headers

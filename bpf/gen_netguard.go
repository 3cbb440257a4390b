package bpf

// Network responses: the host packet filter (blocked peers, isolation) for
// TC and the cgroup quarantine programs.
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -type ng_key4 -type ng_key6 -type ng_block -type ng_config -type ng_flags -type ng_counter Netguard netguard.bpf.c -- -I./headers

package bpf

// The network family: TCP connect, accept and close; UDP flows; DNS.
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -mcpu=v3" -target bpfel -type event_header -type process_info -type net_tuple -type tcp_event -type udp_event -type dns_event -type net_event_type -type net_flags -type event_family Net net.bpf.c -- -I./headers

// Package bpf holds Vigil's kernel programs and the Go bindings that bpf2go
// generates for them: one C file and one gen_<family>.go per event family.
// The C sources are compiled by `make generate`; the generated *_bpfel.go
// and *_bpfel.o files are committed so that building the agent needs no
// clang.
package bpf

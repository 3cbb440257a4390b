package login

import (
	"debug/elf"
	"fmt"
)

// entryOffsets returns, for each of symbols in the ELF file at path, the
// offset from the start of the function at which to put its entry probe.
//
// An x86 uprobe replaces an instruction with int3; when it fires, the kernel
// either emulates the displaced instruction (jumps, calls, conditional jumps,
// nops, pushes) or executes it out of line in single-step mode, which costs
// a second trap: measured at about 20 µs per call in a KVM guest, against
// about 1 µs for an emulated one. Linux-PAM's entry points start with the
// NULL-handle check `test %rdi,%rdi; j<cc> ...`: the test is single-stepped,
// the conditional jump is emulated. Probing the jump instead sees the same
// registers and stack (test changes neither rdi nor rsp), so both the
// argument and the return address the uretprobe takes over are where they
// are at entry. Any other prologue is probed at offset 0.
func entryOffsets(path string, symbols []string) (map[string]uint64, error) {
	offs := make(map[string]uint64, len(symbols))
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return offs, nil
	}
	syms, err := f.DynamicSymbols()
	if err != nil {
		return nil, fmt.Errorf("read symbols of %s: %w", path, err)
	}
	for _, name := range symbols {
		for _, s := range syms {
			if s.Name != name || elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Value == 0 {
				continue
			}
			code := functionStart(f, s.Value)
			if skipNullCheck(code) {
				offs[name] = 3
			}
			break
		}
	}
	return offs, nil
}

// functionStart returns the first bytes of the function at address addr.
func functionStart(f *elf.File, addr uint64) []byte {
	for _, sec := range f.Sections {
		if sec.Type != elf.SHT_PROGBITS || addr < sec.Addr || addr >= sec.Addr+sec.Size {
			continue
		}
		code := make([]byte, 8)
		n, _ := sec.ReadAt(code, int64(addr-sec.Addr))
		return code[:n]
	}
	return nil
}

// skipNullCheck reports whether code starts with `test %rdi,%rdi` followed
// by a conditional jump (short 7x, or near 0f 8x).
func skipNullCheck(code []byte) bool {
	if len(code) < 5 || code[0] != 0x48 || code[1] != 0x85 || code[2] != 0xff {
		return false
	}
	return code[3]&0xf0 == 0x70 || (code[3] == 0x0f && code[4]&0xf0 == 0x80)
}

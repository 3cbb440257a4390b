package login

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
)

// ErrNoLibPAM is returned by Load and FindLibPAM when the host has no
// libpam: nothing on it authenticates through PAM, so there is nothing to
// watch. The agent can log it and go on without the login sensor.
var ErrNoLibPAM = errors.New("no libpam on this host")

// LibPAMName is the soname of Linux-PAM's library.
const LibPAMName = "libpam.so.0"

// LdCachePath is the dynamic linker's cache, which maps sonames to files.
const LdCachePath = "/etc/ld.so.cache"

// fallbackPaths are where distributions put libpam, tried when the linker
// cache does not name it.
var fallbackPaths = []string{
	"/lib/x86_64-linux-gnu/libpam.so.0",
	"/lib/aarch64-linux-gnu/libpam.so.0",
	"/usr/lib64/libpam.so.0",
	"/lib64/libpam.so.0",
	"/usr/lib/libpam.so.0",
	"/lib/libpam.so.0",
}

// FindLibPAM returns the path of the libpam the dynamic linker loads for
// programs of this machine's architecture, read from its cache, or from the
// usual places when the cache does not name it. It returns an error matching
// ErrNoLibPAM when there is none.
func FindLibPAM() (string, error) {
	if data, err := os.ReadFile(LdCachePath); err == nil {
		if path, err := lookupLdCache(data, LibPAMName, archFlags()); err == nil {
			if _, err := os.Stat(path); err == nil {
				return path, nil
			}
		}
	}
	for _, p := range fallbackPaths {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: %s is neither in %s nor in the usual library directories", ErrNoLibPAM, LibPAMName, LdCachePath)
}

// Flags of glibc's ld.so.cache entries (elf/cache.h).
const (
	ldFlagTypeMask = 0x00ff
	ldFlagELFLibc6 = 0x0003
	ldFlagArchMask = 0xff00
	ldFlagX8664    = 0x0300
	ldFlagAArch64  = 0x0a00
)

// archFlags returns the ld.so.cache arch flags of this machine's libraries.
func archFlags() int32 {
	switch runtime.GOARCH {
	case "amd64":
		return ldFlagX8664
	case "arm64":
		return ldFlagAArch64
	}
	return -1
}

var (
	ldCacheOldMagic = []byte("ld.so-1.7.0")
	ldCacheNewMagic = []byte("glibc-ld.so.cache1.1")
)

// lookupLdCache finds soname in the bytes of an ld.so.cache (glibc's new
// format, possibly after the old one) and returns the path of the entry for
// a glibc ELF library of the given arch flags.
func lookupLdCache(data []byte, soname string, arch int32) (string, error) {
	base := 0
	if bytes.HasPrefix(data, ldCacheOldMagic) {
		// The old format: magic (11 bytes, padded to 12), nlibs, then 12-byte entries.
		if len(data) < 16 {
			return "", errors.New("short ld.so.cache")
		}
		nlibs := int(binary.LittleEndian.Uint32(data[12:]))
		base = 16 + nlibs*12
		base = (base + 7) &^ 7 // the new cache is aligned
		if base > len(data) {
			return "", errors.New("short ld.so.cache")
		}
	}
	cache := data[base:]
	const headerLen, entryLen = 48, 24
	if !bytes.HasPrefix(cache, ldCacheNewMagic) || len(cache) < headerLen {
		return "", errors.New("ld.so.cache: unknown format")
	}
	nlibs := int(binary.LittleEndian.Uint32(cache[20:]))
	if headerLen+nlibs*entryLen > len(cache) {
		return "", errors.New("ld.so.cache: entries beyond the end")
	}
	str := func(off uint32) string {
		if int(off) >= len(cache) {
			return ""
		}
		s := cache[off:]
		if i := bytes.IndexByte(s, 0); i >= 0 {
			s = s[:i]
		}
		return string(s)
	}
	for i := range nlibs {
		e := cache[headerLen+i*entryLen:]
		flags := int32(binary.LittleEndian.Uint32(e))
		if flags&ldFlagTypeMask != ldFlagELFLibc6 || flags&ldFlagArchMask != arch {
			continue
		}
		if str(binary.LittleEndian.Uint32(e[4:])) == soname {
			return str(binary.LittleEndian.Uint32(e[8:])), nil
		}
	}
	return "", fmt.Errorf("%s not in ld.so.cache", soname)
}

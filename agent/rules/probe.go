package rules

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vigil-sensor/vigil/agent/proctree"
)

// ProcProbe answers Probe questions from /proc.
type ProcProbe struct {
	// Root is the proc mount, normally "/proc".
	Root string
}

// Listening reports whether the process holds a TCP socket in LISTEN state,
// matching its socket descriptors against its network namespace's TCP tables.
func (p ProcProbe) Listening(pid uint32, startTime uint64) bool {
	// Make sure the pid still names the same process.
	e, err := proctree.ReadProc(p.Root, pid)
	if err != nil || !e.SameProcess(startTime) {
		return false
	}
	dir := filepath.Join(p.Root, strconv.FormatUint(uint64(pid), 10))
	sockets := socketInodes(filepath.Join(dir, "fd"))
	if len(sockets) == 0 {
		return false
	}
	for _, table := range []string{"tcp", "tcp6"} {
		if listensOn(filepath.Join(dir, "net", table), sockets) {
			return true
		}
	}
	return false
}

// socketInodes returns the inodes of the sockets among a process's descriptors.
func socketInodes(fdDir string) map[string]bool {
	entries, err := os.ReadDir(fdDir)
	if err != nil {
		return nil
	}
	inodes := make(map[string]bool)
	for _, ent := range entries {
		target, err := os.Readlink(filepath.Join(fdDir, ent.Name()))
		if err != nil {
			continue
		}
		if inode, ok := strings.CutPrefix(target, "socket:["); ok {
			inodes[strings.TrimSuffix(inode, "]")] = true
		}
	}
	return inodes
}

// listenState is the TCP_LISTEN state as /proc/net/tcp prints it.
const listenState = "0A"

// listensOn reports whether any LISTEN row of a /proc/net/tcp table has one of the inodes.
func listensOn(table string, inodes map[string]bool) bool {
	f, err := os.Open(table)
	if err != nil {
		return false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Scan() // header
	for s.Scan() {
		// sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
		fields := strings.Fields(s.Text())
		if len(fields) > 9 && fields[3] == listenState && inodes[fields[9]] {
			return true
		}
	}
	return false
}

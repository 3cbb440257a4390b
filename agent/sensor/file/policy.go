package file

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/cilium/ebpf"

	"github.com/vigil-sensor/vigil/agent/sensor"
	"github.com/vigil-sensor/vigil/bpf"
)

// Kind is a set of event kinds, one bit each.
type Kind uint64

// The event kinds; each bit is 1 << (event type - 10).
const (
	KindOpen        Kind = 1 << (bpf.FileFileEventTypeEVENT_FILE_OPEN - 10)
	KindRename      Kind = 1 << (bpf.FileFileEventTypeEVENT_FILE_RENAME - 10)
	KindUnlink      Kind = 1 << (bpf.FileFileEventTypeEVENT_FILE_UNLINK - 10)
	KindChmod       Kind = 1 << (bpf.FileFileEventTypeEVENT_FILE_CHMOD - 10)
	KindChown       Kind = 1 << (bpf.FileFileEventTypeEVENT_FILE_CHOWN - 10)
	KindLink        Kind = 1 << (bpf.FileFileEventTypeEVENT_FILE_LINK - 10)
	KindSymlink     Kind = 1 << (bpf.FileFileEventTypeEVENT_FILE_SYMLINK - 10)
	KindCred        Kind = 1 << (bpf.FileFileEventTypeEVENT_CRED_CHANGE - 10)
	KindPtrace      Kind = 1 << (bpf.FileFileEventTypeEVENT_PTRACE - 10)
	KindModuleLoad  Kind = 1 << (bpf.FileFileEventTypeEVENT_MODULE_LOAD - 10)
	KindModuleUnld  Kind = 1 << (bpf.FileFileEventTypeEVENT_MODULE_UNLOAD - 10)
	KindMemfd       Kind = 1 << (bpf.FileFileEventTypeEVENT_MEMFD_CREATE - 10)
	KindMount       Kind = 1 << (bpf.FileFileEventTypeEVENT_MOUNT - 10)
	KindUmount      Kind = 1 << (bpf.FileFileEventTypeEVENT_UMOUNT - 10)
	KindBPFProgLoad Kind = 1 << (bpf.FileFileEventTypeEVENT_BPF_PROG_LOAD - 10)
	KindKill        Kind = 1 << (bpf.FileFileEventTypeEVENT_KILL - 10)

	// KindAll enables every kind.
	KindAll = KindOpen | KindRename | KindUnlink | KindChmod | KindChown | KindLink |
		KindSymlink | KindCred | KindPtrace | KindModuleLoad | KindModuleUnld | KindMemfd |
		KindMount | KindUmount | KindBPFProgLoad | KindKill
)

// DefaultWatchPaths are the prefixes whose modification is reported when
// Policy.WatchPaths is nil: opens for write, create or truncate, renames,
// unlinks, chmod, chown, links and symlinks.
var DefaultWatchPaths = []string{
	"/etc", "/root/.ssh", "/var/spool/cron", "/etc/systemd", "/usr/bin", "/usr/sbin",
	"/boot", "/var/log", "/home/*/.ssh", "/lib/modules",
}

// DefaultWatchReads are the prefixes whose opens for read are reported too
// when Policy.WatchReads is nil.
var DefaultWatchReads = []string{
	"/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/etc/sudoers.d", "/root/.ssh", "/home/*/.ssh",
}

// DefaultWatchHidden are the directories where creating or changing a
// hidden entry (a name starting with ".") is reported when
// Policy.WatchHidden is nil: attackers hide tools in temporary directories
// that nobody watches whole, because everything writes there.
var DefaultWatchHidden = []string{"/tmp", "/var/tmp", "/dev/shm"}

// Policy is what the kernel filters on; it can be changed while the sensor runs.
type Policy struct {
	// Kinds are the event kinds to report; 0 means KindAll. Syscalls of
	// kinds not enabled at Load are not hooked at all.
	Kinds Kind
	// WatchPaths are absolute path prefixes (whole components) whose
	// modifications are reported; a component may be "*" (one level, once
	// per pattern), as in /home/*/.ssh. nil means DefaultWatchPaths, an
	// empty non-nil slice watches nothing.
	WatchPaths []string
	// WatchReads are prefixes (same syntax) whose opens for read are
	// reported too. nil means DefaultWatchReads.
	WatchReads []string
	// WatchHidden are directories (no wildcard) in which the entries whose
	// names start with "." are watched like WatchPaths, and everything below
	// them: /tmp/.x, /tmp/.cache/tool. nil means DefaultWatchHidden.
	WatchHidden []string
	// AllowPIDs are processes (thread-group ids) whose events are dropped in
	// the kernel, such as the agent itself.
	AllowPIDs []uint32
	// AllowCgroups are cgroup v2 ids whose tasks' events are dropped.
	AllowCgroups []uint64
	// AllowExes are executables whose processes' events are dropped,
	// identified by the inode the path has when the policy is applied (a
	// replaced binary must be applied again).
	AllowExes []string
	// OnlyCgroup, when non-zero, limits every event to tasks in that cgroup
	// v2 id (to watch one container or service, and for tests).
	OnlyCgroup uint64
}

// watchEntry is one key of the watched-path trie.
type watchEntry struct {
	key     string // path bytes, ending in "/" (a prefix) or "\x00" (the path itself)
	flags   bpf.FileWatchFlags
	headLen uint32
}

var errBadPattern = errors.New("bad watch pattern")

// cleanPattern checks and cleans one watch pattern and returns it with the
// byte length of the part before its wildcard component (0 without one).
func cleanPattern(p string) (string, int, error) {
	if !strings.HasPrefix(p, "/") {
		return "", 0, fmt.Errorf("%w %q: not absolute", errBadPattern, p)
	}
	p = path.Clean(p)
	head := 0
	for i, c := range strings.Split(p, "/") {
		if !strings.Contains(c, "*") {
			continue
		}
		if c != "*" || head != 0 {
			return "", 0, fmt.Errorf("%w %q: only one whole-component * is supported", errBadPattern, p)
		}
		head = len(strings.Join(strings.Split(p, "/")[:i], "/")) + 1
	}
	if len(p)+1 > len(bpf.FileWatchKey{}.Path)-1 {
		return "", 0, fmt.Errorf("%w %q: too long", errBadPattern, p)
	}
	return p, head, nil
}

// buildWatch turns the watch patterns into trie entries. The trie returns
// only the longest matching key, so each key carries the flags of every
// pattern that covers it, and each key under a wildcard head also carries
// that head, so the kernel tries the wildcard form of the path.
func buildWatch(writes, reads, hidden []string) ([]watchEntry, error) {
	type pattern struct {
		re    *regexp.Regexp
		flags bpf.FileWatchFlags
	}
	entries := map[string]*watchEntry{}
	var patterns []pattern
	heads := map[string]uint32{}
	add := func(list []string, flags bpf.FileWatchFlags) error {
		for _, raw := range list {
			p, head, err := cleanPattern(raw)
			if err != nil {
				return err
			}
			keys := []string{p + "/", p + "\x00"}
			if p == "/" {
				keys = []string{"/"}
			}
			for _, k := range keys {
				if entries[k] == nil {
					entries[k] = &watchEntry{key: k}
				}
			}
			// A regexp over keys: the pattern as a prefix, "*" one component.
			parts := strings.Split(strings.TrimSuffix(p, "/"), "/")
			for i, c := range parts {
				if c == "*" {
					parts[i] = "[^/\x00]+"
				} else {
					parts[i] = regexp.QuoteMeta(c)
				}
			}
			expr := "^" + strings.Join(parts, "/") + "(/|\x00$)"
			if p == "/" {
				expr = "^/"
			}
			patterns = append(patterns, pattern{re: regexp.MustCompile(expr), flags: flags})
			if head > 0 {
				h := p[:head]
				heads[h] = uint32(head)
				if entries[h] == nil {
					entries[h] = &watchEntry{key: h}
				}
			}
		}
		return nil
	}
	if err := add(writes, bpf.FileWatchFlagsWATCH_WRITE); err != nil {
		return nil, err
	}
	if err := add(reads, bpf.FileWatchFlagsWATCH_READ|bpf.FileWatchFlagsWATCH_WRITE); err != nil {
		return nil, err
	}
	// A hidden entry of a directory: the key is the bytes "dir/.", which the
	// trie matches as a prefix of every path starting with them.
	for _, raw := range hidden {
		p, head, err := cleanPattern(raw)
		if err != nil {
			return nil, err
		}
		if head > 0 || p == "/" {
			return nil, fmt.Errorf("%w %q: a hidden-entry directory takes no wildcard and is not /", errBadPattern, p)
		}
		k := p + "/."
		if entries[k] == nil {
			entries[k] = &watchEntry{key: k}
		}
		entries[k].flags |= bpf.FileWatchFlagsWATCH_WRITE
	}
	out := make([]watchEntry, 0, len(entries))
	for k, e := range entries {
		for _, pat := range patterns {
			if pat.re.MatchString(k) {
				e.flags |= pat.flags
			}
		}
		// The longest wildcard head this key lies under, if any.
		for h, n := range heads {
			if strings.HasPrefix(k, h) && n > e.headLen {
				e.headLen = n
				e.flags |= bpf.FileWatchFlagsWATCH_WILDCARD_HEAD
			}
		}
		out = append(out, *e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	return out, nil
}

// watchKey is the trie key of an entry: its bytes and their length in bits.
func watchKey(key string) bpf.FileWatchKey {
	var k bpf.FileWatchKey
	k.Prefixlen = uint32(len(key) * 8)
	for i := 0; i < len(key); i++ {
		k.Path[i] = int8(key[i])
	}
	return k
}

// policyMaps are the maps the kernel filters with.
type policyMaps struct {
	config, watch, pids, cgroups, exes *ebpf.Map
}

// apply writes a policy into the maps. The allow-lists and the trie are
// replaced entry by entry, so a policy change is not atomic.
func (m policyMaps) apply(p Policy) error {
	writes, reads := p.WatchPaths, p.WatchReads
	if writes == nil {
		writes = DefaultWatchPaths
	}
	if reads == nil {
		reads = DefaultWatchReads
	}
	hidden := p.WatchHidden
	if hidden == nil {
		hidden = DefaultWatchHidden
	}
	entries, err := buildWatch(writes, reads, hidden)
	if err != nil {
		return err
	}
	exes := make([]bpf.FileExeKey, 0, len(p.AllowExes))
	for _, e := range p.AllowExes {
		x, err := sensor.ExeOf(e)
		if err != nil {
			return fmt.Errorf("allow-listed %w", err)
		}
		exes = append(exes, bpf.FileExeKey{Ino: x.Ino, Dev: x.Dev})
	}

	// Fill the trie and lists first, then drop what the new policy lacks.
	keep := map[string]bool{}
	for _, e := range entries {
		k := watchKey(e.key)
		v := bpf.FileWatchValue{Flags: uint32(e.flags), HeadLen: e.headLen}
		if err := m.watch.Put(&k, &v); err != nil {
			return fmt.Errorf("watch %q: %w", strings.TrimRight(e.key, "\x00"), err)
		}
		keep[e.key] = true
	}
	var k bpf.FileWatchKey
	var stale []bpf.FileWatchKey
	it := m.watch.Iterate()
	var v bpf.FileWatchValue
	for it.Next(&k, &v) {
		b := make([]byte, k.Prefixlen/8)
		for i := range b {
			b[i] = byte(k.Path[i])
		}
		if !keep[string(b)] {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("list watched paths: %w", err)
	}
	for i := range stale {
		if err := m.watch.Delete(&stale[i]); err != nil {
			return fmt.Errorf("unwatch: %w", err)
		}
	}
	if err := sensor.ReplaceSet(m.pids, p.AllowPIDs); err != nil {
		return fmt.Errorf("allow pids: %w", err)
	}
	if err := sensor.ReplaceSet(m.cgroups, p.AllowCgroups); err != nil {
		return fmt.Errorf("allow cgroups: %w", err)
	}
	if err := sensor.ReplaceSet(m.exes, exes); err != nil {
		return fmt.Errorf("allow executables: %w", err)
	}

	kinds := p.Kinds
	if kinds == 0 {
		kinds = KindAll
	}
	cfg := bpf.FileFileConfig{Kinds: uint64(kinds), OnlyCgroup: p.OnlyCgroup}
	if len(p.AllowPIDs) > 0 {
		cfg.AllowFlags |= uint32(bpf.FileAllowFlagsALLOW_PIDS)
	}
	if len(p.AllowCgroups) > 0 {
		cfg.AllowFlags |= uint32(bpf.FileAllowFlagsALLOW_CGROUPS)
	}
	if len(exes) > 0 {
		cfg.AllowFlags |= uint32(bpf.FileAllowFlagsALLOW_EXES)
	}
	zero := uint32(0)
	if err := m.config.Put(&zero, &cfg); err != nil {
		return fmt.Errorf("write file config: %w", err)
	}
	return nil
}

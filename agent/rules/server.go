package rules

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/vigil-sensor/vigil/internal/atomicfile"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// The server's rule set (vigilv1.RuleSet) is a layer of operator files
// between the built-in rules and the host's rules directory: the agent
// compiles the built-in files, then the server's, then the directory's.

// ServerPrefix starts the name of every file of the server's set in a
// compiled Set (Files, Rule.File), as "default/" starts the built-in ones.
const ServerPrefix = "server/"

// ServerSetName is the file in the agent's state directory that keeps the
// last server rule set the agent applied.
const ServerSetName = "rules.server.json"

// DefaultStateDir is the agent's default state directory (the config's
// state_dir), where `rules list` looks for the server's set.
const DefaultStateDir = "/var/lib/vigil-agent"

// Limits of a server rule set.
const (
	// MaxServerFiles bounds the files of a set.
	MaxServerFiles = 256
	// MaxServerBytes bounds the total content of a set's files.
	MaxServerBytes = 2 << 20
	// maxFileName bounds a file name.
	maxFileName = 128
)

// ErrServerSet is wrapped by every error about a server rule set that is
// not about the rules in it: file names, sizes, a hash that does not match.
var ErrServerSet = errors.New("unacceptable rule set")

var fileNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*\.yaml$`)

// CheckRuleFiles checks the names and sizes of a server rule set's files:
// each name is a plain file name ending in .yaml (see vigilv1.RuleFile),
// no name is given twice, and the set is within MaxServerFiles and
// MaxServerBytes. The error wraps ErrServerSet.
func CheckRuleFiles(files []*vigilv1.RuleFile) error {
	if len(files) > MaxServerFiles {
		return fmt.Errorf("%w: %d files, at most %d", ErrServerSet, len(files), MaxServerFiles)
	}
	seen := make(map[string]bool, len(files))
	total := 0
	for i, f := range files {
		name := f.GetName()
		if len(name) > maxFileName || !fileNameRE.MatchString(name) {
			return fmt.Errorf("%w: file #%d: name %q: want letters, digits, '.', '_' and '-' ending in .yaml, at most %d bytes",
				ErrServerSet, i+1, name, maxFileName)
		}
		if seen[name] {
			return fmt.Errorf("%w: file %q given twice", ErrServerSet, name)
		}
		seen[name] = true
		total += len(f.GetContent())
	}
	if total > MaxServerBytes {
		return fmt.Errorf("%w: %d bytes of rules, at most %d", ErrServerSet, total, MaxServerBytes)
	}
	return nil
}

// HashRuleFiles returns the RuleSet.hash of files, in their order:
// "sha256:" and the hex SHA-256 of, for each file, its name, a NUL, the
// decimal length of its content, a NUL and the content.
func HashRuleFiles(files []*vigilv1.RuleFile) string {
	h := sha256.New()
	for _, f := range files {
		h.Write([]byte(f.GetName()))
		h.Write([]byte{0})
		h.Write([]byte(strconv.Itoa(len(f.GetContent()))))
		h.Write([]byte{0})
		h.Write([]byte(f.GetContent()))
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// CheckServerSet checks a rule set the server sent: its files (see
// CheckRuleFiles) and that its hash is theirs. The error wraps
// ErrServerSet.
func CheckServerSet(rs *vigilv1.RuleSet) error {
	if rs == nil {
		return fmt.Errorf("%w: no rule set", ErrServerSet)
	}
	if err := CheckRuleFiles(rs.GetFiles()); err != nil {
		return err
	}
	if got := HashRuleFiles(rs.GetFiles()); got != rs.GetHash() {
		return fmt.Errorf("%w: hash %q does not match the files (%s)", ErrServerSet, rs.GetHash(), got)
	}
	return nil
}

// serverSources returns the files of a server set as sources named
// prefix+NAME.
func serverSources(files []*vigilv1.RuleFile, prefix string) []Source {
	out := make([]Source, 0, len(files))
	for _, f := range files {
		out = append(out, Source{Name: prefix + f.GetName(), Data: []byte(f.GetContent())})
	}
	return out
}

// ValidateRuleFiles compiles the built-in rules with files, as an agent
// without rule files of its own would load a server set of them, after
// checking their names (CheckRuleFiles). Errors name the files as given.
func ValidateRuleFiles(files []*vigilv1.RuleFile) error {
	if err := CheckRuleFiles(files); err != nil {
		return err
	}
	defaults, err := DefaultFiles()
	if err != nil {
		return err
	}
	_, err = Compile(defaults, serverSources(files, ""))
	return err
}

// CompileLayers compiles the built-in rules, the files of the server's set
// (nil: none) and every *.yaml file of dirs, in that order. The set
// remembers the server set's version and hash (see Set.Server).
func CompileLayers(server *vigilv1.RuleSet, dirs ...string) (*Set, error) {
	local, err := DirFiles(dirs...)
	if err != nil {
		return nil, err
	}
	return compileLayers(server, local)
}

// compileLayers is CompileLayers with the host's rule files already read.
func compileLayers(server *vigilv1.RuleSet, local []Source) (*Set, error) {
	defaults, err := DefaultFiles()
	if err != nil {
		return nil, err
	}
	operator := append(serverSources(server.GetFiles(), ServerPrefix), local...)
	set, err := Compile(defaults, operator)
	if err != nil {
		return nil, err
	}
	set.serverVersion, set.serverHash = server.GetVersion(), server.GetHash()
	return set, nil
}

// ServerErrors returns the problems of an error of CompileLayers as
// RuleError messages, naming the server set's files without ServerPrefix.
func ServerErrors(err error) []*vigilv1.RuleError {
	var out []*vigilv1.RuleError
	for _, e := range Errors(err) {
		out = append(out, &vigilv1.RuleError{
			File: strings.TrimPrefix(e.File, ServerPrefix), Line: uint32(max(e.Line, 0)), Column: uint32(max(e.Column, 0)),
			Item: e.Item, Message: e.Msg,
		})
	}
	return out
}

// ErrorText returns the problems of an error of Load, Compile or
// CompileLayers one a line, naming the server set's files without
// ServerPrefix; other errors as they are.
func ErrorText(err error) string {
	list := Errors(err)
	if len(list) == 0 {
		return err.Error()
	}
	lines := make([]string, len(list))
	for i, e := range list {
		c := *e
		c.File = strings.TrimPrefix(c.File, ServerPrefix)
		lines[i] = c.Error()
	}
	return strings.Join(lines, "\n")
}

// LoadServerSet reads the server rule set kept at path (see SaveServerSet)
// and checks it (CheckServerSet). A missing file is no set: nil, nil.
func LoadServerSet(path string) (*vigilv1.RuleSet, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read server rule set: %w", err)
	}
	rs := &vigilv1.RuleSet{}
	if err := protojson.Unmarshal(b, rs); err != nil {
		return nil, fmt.Errorf("read server rule set %s: %w", path, err)
	}
	if err := CheckServerSet(rs); err != nil {
		return nil, fmt.Errorf("read server rule set %s: %w", path, err)
	}
	return rs, nil
}

// SaveServerSet keeps rs at path as JSON, replacing the file atomically:
// after a crash the file holds the old set or the new one, never a mix.
func SaveServerSet(path string, rs *vigilv1.RuleSet) error {
	b, err := protojson.MarshalOptions{Multiline: true}.Marshal(rs)
	if err != nil {
		return fmt.Errorf("save server rule set: %w", err)
	}
	if err := atomicfile.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("save server rule set: %w", err)
	}
	return nil
}

// Loader compiles the agent's rules from their layers: the built-in rules,
// the server's set and the host's rule directories. The server's set can
// be changed while a Watcher uses the loader. It is safe for concurrent use.
type Loader struct {
	dirs []string

	mu     sync.Mutex
	server *vigilv1.RuleSet
}

// NewLoader returns a loader of the built-in rules, server (nil: none)
// and the *.yaml files of dirs.
func NewLoader(server *vigilv1.RuleSet, dirs ...string) *Loader {
	return &Loader{dirs: dirs, server: server}
}

// Dirs returns the loader's rule directories.
func (l *Loader) Dirs() []string { return l.dirs }

// Server returns the server set the loader compiles (nil: none).
func (l *Loader) Server() *vigilv1.RuleSet {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.server
}

// SetServer makes the loader compile rs as the server's set from now on.
func (l *Loader) SetServer(rs *vigilv1.RuleSet) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.server = rs
}

// Load compiles the three layers as they are now.
func (l *Loader) Load() (*Set, error) {
	return CompileLayers(l.Server(), l.dirs...)
}

// Try compiles the built-in rules, rs in place of the loader's server set,
// and the directories, without changing the loader.
func (l *Loader) Try(rs *vigilv1.RuleSet) (*Set, error) {
	return CompileLayers(rs, l.dirs...)
}

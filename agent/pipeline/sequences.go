package pipeline

import (
	"bytes"
	"encoding/gob"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vigil-sensor/vigil/agent/event"
	"github.com/vigil-sensor/vigil/agent/proctree"
	"github.com/vigil-sensor/vigil/agent/seqmodel"
	"github.com/vigil-sensor/vigil/internal/atomicfile"
)

// SequencesFile keeps the learned per-executable sequence models in the
// state directory.
const SequencesFile = "sequence-models.gob"

// Limits of the sequence models.
const (
	// maxSeqExes bounds the executables with a model.
	maxSeqExes = 512
	// maxSeqProcs bounds the processes followed at once.
	maxSeqProcs = 8192
	// maxSeqLen bounds the events kept per process; later ones are not modelled.
	maxSeqLen = 512
	// minSeqLen is the shortest sequence judged: shorter ones say too little.
	minSeqLen = 4
	// minSeqTraces is how many processes of an executable the model must
	// have learned before it judges one.
	minSeqTraces = 20
	// seqThreshold is the mean surprise per event, in nats, above which a
	// process's sequence is flagged (e^-3: on average each step had about a
	// 1-in-20 chance under the model).
	seqThreshold = 3.0
)

// Tokens of the sequence models: what one event did, in the order the
// process did it. Logins and process lifecycle other than exec are left out.
const (
	tokExec = iota + 1
	tokOpenRead
	tokOpenWrite
	tokRename
	tokUnlink
	tokChmod
	tokChown
	tokLink
	tokSymlink
	tokCred
	tokPtrace
	tokModule
	tokMemfd
	tokMount
	tokBPF
	tokKill
	tokConnect
	tokAccept
	tokClose
	tokUDP
	tokDNS
)

// tokenOf maps an event to its token; 0 for events not modelled.
func tokenOf(ev any) int {
	switch e := ev.(type) {
	case *event.Exec:
		return tokExec
	case *event.File:
		switch e.Op {
		case event.FileOpen:
			if e.Write || e.Create || e.Truncate {
				return tokOpenWrite
			}
			return tokOpenRead
		case event.FileRename:
			return tokRename
		case event.FileUnlink:
			return tokUnlink
		case event.FileChmod:
			return tokChmod
		case event.FileChown:
			return tokChown
		case event.FileLink:
			return tokLink
		case event.FileSymlink:
			return tokSymlink
		}
	case *event.CredChange:
		return tokCred
	case *event.Ptrace:
		return tokPtrace
	case *event.Module:
		return tokModule
	case *event.MemfdCreate:
		return tokMemfd
	case *event.Mount:
		return tokMount
	case *event.BPFProgLoad:
		return tokBPF
	case *event.Kill:
		return tokKill
	case *event.TCPConnect:
		return tokConnect
	case *event.TCPAccept:
		return tokAccept
	case *event.TCPClose:
		return tokClose
	case *event.UDPFlow:
		return tokUDP
	case *event.DNS:
		return tokDNS
	}
	return 0
}

// tokenNames name the tokens in reasons.
var tokenNames = map[int]string{
	tokExec: "exec", tokOpenRead: "open for reading", tokOpenWrite: "open for writing", tokRename: "rename",
	tokUnlink: "unlink", tokChmod: "chmod", tokChown: "chown", tokLink: "link", tokSymlink: "symlink",
	tokCred: "credential change", tokPtrace: "ptrace", tokModule: "module load", tokMemfd: "memfd_create",
	tokMount: "mount", tokBPF: "bpf program load", tokKill: "kill", tokConnect: "connect", tokAccept: "accept",
	tokClose: "connection close", tokUDP: "UDP flow", tokDNS: "DNS",
}

// sequenceText writes a sequence as "exec -> connect -> ...", eliding the
// middle of a long one.
func sequenceText(tokens []int) string {
	const keep = 8
	var parts []string
	for i, t := range tokens {
		if len(tokens) > 2*keep && i == keep {
			parts = append(parts, fmt.Sprintf("... %d more ...", len(tokens)-2*keep))
		}
		if len(tokens) > 2*keep && i >= keep && i < len(tokens)-keep {
			continue
		}
		parts = append(parts, tokenNames[t])
	}
	return strings.Join(parts, " -> ")
}

// seqKey identifies a process.
type seqKey struct {
	pid   uint32
	start uint64
}

// procSeq is what one process did so far.
type procSeq struct {
	exe    string
	tokens []int
}

// sequences learns, per executable, the order in which its processes do
// the things the sensors see (exec, opens, renames, credential changes,
// connects, ...), with the same model code that vigil-agent model eval
// scores on ADFA-LD, and flags a process whose whole sequence the model of
// its executable finds improbable, when the process exits. It learns for
// the learning period, then judges.
type sequences struct {
	period time.Duration
	until  time.Time // end of learning; zero until the first event
	models map[string]*seqmodel.Model
	procs  map[seqKey]*procSeq
}

func newSequences(period time.Duration) *sequences {
	if period <= 0 {
		period = 24 * time.Hour
	}
	return &sequences{period: period, models: map[string]*seqmodel.Model{}, procs: map[seqKey]*procSeq{}}
}

// rareSequence is a process whose sequence its executable's model finds improbable.
type rareSequence struct {
	exe    string
	score  float64
	reason string
}

// observe adds one event of process entry; at its exit it learns the
// sequence or judges it, returning a finding when it is rare.
func (s *sequences) observe(ev any, at time.Time, entry *proctree.Entry) *rareSequence {
	if entry == nil {
		return nil
	}
	if s.until.IsZero() {
		s.until = at.Add(s.period)
	}
	key := seqKey{entry.PID, entry.StartTime}
	if _, ok := ev.(*event.Exit); ok {
		p := s.procs[key]
		delete(s.procs, key)
		if p == nil || len(p.tokens) == 0 || p.exe == "" {
			return nil
		}
		return s.finish(p, at)
	}
	tok := tokenOf(ev)
	if tok == 0 {
		return nil
	}
	p := s.procs[key]
	if tok == tokExec {
		// A new image starts a new sequence: what the old one did is judged
		// as if it had exited.
		var out *rareSequence
		if p != nil && len(p.tokens) > 0 && p.exe != "" {
			out = s.finish(p, at)
		}
		p = &procSeq{exe: entry.Exe}
		if len(s.procs) < maxSeqProcs {
			s.procs[key] = p
		}
		p.tokens = append(p.tokens, tok)
		return out
	}
	if p == nil {
		if len(s.procs) >= maxSeqProcs || entry.Exe == "" {
			return nil
		}
		p = &procSeq{exe: entry.Exe}
		s.procs[key] = p
	}
	if len(p.tokens) < maxSeqLen {
		p.tokens = append(p.tokens, tok)
	}
	return nil
}

// finish learns or judges a finished sequence.
func (s *sequences) finish(p *procSeq, at time.Time) *rareSequence {
	m := s.models[p.exe]
	if at.Before(s.until) {
		if m == nil {
			if len(s.models) >= maxSeqExes {
				return nil
			}
			m = seqmodel.New(seqmodel.Options{})
			s.models[p.exe] = m
		}
		_ = m.Train(p.tokens) // tokens are small non-negative ints: no bad token
		return nil
	}
	if m == nil || m.Traces() < minSeqTraces || len(p.tokens) < minSeqLen {
		return nil
	}
	score := m.Score(p.tokens)
	if score <= seqThreshold {
		return nil
	}
	return &rareSequence{exe: p.exe, score: score, reason: fmt.Sprintf("%s did things in an order its %d learned runs never showed: %s (mean surprise %.2f nats per event)",
		p.exe, m.Traces(), sequenceText(p.tokens), score)}
}

// seqFile is the saved form of the models.
type seqFile struct {
	Version int
	Until   time.Time
	Models  map[string][]byte
}

const seqFileVersion = 1

// save writes the models to path atomically.
func (s *sequences) save(path string) error {
	f := seqFile{Version: seqFileVersion, Until: s.until, Models: map[string][]byte{}}
	for exe, m := range s.models {
		var b bytes.Buffer
		if err := m.Save(&b); err != nil {
			return fmt.Errorf("save sequence model of %s: %w", exe, err)
		}
		f.Models[exe] = b.Bytes()
	}
	var b bytes.Buffer
	if err := gob.NewEncoder(&b).Encode(&f); err != nil {
		return fmt.Errorf("encode sequence models: %w", err)
	}
	if err := atomicfile.WriteFile(path, b.Bytes(), 0o600); err != nil {
		return fmt.Errorf("save sequence models: %w", err)
	}
	return nil
}

// load reads models saved by save; a damaged file leaves s unchanged.
func (s *sequences) load(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("load sequence models: %w", err)
	}
	var f seqFile
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&f); err != nil {
		return fmt.Errorf("load sequence models %s: %w", filepath.Base(path), err)
	}
	if f.Version != seqFileVersion {
		return fmt.Errorf("load sequence models %s: version %d, want %d", filepath.Base(path), f.Version, seqFileVersion)
	}
	models := make(map[string]*seqmodel.Model, len(f.Models))
	for exe, data := range f.Models {
		m, err := seqmodel.Load(bytes.NewReader(data))
		if err != nil {
			return fmt.Errorf("load sequence model of %s: %w", exe, err)
		}
		models[exe] = m
	}
	if len(models) > maxSeqExes {
		return errors.New("load sequence models: more executables than the agent keeps")
	}
	s.models, s.until = models, f.Until
	return nil
}

// Save and Load let the pipeline's state files treat the models like the
// anomaly trackers.
func (s *sequences) Save(path string) error { return s.save(path) }

// Load reads the models saved at path.
func (s *sequences) Load(path string) error { return s.load(path) }

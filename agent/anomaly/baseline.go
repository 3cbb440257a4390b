package anomaly

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-sensor/vigil/agent/event"
	"github.com/vigil-sensor/vigil/agent/proctree"
)

// Kind names what a Finding found unusual.
type Kind string

// The kinds of findings.
const (
	// KindRareChild: an executable started a program it does not usually start.
	KindRareChild Kind = "rare-child"
	// KindRareFile: an executable touched a file it does not usually touch.
	KindRareFile Kind = "rare-file"
	// KindRareDestination: an executable reached a network destination (an
	// address and port, or a DNS name it looked up) it does not usually reach.
	KindRareDestination Kind = "rare-destination"
	// KindRareUser: an executable ran as a user it does not usually run as.
	KindRareUser Kind = "rare-user"
	// KindRareVolume: a connection sent far more than its executable's
	// connections usually send (reported by Flows).
	KindRareVolume Kind = "rare-volume"
)

// Finding is one observation a scorer found unusual, with its reason in words.
type Finding struct {
	// Kind is what was unusual.
	Kind Kind
	// Exe is the executable whose behaviour it was (for rare-child, the parent).
	Exe string
	// Item is the behaviour as the scorer learns it: the child's executable,
	// the generalised path (GeneralizePath), the destination ("addr:port" or
	// a DNS name), the user id, or for rare-volume the destination.
	// Baseline.Accept takes the same value.
	Item string
	// Score is how surprising the observation is, from 0 to 1.
	Score float64
	// Reason says in a sentence what was seen and why it is unusual.
	Reason string
	// Time is the time of the event that caused the finding.
	Time time.Time
}

// Defaults of BaselineOptions.
const (
	// DefaultLearningPeriod is how long after its first event a scorer only learns.
	DefaultLearningPeriod = 24 * time.Hour
	// DefaultHalfLife is how long it takes for the weight of an observation to halve.
	DefaultHalfLife = 14 * 24 * time.Hour
	// DefaultRareBelow is the decayed weight under which a behaviour is rare:
	// one observation stays known for one half-life.
	DefaultRareBelow = 0.5
	// DefaultMinHistory is how many observations an executable needs before
	// its behaviour is scored.
	DefaultMinHistory = 10
	// DefaultAcceptWeight is the weight Accept and Learn give a behaviour:
	// with the default threshold, it stays known for three half-lives
	// without being seen again.
	DefaultAcceptWeight = 4
	// DefaultMaxExes bounds the executables a Baseline remembers.
	DefaultMaxExes = 1024
	// DefaultMaxItemsPerExe bounds the behaviours (all kinds together) a
	// Baseline remembers per executable.
	DefaultMaxItemsPerExe = 128
)

// establishedHalf is the number of earlier observations at which an
// executable counts as half established: the establishment factor of a
// score is n/(n+establishedHalf), 0.5 at 10 observations, 0.9 at 90.
const establishedHalf = 10

// BaselineOptions tune a Baseline. Zero (or negative) fields take the defaults.
//
// Memory: each remembered behaviour costs about 150 bytes (its key, a weight
// and a time, and the map's overhead), so the default caps (1,024
// executables of at most 128 behaviours each) bound a Baseline to about
// 20 MB in the worst case; a typical host stays under 2 MB.
type BaselineOptions struct {
	// LearningPeriod is how long after the first event everything is
	// recorded and nothing flagged (DefaultLearningPeriod).
	LearningPeriod time.Duration
	// HalfLife is the half-life of an observation's weight (DefaultHalfLife):
	// behaviour that stops being seen fades and becomes rare again.
	HalfLife time.Duration
	// RareBelow is the decayed weight below which a behaviour is rare
	// (DefaultRareBelow). Each observation adds 1.
	RareBelow float64
	// MinHistory is the number of earlier observations (all kinds) an
	// executable needs before its behaviour is scored (DefaultMinHistory). A
	// new executable is reported through its parent's rare-child finding; its
	// own first behaviours are learned without findings.
	MinHistory int
	// AcceptWeight is the weight Accept and Learn add (DefaultAcceptWeight).
	AcceptWeight float64
	// MaxExes bounds the executables remembered (DefaultMaxExes); when full,
	// the least active one (decayed count of observations) is forgotten.
	MaxExes int
	// MaxItemsPerExe bounds the behaviours remembered per executable
	// (DefaultMaxItemsPerExe); when full, the least-weighted one is forgotten.
	MaxItemsPerExe int
}

// withDefaults fills the zero fields of o.
func (o BaselineOptions) withDefaults() BaselineOptions {
	if o.LearningPeriod <= 0 {
		o.LearningPeriod = DefaultLearningPeriod
	}
	if o.HalfLife <= 0 {
		o.HalfLife = DefaultHalfLife
	}
	if o.RareBelow <= 0 {
		o.RareBelow = DefaultRareBelow
	}
	if o.MinHistory <= 0 {
		o.MinHistory = DefaultMinHistory
	}
	if o.AcceptWeight <= 0 {
		o.AcceptWeight = DefaultAcceptWeight
	}
	if o.MaxExes <= 0 {
		o.MaxExes = DefaultMaxExes
	}
	if o.MaxItemsPerExe <= 0 {
		o.MaxItemsPerExe = DefaultMaxItemsPerExe
	}
	return o
}

// decayed is a weight that halves every half-life: W as of T (unix ns).
type decayed struct {
	W float64 `json:"w"`
	T int64   `json:"t"`
}

// at returns the weight as of t; it never grows when t is before T.
func (d decayed) at(t int64, halfLife time.Duration) float64 {
	dt := t - d.T
	if dt <= 0 || d.W == 0 {
		return d.W
	}
	return d.W * math.Exp2(-float64(dt)/float64(halfLife))
}

// add decays the weight to t and adds w. An event older than T adds w
// without decay, so the weight never runs backwards.
func (d *decayed) add(t int64, w float64, halfLife time.Duration) {
	if t < d.T {
		d.W += w
		return
	}
	d.W = d.at(t, halfLife) + w
	d.T = t
}

// kindIndex selects one of the four kinds a Baseline learns.
type kindIndex int

const (
	kChild kindIndex = iota
	kFile
	kDest
	kUser
	numKinds
)

// kindText is how the reasons speak of one kind.
type kindText struct {
	kind Kind
	// noun names the earlier observations of the kind: "executions".
	noun string
	// first completes "X started Y, " when the exe never did anything of
	// this kind: "the first program it has started".
	first string
}

var kindTexts = [numKinds]kindText{
	kChild: {KindRareChild, "executions", "the first program it has started"},
	kFile:  {KindRareFile, "file events", "the first watched file it has touched"},
	kDest:  {KindRareDestination, "network events", "its first network destination"},
	kUser:  {KindRareUser, "executions", "its first execution seen"},
}

// kindOf maps a Kind to its index.
func kindOf(k Kind) (kindIndex, bool) {
	for i, t := range kindTexts {
		if t.kind == k {
			return kindIndex(i), true
		}
	}
	return 0, false
}

// kindRecord is what an executable did of one kind.
type kindRecord struct {
	// Count is the number of observations of the kind.
	Count uint64 `json:"count"`
	// First is the time of the first one (unix ns).
	First int64 `json:"first"`
	// Items are the behaviours with their decayed weights.
	Items map[string]decayed `json:"items,omitempty"`
}

// exeRecord is what a Baseline knows of one executable.
type exeRecord struct {
	// First is the time of its first observation (unix ns).
	First int64 `json:"first"`
	// Count is its number of observations of every kind.
	Count uint64 `json:"count"`
	// Activity is the decayed count of observations; the least active
	// executable is forgotten first.
	Activity decayed `json:"activity"`
	// Child, File, Destination and User are its behaviours of each kind.
	Child       kindRecord `json:"child"`
	File        kindRecord `json:"file"`
	Destination kindRecord `json:"destination"`
	User        kindRecord `json:"user"`
}

// kind returns the record of one kind.
func (e *exeRecord) kind(k kindIndex) *kindRecord {
	switch k {
	case kChild:
		return &e.Child
	case kFile:
		return &e.File
	case kDest:
		return &e.Destination
	default:
		return &e.User
	}
}

// items is the number of behaviours remembered, all kinds together.
func (e *exeRecord) items() int {
	return len(e.Child.Items) + len(e.File.Items) + len(e.Destination.Items) + len(e.User.Items)
}

// baselineState is what a Baseline saves.
type baselineState struct {
	// Start is the time of the first event (unix ns); 0 before any.
	Start int64 `json:"start"`
	// Now is the time of the latest event (unix ns).
	Now int64 `json:"now"`
	// Exes are the executables by path.
	Exes map[string]*exeRecord `json:"exes"`
}

// Baseline learns, per executable, which programs it starts, which files it
// touches, which destinations it reaches and as which users it runs, and
// reports what is rare. It is not safe for concurrent use.
type Baseline struct {
	opts BaselineOptions
	st   baselineState
}

// NewBaseline returns an empty Baseline whose learning period starts at the
// first event it observes.
func NewBaseline(opts BaselineOptions) *Baseline {
	return &Baseline{opts: opts.withDefaults(), st: baselineState{Exes: make(map[string]*exeRecord)}}
}

// Learning reports whether the baseline is still in its learning period as
// of the latest event it observed (true before any event).
func (b *Baseline) Learning() bool {
	return b.st.Start == 0 || b.st.Now < b.st.Start+int64(b.opts.LearningPeriod)
}

// LearningEnds returns when the learning period ends (the zero time before
// any event).
func (b *Baseline) LearningEnds() time.Time {
	if b.st.Start == 0 {
		return time.Time{}
	}
	return time.Unix(0, b.st.Start+int64(b.opts.LearningPeriod))
}

// Len returns the number of executables and of behaviours remembered.
func (b *Baseline) Len() (exes, items int) {
	for _, e := range b.st.Exes {
		items += e.items()
	}
	return len(b.st.Exes), items
}

// observation is one behaviour of one executable, as Observe extracts it.
type observation struct {
	kind kindIndex
	exe  string
	item string
	// shown is how the reason names the item (the real path rather than the
	// generalised one, "uid 0" rather than "0").
	shown string
	// verb and perfect are how the reason says what happened: "started" and
	// "started", "ran as" and "run as".
	verb, perfect string
}

// Observe learns from one event and returns what it found rare. It handles:
//
//   - *event.Exec: the pair parent exe → new exe (rare-child, for the
//     parent; parent may be nil) and the real uid that ran the new exe
//     (rare-user);
//   - *event.File: the generalised path, for proc's executable (rare-file);
//   - *event.TCPConnect (established only), *event.UDPFlow (outbound only)
//     and *event.DNS (outbound queries): the remote address and port or the
//     name looked up, for proc's executable (rare-destination).
//
// proc is the process of the event as the process tree knows it (for Exec,
// after the exec); events whose executable is unknown are ignored, and so
// are other event types. Nothing is reported during the learning period or
// for an executable with fewer than MinHistory earlier observations.
// Every observation is learned after it is scored, so a behaviour is
// reported once and then stays known while it keeps being seen.
func (b *Baseline) Observe(ev any, proc, parent *proctree.Entry) []Finding {
	procExe := ""
	if proc != nil {
		procExe = proc.Exe
	}
	var out []Finding
	switch e := ev.(type) {
	case *event.Exec:
		exe := e.Exe
		if exe == "" {
			exe = procExe
		}
		if exe == "" {
			return nil
		}
		if parent != nil && parent.Exe != "" {
			out = b.observe(out, e.Time, observation{kind: kChild, exe: parent.Exe, item: exe, shown: exe, verb: "started", perfect: "started"})
		}
		uid := strconv.FormatUint(uint64(e.Process.UID), 10)
		out = b.observe(out, e.Time, observation{kind: kUser, exe: exe, item: uid, shown: "uid " + uid, verb: "ran as", perfect: "run as"})
	case *event.File:
		if procExe == "" || e.Path == "" {
			return nil
		}
		out = b.observe(out, e.Time, observation{kind: kFile, exe: procExe, item: GeneralizePath(e.Path), shown: e.Path, verb: "touched", perfect: "touched"})
	case *event.TCPConnect:
		if procExe == "" || e.Failed {
			return nil
		}
		dst := e.Remote.String()
		out = b.observe(out, e.Time, observation{kind: kDest, exe: procExe, item: dst, shown: dst, verb: "connected to", perfect: "connected to"})
	case *event.UDPFlow:
		if procExe == "" || e.Direction != event.Outbound {
			return nil
		}
		dst := e.Remote.String()
		out = b.observe(out, e.Time, observation{kind: kDest, exe: procExe, item: dst, shown: dst, verb: "sent to", perfect: "sent to"})
	case *event.DNS:
		if procExe == "" || e.NoProcess || e.Response || e.Direction != event.Outbound || e.Name == "" {
			return nil
		}
		name := strings.ToLower(e.Name)
		out = b.observe(out, e.Time, observation{kind: kDest, exe: procExe, item: name, shown: name, verb: "looked up", perfect: "looked up"})
	}
	return out
}

// observe scores one observation, appends a finding to out if it is rare,
// and learns it.
func (b *Baseline) observe(out []Finding, when time.Time, o observation) []Finding {
	t := when.UnixNano()
	if b.st.Start == 0 {
		b.st.Start = t
	}
	if t > b.st.Now {
		b.st.Now = t
	}
	learning := t < b.st.Start+int64(b.opts.LearningPeriod)
	rec := b.exe(o.exe, t)
	kr := rec.kind(o.kind)
	prev, seen := kr.Items[o.item]
	if !learning && rec.Count >= uint64(b.opts.MinHistory) {
		w := prev.at(t, b.opts.HalfLife)
		if w < b.opts.RareBelow {
			out = append(out, b.finding(when, o, rec, kr, prev, seen, w))
		}
	}
	// Learn it.
	rec.Count++
	rec.Activity.add(t, 1, b.opts.HalfLife)
	if kr.Count == 0 {
		kr.First = t
	}
	kr.Count++
	b.addItem(rec, o.kind, o.item, t, 1)
	return out
}

// finding builds the Finding of a rare observation with weight w (prev is
// the item as it was, seen whether it was remembered at all).
func (b *Baseline) finding(when time.Time, o observation, rec *exeRecord, kr *kindRecord, prev decayed, seen bool, w float64) Finding {
	t := when.UnixNano()
	text := kindTexts[o.kind]
	var reason string
	switch {
	case kr.Count == 0:
		reason = fmt.Sprintf("%s %s %s, %s in %s earlier events over %s",
			o.exe, o.verb, o.shown, text.first, formatCount(rec.Count), formatSpan(time.Duration(t-rec.First)))
	case seen && w > 0:
		reason = fmt.Sprintf("%s %s %s, which it has not %s for %s (%s earlier %s over %s)",
			o.exe, o.verb, o.shown, o.perfect, formatSpan(time.Duration(t-prev.T)),
			formatCount(kr.Count), text.noun, formatSpan(time.Duration(t-kr.First)))
	default:
		reason = fmt.Sprintf("%s %s %s, which it has not %s in %s earlier %s over %s",
			o.exe, o.verb, o.shown, o.perfect, formatCount(kr.Count), text.noun, formatSpan(time.Duration(t-kr.First)))
	}
	return Finding{
		Kind:   text.kind,
		Exe:    o.exe,
		Item:   o.item,
		Score:  score(rec.Count, w, b.opts.RareBelow),
		Reason: reason,
		Time:   when,
	}
}

// score combines how established an executable is (n earlier observations)
// with how rare the behaviour is (its decayed weight w against the
// threshold): n/(n+10) × (1 − w/rareBelow), in [0, 1].
func score(n uint64, w, rareBelow float64) float64 {
	est := float64(n) / (float64(n) + establishedHalf)
	rarity := 1 - w/rareBelow
	return math.Min(1, math.Max(0, est*rarity))
}

// exe returns the record of an executable, making one (and forgetting the
// least active executable if the table is full) when there is none.
func (b *Baseline) exe(name string, t int64) *exeRecord {
	if rec, ok := b.st.Exes[name]; ok {
		return rec
	}
	for len(b.st.Exes) >= b.opts.MaxExes {
		b.evictExe()
	}
	rec := &exeRecord{First: t, Activity: decayed{T: t}}
	b.st.Exes[name] = rec
	return rec
}

// evictExe forgets the least active executable (ties: the first by name).
func (b *Baseline) evictExe() {
	victim, least := "", math.Inf(1)
	for name, rec := range b.st.Exes {
		w := rec.Activity.at(b.st.Now, b.opts.HalfLife)
		if w < least || (w == least && name < victim) {
			victim, least = name, w
		}
	}
	delete(b.st.Exes, victim)
}

// addItem adds weight w to a behaviour at t, forgetting the least-weighted
// other behaviour of the executable if it then has too many.
func (b *Baseline) addItem(rec *exeRecord, k kindIndex, item string, t int64, w float64) {
	kr := rec.kind(k)
	if kr.Items == nil {
		kr.Items = make(map[string]decayed)
	}
	d, ok := kr.Items[item]
	if !ok {
		d.T = t
	}
	d.add(t, w, b.opts.HalfLife)
	kr.Items[item] = d
	for rec.items() > b.opts.MaxItemsPerExe {
		b.evictItem(rec, k, item)
	}
}

// evictItem forgets the least-weighted behaviour of rec other than keep
// (ties: the first kind, then the first by name).
func (b *Baseline) evictItem(rec *exeRecord, keepKind kindIndex, keep string) {
	vk, victim, least := kindIndex(-1), "", math.Inf(1)
	for k := kChild; k < numKinds; k++ {
		for name, d := range rec.kind(k).Items {
			if k == keepKind && name == keep {
				continue
			}
			w := d.at(b.st.Now, b.opts.HalfLife)
			if w < least || (w == least && (k < vk || (k == vk && name < victim))) {
				vk, victim, least = k, name, w
			}
		}
	}
	if vk < 0 {
		return
	}
	delete(rec.kind(vk).Items, victim)
}

// errNoTime is returned by Accept before the baseline has seen any event.
var errNoTime = errors.New("the baseline has seen no event yet, so it has no time to record the behaviour at")

// Accept records that an analyst labelled a behaviour benign: it adds
// AcceptWeight to (kind, exe, item) as of the latest event observed, so that
// the behaviour is no longer rare (with the defaults, for three half-lives
// even if it is not seen again). item is as in Finding.Item; a file path is
// generalised. rare-volume cannot be accepted: Flows' means already absorb
// every connection.
func (b *Baseline) Accept(kind Kind, exe, item string) error {
	if b.st.Now == 0 {
		return fmt.Errorf("accept %s %s %s: %w", kind, exe, item, errNoTime)
	}
	return b.accept(kind, exe, item, b.st.Now)
}

// Learn is Accept for a finding this baseline reported, as of the finding's
// time or the latest event observed, whichever is later.
func (b *Baseline) Learn(f Finding) error {
	t := f.Time.UnixNano()
	if b.st.Now > t {
		t = b.st.Now
	}
	return b.accept(f.Kind, f.Exe, f.Item, t)
}

// accept adds AcceptWeight to a behaviour at t.
func (b *Baseline) accept(kind Kind, exe, item string, t int64) error {
	k, ok := kindOf(kind)
	if !ok {
		return fmt.Errorf("accept %s: a Baseline learns only rare-child, rare-file, rare-destination and rare-user", kind)
	}
	if exe == "" || item == "" {
		return fmt.Errorf("accept %s: executable and item must be set", kind)
	}
	if k == kFile {
		item = GeneralizePath(item)
	}
	if b.st.Start == 0 {
		b.st.Start = t
	}
	if t > b.st.Now {
		b.st.Now = t
	}
	b.addItem(b.exe(exe, t), k, item, t, b.opts.AcceptWeight)
	return nil
}

// Save writes what the baseline learned to path (normally
// <state dir>/BaselineFile) atomically, as versioned JSON.
func (b *Baseline) Save(path string) error {
	return saveState(path, "baseline", &b.st)
}

// Load replaces what the baseline learned with the contents of path. On
// error the baseline is unchanged: a missing file matches fs.ErrNotExist, a
// damaged one ErrCorrupt, one of another version ErrVersion. If the file
// holds more than the options' caps allow, the least weighted entries are
// forgotten.
func (b *Baseline) Load(path string) error {
	var st baselineState
	if err := loadState(path, "baseline", &st); err != nil {
		return err
	}
	if err := st.validate(); err != nil {
		return fmt.Errorf("load baseline %s: %w: %w", path, ErrCorrupt, err)
	}
	if st.Exes == nil {
		st.Exes = make(map[string]*exeRecord)
	}
	b.st = st
	for len(b.st.Exes) > b.opts.MaxExes {
		b.evictExe()
	}
	for _, rec := range b.st.Exes {
		for rec.items() > b.opts.MaxItemsPerExe {
			b.evictItem(rec, -1, "")
		}
	}
	return nil
}

// validate rejects states no Baseline could have written.
func (st *baselineState) validate() error {
	if st.Start < 0 || st.Now < st.Start {
		return fmt.Errorf("times out of order (start %d, now %d)", st.Start, st.Now)
	}
	for name, rec := range st.Exes {
		if name == "" || rec == nil {
			return fmt.Errorf("empty executable entry")
		}
		if err := rec.Activity.validate(); err != nil {
			return fmt.Errorf("%s: activity: %w", name, err)
		}
		for k := kChild; k < numKinds; k++ {
			for item, d := range rec.kind(k).Items {
				if err := d.validate(); err != nil {
					return fmt.Errorf("%s: %s: %w", name, item, err)
				}
			}
		}
	}
	return nil
}

// validate rejects negative or non-finite weights.
func (d decayed) validate() error {
	if d.W < 0 || math.IsNaN(d.W) || math.IsInf(d.W, 0) {
		return fmt.Errorf("impossible weight %v", d.W)
	}
	return nil
}

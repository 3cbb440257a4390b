package seqmodel

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"slices"
)

// File format, version 2 (all integers are uvarints unless noted):
//
//	magic   "VGSEQMDL"           8 bytes
//	version                      = 2
//	order, traces, tokens
//	entries                      number of n-gram records
//	entries x { keylen, key bytes, count }
//	kind                         0 Markov, 1 RNN, 2 mix
//	if kind is 1 or 2, the GRU:
//	  hidden, epochs, seed
//	  nsyms, nsyms x syscall     known syscalls, ascending
//	  nparams, nparams x float32 bits, 4 bytes little-endian each
//	crc32   IEEE of everything above, 4 bytes little-endian
//
// Version 1 is the same without the kind and GRU sections (a Markov model);
// Load still reads it. Records are sorted by key, so saving the same model
// twice gives the same bytes.
const (
	fileMagic   = "VGSEQMDL"
	fileVersion = 2
)

// ErrFormat is returned by Load for input that is not a well-formed model
// file: wrong magic, truncated, or failing its checksum.
var ErrFormat = errors.New("seqmodel: malformed model file")

// ErrVersion is returned by Load for a model file written by an
// incompatible version of this package.
var ErrVersion = errors.New("seqmodel: unsupported model file version")

// Save writes the model in a versioned binary format that Load reads. Any
// pending training is finalized first.
func (m *Model) Save(w io.Writer) error {
	m.ensureFinal()
	m.mu.Lock()
	keys := make([]string, 0, len(m.counts))
	for k := range m.counts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b []byte
	b = append(b, fileMagic...)
	b = binary.AppendUvarint(b, fileVersion)
	b = binary.AppendUvarint(b, uint64(m.order))
	b = binary.AppendUvarint(b, uint64(m.traces))
	b = binary.AppendUvarint(b, uint64(m.tokens))
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		b = binary.AppendUvarint(b, uint64(m.counts[k]))
	}
	b = binary.AppendUvarint(b, uint64(m.opts.Kind))
	if m.opts.Kind.neural() {
		b = appendRNN(b, m.net, m.opts)
	}
	m.mu.Unlock()
	b = binary.LittleEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("save model: %w", err)
	}
	return nil
}

// Load reads a model written by Save. It fails with an error wrapping
// ErrFormat for a corrupt or truncated file and ErrVersion for a file of
// another format version.
func Load(r io.Reader) (*Model, error) {
	data, err := io.ReadAll(bufio.NewReader(r))
	if err != nil {
		return nil, fmt.Errorf("load model: %w", err)
	}
	if len(data) < len(fileMagic)+4 || string(data[:len(fileMagic)]) != fileMagic {
		return nil, fmt.Errorf("load model: missing %q header: %w", fileMagic, ErrFormat)
	}
	d := decoder{b: data[len(fileMagic) : len(data)-4]}
	version := d.uvarint()
	if d.err == nil && (version < 1 || version > fileVersion) {
		return nil, fmt.Errorf("load model: file version %d, this build reads 1 to %d: %w", version, fileVersion, ErrVersion)
	}
	body, sum := data[:len(data)-4], binary.LittleEndian.Uint32(data[len(data)-4:])
	if crc32.ChecksumIEEE(body) != sum {
		return nil, fmt.Errorf("load model: checksum mismatch (file corrupt or truncated): %w", ErrFormat)
	}
	order := d.uvarint()
	traces := d.uvarint()
	tokens := d.uvarint()
	n := d.uvarint()
	if d.err == nil && (order < 1 || order > MaxOrder) {
		return nil, fmt.Errorf("load model: order %d out of range: %w", order, ErrFormat)
	}
	if d.err == nil && n > uint64(len(d.b)) {
		return nil, fmt.Errorf("load model: %d records cannot fit in %d bytes: %w", n, len(d.b), ErrFormat)
	}
	m := New(Options{Order: int(order)})
	m.traces, m.tokens = int(traces), int(tokens)
	for i := uint64(0); i < n && d.err == nil; i++ {
		k := d.bytes(d.uvarint())
		c := d.uvarint()
		if d.err != nil {
			break
		}
		g := decodeKey(string(k))
		if len(g) == 0 || len(g) > int(order) || c == 0 || c > 1<<32-1 {
			return nil, fmt.Errorf("load model: record %d is invalid: %w", i, ErrFormat)
		}
		m.counts[string(k)] = uint32(c)
	}
	if version >= 2 && d.err == nil {
		kind := Kind(d.uvarint())
		if d.err == nil && kind != KindMarkov && !kind.neural() {
			return nil, fmt.Errorf("load model: unknown model kind %d: %w", kind, ErrFormat)
		}
		m.opts.Kind = kind
		if kind.neural() && d.err == nil {
			if err := m.loadRNN(&d); err != nil {
				return nil, err
			}
		}
	}
	if d.err != nil {
		return nil, fmt.Errorf("load model: %w", d.err)
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("load model: %d trailing bytes: %w", len(d.b), ErrFormat)
	}
	m.finalizeLocked()
	return m, nil
}

// appendRNN appends the GRU section of the file format; an untrained net
// is written as zero syscalls and no parameters.
func appendRNN(b []byte, r *rnn, opts Options) []byte {
	b = binary.AppendUvarint(b, uint64(opts.Hidden))
	b = binary.AppendUvarint(b, uint64(opts.Epochs))
	b = binary.AppendUvarint(b, opts.Seed)
	if r == nil {
		return binary.AppendUvarint(binary.AppendUvarint(b, 0), 0)
	}
	b = binary.AppendUvarint(b, uint64(len(r.syms)))
	for _, s := range r.syms {
		b = binary.AppendUvarint(b, uint64(s))
	}
	b = binary.AppendUvarint(b, uint64(len(r.w)))
	for _, w := range r.w {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(w))
	}
	return b
}

// loadRNN reads the GRU section into m and marks m as frozen.
func (m *Model) loadRNN(d *decoder) error {
	hidden, epochs, seed := d.uvarint(), d.uvarint(), d.uvarint()
	nsyms := d.uvarint()
	if d.err == nil && (hidden < 1 || hidden > MaxHidden || epochs < 1 || epochs > 1<<20 || nsyms > uint64(len(d.b))) {
		return fmt.Errorf("load model: bad network header (hidden %d, epochs %d, %d syscalls): %w", hidden, epochs, nsyms, ErrFormat)
	}
	m.opts.Hidden, m.opts.Epochs, m.opts.Seed = int(hidden), int(epochs), seed
	m.frozen = true
	syms := make([]int, 0, nsyms)
	for i := uint64(0); i < nsyms && d.err == nil; i++ {
		s := d.uvarint()
		if d.err == nil && (s > MaxToken || len(syms) > 0 && int(s) <= syms[len(syms)-1]) {
			return fmt.Errorf("load model: network syscall list not ascending: %w", ErrFormat)
		}
		syms = append(syms, int(s))
	}
	nparams := d.uvarint()
	if d.err != nil {
		return fmt.Errorf("load model: %w", d.err)
	}
	if nsyms == 0 && nparams == 0 {
		return nil // saved before any training
	}
	r := newRNN(int(hidden), syms)
	if nparams != uint64(len(r.w)) {
		return fmt.Errorf("load model: network has %d parameters, want %d: %w", nparams, len(r.w), ErrFormat)
	}
	raw := d.bytes(4 * nparams)
	if d.err != nil {
		return fmt.Errorf("load model: %w", d.err)
	}
	for i := range r.w {
		r.w[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	m.net = r
	return nil
}

// decoder reads uvarints and byte strings, remembering the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("truncated integer: %w", ErrFormat)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = fmt.Errorf("truncated record: %w", ErrFormat)
		return nil
	}
	out := d.b[:n]
	d.b = d.b[n:]
	return out
}

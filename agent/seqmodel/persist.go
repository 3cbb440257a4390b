package seqmodel

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
)

// File format, version 1 (all integers are uvarints unless noted):
//
//	magic   "VGSEQMDL"           8 bytes
//	version                      = 1
//	order, traces, tokens
//	entries                      number of n-gram records
//	entries x { keylen, key bytes, count }
//	crc32   IEEE of everything above, 4 bytes little-endian
//
// Records are sorted by key, so saving the same model twice gives the same
// bytes.
const (
	fileMagic   = "VGSEQMDL"
	fileVersion = 1
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
	if d.err == nil && version != fileVersion {
		return nil, fmt.Errorf("load model: file version %d, this build reads %d: %w", version, fileVersion, ErrVersion)
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
	if d.err != nil {
		return nil, fmt.Errorf("load model: %w", d.err)
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("load model: %d trailing bytes: %w", len(d.b), ErrFormat)
	}
	m.finalizeLocked()
	return m, nil
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

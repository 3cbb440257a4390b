// Package replay records agent events as JSON lines and reads them back,
// so that detection can run on a recording without the kernel
// (vigil-agent --record FILE, vigil-agent replay FILE).
//
// A recording holds one event per line:
//
//	{"type":"exec","event":{"time":"2025-03-01T12:00:00.000000001Z","process":{"pid":42},"exe":"/usr/bin/id"}}
//
// "type" names the agent/event type (Types lists them) and "event" holds its
// fields under stable snake_case names that do not follow the Go field
// names. Fields at their zero value are left out and read back as zero.
// Times are RFC 3339 with nanoseconds, written and read back in UTC;
// addresses are strings ("192.0.2.1:53", "[2001:db8::1]:443"); FileOp,
// LoginOp, PAMResult and Direction are their names ("open",
// "pam_authenticate", "PAM_AUTH_ERR", "outbound"), or numbers for values
// without a name. Empty lists read back as nil. Blank lines and lines whose
// first non-blank character is '#' are comments.
package replay

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
	"sync"
)

// MaxLineSize is the longest line a Reader accepts and a Writer writes,
// not counting the line end.
const MaxLineSize = 1 << 20

var (
	// ErrUnknownType is returned for an event whose Go type (Writer) or
	// "type" name (Reader) the codec does not know.
	ErrUnknownType = errors.New("unknown event type")
	// ErrLineTooLong is returned for a line longer than MaxLineSize.
	ErrLineTooLong = errors.New("line longer than 1 MiB")
	// ErrClosed is returned by a Writer used after Close.
	ErrClosed = errors.New("replay: writer closed")
)

// LineError reports a line of a recording that could not be read.
type LineError struct {
	// Path is the recording's file, when known (ReadFile sets it).
	Path string
	// Line is the line's number, counting from 1 and including comments.
	Line int
	// Err says what is wrong.
	Err error
}

// Error returns "replay: line N: what" or "replay: PATH:N: what".
func (e *LineError) Error() string {
	if e.Path != "" {
		return fmt.Sprintf("replay: %s:%d: %v", e.Path, e.Line, e.Err)
	}
	return fmt.Sprintf("replay: line %d: %v", e.Line, e.Err)
}

// Unwrap returns Err.
func (e *LineError) Unwrap() error { return e.Err }

// Writer writes events to a recording, one line each. It buffers: call
// Flush or Close to push the lines out. It is safe for concurrent use; each
// event is written as one whole line.
type Writer struct {
	mu     sync.Mutex
	bw     *bufio.Writer
	closer io.Closer // the file Create opened; nil for NewWriter
	closed bool
}

// NewWriter returns a Writer to w. Close does not close w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{bw: bufio.NewWriterSize(w, 64<<10)}
}

// Create creates (or truncates) the file at path, readable by its owner
// only since events carry command lines, and returns a Writer to it; Close
// closes the file.
func Create(path string) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	w := NewWriter(f)
	w.closer = f
	return w, nil
}

// Write appends ev, a pointer to (or value of) one of the agent/event
// types, as one line. An error from the underlying writer sticks: every
// later Write and Flush returns it.
func (w *Writer) Write(ev any) error {
	k := kindsByType[reflect.TypeOf(ev)]
	if k == nil {
		return fmt.Errorf("replay: write %T: %w", ev, ErrUnknownType)
	}
	mirror, err := k.encode(ev)
	if err != nil {
		return fmt.Errorf("replay: write %s event: %w", k.name, err)
	}

	// Encode outside the lock; only the copy into the buffer is serialised.
	var line bytes.Buffer
	line.WriteString(`{"type":"`)
	line.WriteString(k.name)
	line.WriteString(`","event":`)
	enc := json.NewEncoder(&line)
	enc.SetEscapeHTML(false) // keep '<', '>' and '&' in paths readable
	if err := enc.Encode(mirror); err != nil {
		return fmt.Errorf("replay: encode %s event: %w", k.name, err)
	}
	line.Truncate(line.Len() - 1) // the Encoder's newline
	line.WriteString("}\n")
	if line.Len()-1 > MaxLineSize {
		return fmt.Errorf("replay: write %s event: %w", k.name, ErrLineTooLong)
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	if _, err := w.bw.Write(line.Bytes()); err != nil {
		return fmt.Errorf("replay: write: %w", err)
	}
	return nil
}

// WriteComment writes text as comment lines ("# " and one line of text
// each), which a Reader skips: a place for what was recorded, where and when.
func (w *Writer) WriteComment(text string) error {
	var b strings.Builder
	for l := range strings.Lines(text) {
		b.WriteString("# ")
		b.WriteString(strings.TrimRight(l, "\r\n"))
		b.WriteByte('\n')
	}
	if b.Len() == 0 {
		b.WriteString("#\n")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	if _, err := w.bw.WriteString(b.String()); err != nil {
		return fmt.Errorf("replay: write: %w", err)
	}
	return nil
}

// Flush writes out the buffered lines.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	if err := w.bw.Flush(); err != nil {
		return fmt.Errorf("replay: flush: %w", err)
	}
	return nil
}

// Close flushes the buffered lines and, for a Writer from Create, closes
// the file. Later calls of Write, WriteComment and Flush return ErrClosed;
// a second Close returns nil.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	err := w.bw.Flush()
	if err != nil {
		err = fmt.Errorf("replay: flush: %w", err)
	}
	if w.closer != nil {
		if cerr := w.closer.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("replay: close: %w", cerr)
		}
	}
	return err
}

// Reader reads events from a recording. It is not safe for concurrent use.
type Reader struct {
	sc   *bufio.Scanner
	line int   // number of the last line scanned
	err  error // sticky: io.EOF, a read error or a line too long
}

// NewReader returns a Reader of r.
func NewReader(r io.Reader) *Reader {
	sc := bufio.NewScanner(r)
	// Room for a line of MaxLineSize bytes and its "\r\n"; longer lines are
	// refused below, or by the Scanner with bufio.ErrTooLong.
	sc.Buffer(make([]byte, 0, 64<<10), MaxLineSize+2)
	return &Reader{sc: sc}
}

// Next returns the next event, as a pointer to one of the agent/event types
// (*event.Exec, *event.TCPConnect, ...), skipping blank and comment lines.
// At the end of the recording it returns io.EOF. A malformed line gives a
// *LineError, and the next call goes on with the line after it; a read
// error or a line longer than MaxLineSize ends the reading.
func (r *Reader) Next() (any, error) {
	if r.err != nil {
		return nil, r.err
	}
	for r.sc.Scan() {
		r.line++
		line := r.sc.Bytes()
		if len(line) > MaxLineSize {
			r.err = &LineError{Line: r.line, Err: ErrLineTooLong}
			return nil, r.err
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		ev, err := decodeLine(line)
		if err != nil {
			return nil, &LineError{Line: r.line, Err: err}
		}
		return ev, nil
	}
	switch err := r.sc.Err(); {
	case err == nil:
		r.err = io.EOF
	case errors.Is(err, bufio.ErrTooLong):
		r.err = &LineError{Line: r.line + 1, Err: ErrLineTooLong}
	default:
		r.err = fmt.Errorf("replay: read after line %d: %w", r.line, err)
	}
	return nil, r.err
}

// decodeLine decodes one non-blank, non-comment line.
func decodeLine(line []byte) (any, error) {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(line, &members); err != nil {
		if _, ok := errors.AsType[*json.SyntaxError](err); ok {
			return nil, fmt.Errorf("bad JSON: %w", err)
		}
		return nil, errors.New("not a JSON object")
	}
	if members == nil { // the line was null
		return nil, errors.New("not a JSON object")
	}
	for name := range members {
		if name != "type" && name != "event" {
			return nil, fmt.Errorf("unknown member %q", name)
		}
	}

	rawType, ok := members["type"]
	if !ok {
		return nil, errors.New(`missing "type"`)
	}
	var typ string
	if err := json.Unmarshal(rawType, &typ); err != nil {
		return nil, errors.New(`"type" is not a string`)
	}
	k := kindsByName[typ]
	if k == nil {
		return nil, fmt.Errorf("%w %q", ErrUnknownType, typ)
	}

	rawEvent := members["event"]
	if len(rawEvent) == 0 || string(rawEvent) == "null" {
		return nil, fmt.Errorf(`%s: missing "event"`, typ)
	}
	if rawEvent[0] != '{' {
		return nil, fmt.Errorf(`%s: "event" is not an object`, typ)
	}
	ev, err := k.decode(rawEvent)
	if err != nil {
		return nil, fmt.Errorf("%s event: %w", typ, err)
	}
	return ev, nil
}

// ReadFile reads every event of the recording at path. A malformed line
// ends the reading with a *LineError naming path and the line.
func ReadFile(path string) ([]any, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	defer f.Close()
	var events []any
	r := NewReader(f)
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			return events, nil
		}
		if err != nil {
			if le, ok := errors.AsType[*LineError](err); ok {
				le.Path = path
			}
			return nil, err
		}
		events = append(events, ev)
	}
}

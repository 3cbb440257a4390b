package anomaly

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/vigil-sensor/vigil/internal/atomicfile"
)

// The names of the state files under the agent's state directory.
const (
	// BaselineFile holds what Baseline learned.
	BaselineFile = "anomaly-baseline.json"
	// LoginsFile holds what Logins learned.
	LoginsFile = "anomaly-logins.json"
	// FlowsFile holds what Flows learned.
	FlowsFile = "anomaly-flows.json"
)

// StateVersion is the version of the state files this package writes and
// reads. A file of another version is refused with ErrVersion.
const StateVersion = 1

// ErrCorrupt is returned by the Load methods for a state file that cannot be
// parsed or holds impossible values.
var ErrCorrupt = errors.New("corrupt state file")

// ErrVersion is returned by the Load methods for a state file of a version
// this agent does not read.
var ErrVersion = errors.New("unsupported state file version")

// envelope is the outer object of every state file: what the file is, its
// version, and the scorer's state.
type envelope struct {
	Format  string          `json:"format"`
	Version int             `json:"version"`
	State   json.RawMessage `json:"state"`
}

// formatName is the value of an envelope's format for a scorer.
func formatName(what string) string { return "vigil-anomaly-" + what }

// saveState writes state to path atomically: into a temporary file in the
// same directory, synced, then renamed over path.
func saveState(path, what string, state any) error {
	raw, err := json.Marshal(state)
	if err != nil {
		return fmt.Errorf("save %s: encode: %w", what, err)
	}
	data, err := json.Marshal(envelope{Format: formatName(what), Version: StateVersion, State: raw})
	if err != nil {
		return fmt.Errorf("save %s: encode: %w", what, err)
	}
	data = append(data, '\n')
	if err := atomicfile.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("save %s: %w", what, err)
	}
	return nil
}

// loadState reads a state file written by saveState into state.
func loadState(path, what string, state any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("load %s: %w", what, err)
	}
	var env envelope
	if err := strictUnmarshal(data, &env); err != nil {
		return fmt.Errorf("load %s %s: %w: %w", what, path, ErrCorrupt, err)
	}
	if env.Format != formatName(what) {
		return fmt.Errorf("load %s %s: %w: format is %q, want %q", what, path, ErrCorrupt, env.Format, formatName(what))
	}
	if env.Version != StateVersion {
		return fmt.Errorf("load %s %s: %w %d (this agent reads %d)", what, path, ErrVersion, env.Version, StateVersion)
	}
	if err := strictUnmarshal(env.State, state); err != nil {
		return fmt.Errorf("load %s %s: %w: %w", what, path, ErrCorrupt, err)
	}
	return nil
}

// strictUnmarshal decodes JSON refusing unknown fields and trailing data.
func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the state object")
	}
	return nil
}

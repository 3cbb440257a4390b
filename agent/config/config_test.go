package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseOverridesDefaults(t *testing.T) {
	cfg, err := Parse([]byte(`
server: 10.0.0.5:7470
log_level: debug
sensors:
  process:
    ring_size: 16MiB
  file:
    watch: [/etc, /home/*/.ssh]
    events: [open, setid]
  network:
    enabled: false
allow:
  pids: [1234]
  exes: [/usr/sbin/backupd]
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server != "10.0.0.5:7470" || cfg.LogLevel != "debug" || cfg.StateDir != "/var/lib/vigil-agent" {
		t.Errorf("top level: %+v", cfg)
	}
	if cfg.Sensors.Process.RingSize != 16<<20 || !cfg.Sensors.Process.Enabled {
		t.Errorf("process: %+v", cfg.Sensors.Process)
	}
	if !slices.Equal(cfg.Sensors.File.Watch, []string{"/etc", "/home/*/.ssh"}) || !slices.Equal(cfg.Sensors.File.Events, []string{"open", "setid"}) {
		t.Errorf("file: %+v", cfg.Sensors.File)
	}
	if cfg.Sensors.File.RingSize != 4<<20 || !cfg.Sensors.File.Enabled {
		t.Errorf("file family defaults lost: %+v", cfg.Sensors.File.Family)
	}
	if cfg.Sensors.Network.Enabled || !cfg.Sensors.Login.Enabled {
		t.Errorf("enabled flags: network %v login %v", cfg.Sensors.Network.Enabled, cfg.Sensors.Login.Enabled)
	}
	if !slices.Equal(cfg.Allow.PIDs, []uint32{1234}) || !slices.Equal(cfg.Allow.Exes, []string{"/usr/sbin/backupd"}) {
		t.Errorf("allow: %+v", cfg.Allow)
	}
}

func TestParseErrorsNameTheField(t *testing.T) {
	tests := []struct{ yaml, want string }{
		{"servr: x:1", `parse: line 1: unknown key "servr"`},
		{"sensors: {file: {enabled: maybe}}", `line 1: "maybe" is not valid here: want true or false`},
		{"sensors: nope", `line 1: "nope" is not valid here: want a mapping of keys`},
		{"server: nowhere", `server: "nowhere": missing port`},
		{"server: h:99999", `server: "h:99999": port "99999" is not 1-65535`},
		{"log_level: loud", `log_level: "loud": want debug, info, warn or error`},
		{"sensors: {process: {enabled: false}}", "sensors.process.enabled: false, but detection needs the process sensor"},
		{"sensors: {file: {ring_size: 5000}}", "sensors.file.ring_size: 5000 is not a power of two"},
		{"sensors: {file: {ring_size: 8 furlongs}}", `line 1: "8 furlongs" is not a size`},
		{"sensors: {file: {watch: [/etc, etc/ssh]}}", `sensors.file.watch[1]: "etc/ssh" is not an absolute path`},
		{"sensors: {file: {watch: [/home/u*/.ssh]}}", "sensors.file.watch[0]: \"/home/u*/.ssh\": a wildcard must be a whole path component"},
		{"sensors: {file: {watch: [/etc/]}}", `sensors.file.watch[0]: "/etc/" is not clean; write "/etc"`},
		{"sensors: {file: {events: [open, teleport]}}", `sensors.file.events[1]: unknown event "teleport"`},
		{"sensors: {file: {events: []}}", "sensors.file.events: empty; to turn the family off, set sensors.file.enabled: false"},
		{"sensors: {file: {watch_reads: [/home/*/*/x]}}", `sensors.file.watch_reads[0]: "/home/*/*/x": at most one wildcard component per path`},
		{"allow: {exes: [bash]}", `allow.exes[0]: "bash" is not an absolute path`},
		{"allow: {pids: [-1]}", `line 1: "-1" is not valid here: want a whole number`},
		{"state_dir: relative", `state_dir: "relative" is not an absolute path`},
		{"sensors: {file: {watch_hidden: [/home/*]}}", `sensors.file.watch_hidden[0]: "/home/*": want a directory without wildcards, not /`},
		{"sensors: {file: {watch_hidden: [tmp]}}", `sensors.file.watch_hidden[0]: "tmp" is not an absolute path`},
		{"response: {mode: yolo}", `response.mode: "yolo": want detect, recommend or auto`},
		{"response: {rules: {brute-force: always}}", `response.rules.brute-force: "always": want detect, recommend or auto`},
		{"response: {allow_addresses: [10.0.0.300]}", `response.allow_addresses[0]: "10.0.0.300" is not an IP address or prefix`},
		{"response: {block_ttl: 0s}", "response.block_ttl: 0s is not positive"},
		{"detection: {rules_dir: rules}", `detection.rules_dir: "rules" is not an absolute path`},
		{"detection: {correlation_window: 10ms}", "detection.correlation_window: 10ms is shorter than 1s"},
		{"detection: {learning_period: -1h}", "detection.learning_period: -1h0m0s is negative"},
		{"detection: {learning_period: soon}", `line 1: detection.learning_period: "soon" is not a duration (e.g. 24h, 10m)`},
	}
	for _, tt := range tests {
		_, err := Parse([]byte(tt.yaml))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want one containing %q", tt.yaml, err, tt.want)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	cfg, err := Load(filepath.Join(dir, "missing.yaml"), false)
	if err != nil || cfg.Server != Default().Server {
		t.Fatalf("missing optional file: %v, %+v", err, cfg)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml"), true); err == nil {
		t.Fatal("missing required file accepted")
	}
	p := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(p, []byte("log_level: shouty\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p, true); err == nil || !strings.HasPrefix(err.Error(), p+": log_level") {
		t.Fatalf("error %v does not start with the file name and field", err)
	}
}

// TestShippedExampleIsValid keeps the example in the repository loadable.
func TestShippedExampleIsValid(t *testing.T) {
	cfg, err := Load("../../configs/agent.yaml", true)
	if err != nil {
		t.Fatal(err)
	}
	def := Default()
	if !slices.Equal(cfg.Sensors.File.Watch, def.Sensors.File.Watch) || cfg.Server != def.Server {
		t.Errorf("the example should spell out the defaults: %+v", cfg)
	}
}

// TestParseBadDuration checks that a duration that does not parse is named
// by its field, with its line, and that a bare number is refused.
func TestParseBadDuration(t *testing.T) {
	for _, tt := range []struct{ yaml, want string }{
		{"server: h:1\ndetection: {learning_period: 5x}\n", `parse: line 2: detection.learning_period: "5x" is not a duration (e.g. 24h, 10m)`},
		{"detection:\n  correlation_window: 10\n", `parse: line 2: detection.correlation_window: "10" is not a duration (e.g. 24h, 10m)`},
		{"response:\n  block_ttl: soon\n", `parse: line 2: response.block_ttl: "soon" is not a duration (e.g. 24h, 10m)`},
		{"response:\n  block_ttl: [1h]\n", `parse: line 2: response.block_ttl: want a duration (e.g. 24h, 10m)`},
	} {
		_, err := Parse([]byte(tt.yaml))
		if err == nil || err.Error() != tt.want {
			t.Errorf("%q: error %v, want %s", tt.yaml, err, tt.want)
		}
	}
	cfg, err := Parse([]byte("detection: {learning_period: 36h, correlation_window: 5m}\nresponse: {block_ttl: 90m}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Detection.LearningPeriod != 36*time.Hour || cfg.Detection.CorrelationWindow != 5*time.Minute || cfg.Response.BlockTTL != 90*time.Minute {
		t.Errorf("durations %v %v %v", cfg.Detection.LearningPeriod, cfg.Detection.CorrelationWindow, cfg.Response.BlockTTL)
	}
}

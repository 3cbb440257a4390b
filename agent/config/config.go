// Package config reads and validates the agent's YAML configuration
// (/etc/vigil/agent.yaml by default): where the server is, which sensors
// run, what the kernel filters watch, and what it ignores.
package config

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// DefaultPath is where the agent looks for its configuration.
const DefaultPath = "/etc/vigil/agent.yaml"

// Config is the agent's configuration.
type Config struct {
	// Server is the Vigil server's gRPC address.
	Server string `yaml:"server"`
	// StateDir keeps the agent's state.
	StateDir string `yaml:"state_dir"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log_level"`
	// Sensors configures each event family.
	Sensors Sensors `yaml:"sensors"`
	// Allow lists processes the agent trusts.
	Allow Allow `yaml:"allow"`
	// Detection configures rules, anomaly scoring and correlation.
	Detection Detection `yaml:"detection"`
	// Response configures what the agent does about what it detects.
	Response Response `yaml:"response"`
	// TLS, when set, makes the agent connect to the server with TLS.
	TLS TLS `yaml:"tls"`
}

// TLS configures the agent's TLS connection to the server. All empty
// means plaintext.
type TLS struct {
	// CA is a PEM file of the CA that signs the server's certificate
	// (the ca.pem of 'vigil-server ca init').
	CA string `yaml:"ca"`
	// Cert is the agent's certificate (PEM), signed by the CA the server
	// was given as --client-ca.
	Cert string `yaml:"cert"`
	// Key is the private key of Cert (PEM).
	Key string `yaml:"key"`
}

// Enabled reports whether any TLS key is set.
func (t TLS) Enabled() bool { return t.CA != "" || t.Cert != "" || t.Key != "" }

// EnrolledDir is the directory, in the state directory, where 'vigil-agent
// enroll' keeps the agent's key, its certificate and the server's CA.
const EnrolledDir = "tls"

// EnrolledTLS is where 'vigil-agent enroll' writes, under stateDir: the
// CA, the agent's certificate and its private key.
func EnrolledTLS(stateDir string) TLS {
	dir := path.Join(stateDir, EnrolledDir)
	return TLS{CA: path.Join(dir, "ca.pem"), Cert: path.Join(dir, "agent.pem"), Key: path.Join(dir, "agent-key.pem")}
}

// UseEnrolled sets TLS to the files of 'vigil-agent enroll' in the state
// directory when no tls key is set and they are there, and reports
// whether it did. Call it after the state directory is final.
func (c *Config) UseEnrolled() bool {
	if c.TLS.Enabled() {
		return false
	}
	e := EnrolledTLS(c.StateDir)
	if _, err := os.Stat(e.Cert); err != nil {
		return false
	}
	c.TLS = e
	return true
}

// validate checks that the CA is set whenever TLS is, that cert and key
// come together, and that each file exists and holds what it should.
func (t TLS) validate() error {
	if !t.Enabled() {
		return nil
	}
	if t.CA == "" {
		return errors.New("tls.ca: empty; want the PEM file of the CA that signs the server's certificate")
	}
	if (t.Cert == "") != (t.Key == "") {
		return errors.New("tls.cert and tls.key: set both or neither")
	}
	// Without a client certificate TLS is enough for a server without
	// --client-ca only.
	_, err := t.Config()
	return err
}

// Config builds the client TLS configuration, or returns nil when TLS is
// off. Errors name the key at fault.
func (t TLS) Config() (*tls.Config, error) {
	if !t.Enabled() {
		return nil, nil
	}
	b, err := os.ReadFile(t.CA)
	if err != nil {
		return nil, fmt.Errorf("tls.ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("tls.ca: %s holds no PEM certificate", t.CA)
	}
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if t.Cert != "" {
		cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
		if err != nil {
			return nil, fmt.Errorf("tls.cert and tls.key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// Response configures the agent's responses.
type Response struct {
	// Mode is detect (record only), recommend (an operator approves
	// recommended actions) or auto (rules' responses run at once).
	Mode string `yaml:"mode"`
	// Rules override Mode per rule id.
	Rules map[string]string `yaml:"rules"`
	// AllowAddresses are addresses or prefixes never blocked, and kept
	// reachable when the host is isolated (the server's always are).
	AllowAddresses []string `yaml:"allow_addresses"`
	// Interfaces are where host-wide blocks and isolation apply (empty:
	// every interface that is up, except lo).
	Interfaces []string `yaml:"interfaces"`
	// BlockTTL is how long a block lasts unless the request says otherwise.
	BlockTTL time.Duration `yaml:"block_ttl"`
}

// Detection configures rules, anomaly scoring and correlation.
type Detection struct {
	// RulesDir holds the operator's rule files (*.yaml), loaded after the
	// built-in set and reloaded when they change.
	RulesDir string `yaml:"rules_dir"`
	// Anomaly turns the learned baseline (rare children, files,
	// destinations, users, login sources) on.
	Anomaly bool `yaml:"anomaly"`
	// LearningPeriod is how long the baseline only learns, from the first
	// event it ever saw, before it flags anything rare.
	LearningPeriod time.Duration `yaml:"learning_period"`
	// CorrelationWindow is how long an incident stays open for related
	// signals (same process tree, login session or remote source) after
	// its last one.
	CorrelationWindow time.Duration `yaml:"correlation_window"`
}

// Sensors configures each event family.
type Sensors struct {
	// Process is the fork/exec/exit family (always on: detection needs it).
	Process Family `yaml:"process"`
	// File is the file and syscall family.
	File FileFamily `yaml:"file"`
	// Login is the PAM login family.
	Login LoginFamily `yaml:"login"`
	// Network is the TCP/UDP/DNS family.
	Network NetworkFamily `yaml:"network"`
}

// Family is what every event family has.
type Family struct {
	// Enabled turns the family on.
	Enabled bool `yaml:"enabled"`
	// RingSize is the size of the family's ring buffer in bytes; YAML takes
	// a number or a size such as "8MiB".
	RingSize Size `yaml:"ring_size"`
}

// FileFamily configures the file and syscall family.
type FileFamily struct {
	Family `yaml:",inline"`
	// Watch are the path prefixes whose changes are reported (opens for
	// write, renames, unlinks, chmod, chown, links); a component may be "*"
	// to match any one directory name, as in /home/*/.ssh.
	Watch []string `yaml:"watch"`
	// WatchReads are the path prefixes (same syntax) whose opens for read
	// are reported too: secrets such as /etc/shadow.
	WatchReads []string `yaml:"watch_reads"`
	// WatchHidden are directories whose hidden entries (names starting with
	// ".") and everything below them are watched like Watch: hiding places
	// in directories too busy to watch whole, such as /tmp.
	WatchHidden []string `yaml:"watch_hidden"`
	// Events are the event kinds reported (FileEvents lists them).
	Events []string `yaml:"events"`
}

// NetworkFamily configures the network family.
type NetworkFamily struct {
	Family `yaml:",inline"`
	// UDPFlows reports one event per new UDP flow.
	UDPFlows bool `yaml:"udp_flows"`
	// DNS reports DNS queries and answers on UDP port 53.
	DNS bool `yaml:"dns"`
}

// LoginFamily configures the login family.
type LoginFamily struct {
	Family `yaml:",inline"`
	// IgnoreServices are PAM services whose calls are dropped in the
	// kernel, e.g. cron, which opens a session for every job.
	IgnoreServices []string `yaml:"ignore_services"`
}

// Allow lists processes the agent trusts: no rule raises an incident on
// them, and the file family drops their events in the kernel.
type Allow struct {
	// PIDs are trusted process ids.
	PIDs []uint32 `yaml:"pids"`
	// Cgroups are trusted cgroup v2 directories (absolute paths).
	Cgroups []string `yaml:"cgroups"`
	// Exes are trusted executables (absolute paths).
	Exes []string `yaml:"exes"`
	// Users are users (names or uids) whose processes responses never act
	// on; their events are still judged.
	Users []string `yaml:"users"`
}

// maxServiceLen bounds PAM service names, terminating NUL included (the
// login sensor's MaxServiceLen).
const maxServiceLen = 64

// FileEvents are the event kinds of the file family.
var FileEvents = []string{"open", "rename", "unlink", "chmod", "chown", "link", "symlink", "setid", "ptrace", "module", "memfd", "mount", "bpf", "kill"}

// Size is a byte count written as a number or with a KiB/MiB/GiB suffix.
type Size uint32

// UnmarshalYAML reads "4096", "64KiB", "8MiB" or "1GiB".
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	if err := s.Set(n.Value); err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	return nil
}

// Set reads "4096", "64KiB", "8MiB" or "1GiB", as a command-line flag.
func (s *Size) Set(value string) error {
	text := strings.TrimSpace(value)
	mult := uint64(1)
	for suffix, m := range map[string]uint64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
		if strings.HasSuffix(text, suffix) {
			text, mult = strings.TrimSpace(strings.TrimSuffix(text, suffix)), m
		}
	}
	v, err := strconv.ParseUint(text, 10, 64)
	if err != nil || v*mult > 1<<30 {
		return fmt.Errorf("%q is not a size (bytes, or a number with KiB, MiB or GiB, at most 1GiB)", value)
	}
	*s = Size(v * mult)
	return nil
}

// String prints the size in bytes.
func (s *Size) String() string { return strconv.FormatUint(uint64(*s), 10) }

// Default returns the configuration used when there is no file.
func Default() *Config {
	return &Config{
		Server:   "127.0.0.1:7470",
		StateDir: "/var/lib/vigil-agent",
		LogLevel: "info",
		Sensors: Sensors{
			Process: Family{Enabled: true, RingSize: 8 << 20},
			File: FileFamily{
				Family: Family{Enabled: true, RingSize: 4 << 20},
				Watch: []string{"/etc", "/root/.ssh", "/home/*/.ssh", "/var/spool/cron", "/etc/systemd",
					"/usr/bin", "/usr/sbin", "/boot", "/var/log", "/lib/modules",
					// Shell history and start-up files: clearing and backdooring them.
					"/root/.bash_history", "/root/.zsh_history", "/home/*/.bash_history", "/home/*/.zsh_history",
					"/root/.bashrc", "/root/.profile", "/root/.bash_profile",
					"/home/*/.bashrc", "/home/*/.profile", "/home/*/.bash_profile",
					"/root/.config/systemd", "/home/*/.config/systemd"},
				WatchReads:  []string{"/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/etc/sudoers.d", "/root/.ssh", "/home/*/.ssh"},
				WatchHidden: []string{"/tmp", "/var/tmp", "/dev/shm"},
				Events:      slices.Clone(FileEvents),
			},
			Login:   LoginFamily{Family: Family{Enabled: true, RingSize: 256 << 10}, IgnoreServices: []string{"cron"}},
			Network: NetworkFamily{Family: Family{Enabled: true, RingSize: 4 << 20}, UDPFlows: true, DNS: true},
		},
		Response: Response{Mode: "recommend", BlockTTL: time.Hour},
		Detection: Detection{
			RulesDir:          "/etc/vigil/rules.d",
			Anomaly:           true,
			LearningPeriod:    24 * time.Hour,
			CorrelationWindow: 10 * time.Minute,
		},
	}
}

// Load reads the file at p over the defaults. A missing file is an error
// only when required is set; then the defaults are returned.
func Load(p string, required bool) (*Config, error) {
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) && !required {
		return Default(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return cfg, nil
}

// Parse reads YAML over the defaults and validates the result. Unknown keys are errors.
func Parse(b []byte) (*Config, error) {
	cfg := Default()
	if err := checkDurations(b); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("parse: %s", friendly(err))
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Validate checks every field and names the first one that is wrong.
func (c *Config) Validate() error {
	if c.Server == "" {
		return errors.New("server: empty; want host:port of vigil-server")
	}
	if _, _, err := splitHostPort(c.Server); err != nil {
		return fmt.Errorf("server: %q: %w", c.Server, err)
	}
	if err := c.TLS.validate(); err != nil {
		return err
	}
	if c.StateDir == "" || !path.IsAbs(c.StateDir) {
		return fmt.Errorf("state_dir: %q is not an absolute path", c.StateDir)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return fmt.Errorf("log_level: %q: want debug, info, warn or error", c.LogLevel)
	}
	if !c.Sensors.Process.Enabled {
		return errors.New("sensors.process.enabled: false, but detection needs the process sensor")
	}
	for name, f := range map[string]Family{"process": c.Sensors.Process, "file": c.Sensors.File.Family,
		"login": c.Sensors.Login.Family, "network": c.Sensors.Network.Family} {
		if f.Enabled && (f.RingSize < Size(os.Getpagesize()) || f.RingSize&(f.RingSize-1) != 0) {
			return fmt.Errorf("sensors.%s.ring_size: %d is not a power of two of at least %d bytes", name, f.RingSize, os.Getpagesize())
		}
	}
	for i, w := range c.Sensors.File.Watch {
		if err := checkWatch(w); err != nil {
			return fmt.Errorf("sensors.file.watch[%d]: %w", i, err)
		}
	}
	for i, w := range c.Sensors.File.WatchHidden {
		if err := checkWatch(w); err != nil {
			return fmt.Errorf("sensors.file.watch_hidden[%d]: %w", i, err)
		}
		if strings.Contains(w, "*") || w == "/" {
			return fmt.Errorf("sensors.file.watch_hidden[%d]: %q: want a directory without wildcards, not /", i, w)
		}
	}
	for i, w := range c.Sensors.File.WatchReads {
		if err := checkWatch(w); err != nil {
			return fmt.Errorf("sensors.file.watch_reads[%d]: %w", i, err)
		}
	}
	if c.Sensors.File.Enabled && len(c.Sensors.File.Events) == 0 {
		return errors.New("sensors.file.events: empty; to turn the family off, set sensors.file.enabled: false")
	}
	for i, e := range c.Sensors.File.Events {
		if !slices.Contains(FileEvents, e) {
			return fmt.Errorf("sensors.file.events[%d]: unknown event %q; known: %s", i, e, strings.Join(FileEvents, ", "))
		}
	}
	for i, svc := range c.Sensors.Login.IgnoreServices {
		if svc == "" || len(svc) >= maxServiceLen || strings.ContainsAny(svc, "/ \x00") {
			return fmt.Errorf("sensors.login.ignore_services[%d]: %q is not a PAM service name (at most %d characters, no spaces or slashes)", i, svc, maxServiceLen-1)
		}
	}
	if c.Detection.RulesDir != "" && !path.IsAbs(c.Detection.RulesDir) {
		return fmt.Errorf("detection.rules_dir: %q is not an absolute path", c.Detection.RulesDir)
	}
	if c.Detection.LearningPeriod < 0 {
		return fmt.Errorf("detection.learning_period: %s is negative", c.Detection.LearningPeriod)
	}
	if c.Detection.CorrelationWindow < time.Second {
		return fmt.Errorf("detection.correlation_window: %s is shorter than 1s", c.Detection.CorrelationWindow)
	}
	switch c.Response.Mode {
	case "detect", "recommend", "auto":
	default:
		return fmt.Errorf("response.mode: %q: want detect, recommend or auto", c.Response.Mode)
	}
	for id, m := range c.Response.Rules {
		switch m {
		case "detect", "recommend", "auto":
		default:
			return fmt.Errorf("response.rules.%s: %q: want detect, recommend or auto", id, m)
		}
	}
	for i, a := range c.Response.AllowAddresses {
		if _, err := netip.ParsePrefix(a); err != nil {
			if _, err := netip.ParseAddr(a); err != nil {
				return fmt.Errorf("response.allow_addresses[%d]: %q is not an IP address or prefix", i, a)
			}
		}
	}
	if c.Response.BlockTTL <= 0 {
		return fmt.Errorf("response.block_ttl: %s is not positive", c.Response.BlockTTL)
	}
	for i, p := range c.Allow.Cgroups {
		if !path.IsAbs(p) {
			return fmt.Errorf("allow.cgroups[%d]: %q is not an absolute path", i, p)
		}
	}
	for i, p := range c.Allow.Exes {
		if !path.IsAbs(p) || strings.Contains(p, "*") {
			return fmt.Errorf("allow.exes[%d]: %q is not an absolute path without wildcards", i, p)
		}
	}
	return nil
}

// checkWatch checks one watched prefix.
func checkWatch(w string) error {
	if !path.IsAbs(w) {
		return fmt.Errorf("%q is not an absolute path", w)
	}
	if path.Clean(w) != w {
		return fmt.Errorf("%q is not clean; write %q", w, path.Clean(w))
	}
	wildcards := 0
	for _, part := range strings.Split(w, "/") {
		if strings.Contains(part, "*") && part != "*" {
			return fmt.Errorf("%q: a wildcard must be a whole path component, as in /home/*/.ssh", w)
		}
		if part == "*" {
			wildcards++
		}
	}
	if wildcards > 1 {
		return fmt.Errorf("%q: at most one wildcard component per path", w)
	}
	return nil
}

func splitHostPort(addr string) (string, int, error) {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return "", 0, errors.New("missing port")
	}
	port, err := strconv.Atoi(addr[i+1:])
	if err != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("port %q is not 1-65535", addr[i+1:])
	}
	return addr[:i], port, nil
}

var (
	unknownField = regexp.MustCompile(`field (\S+) not found in type \S+`)
	wrongType    = regexp.MustCompile("cannot unmarshal !!\\w+ `([^`]*)` into (\\S+)")
)

// goTypes says in words what a Go type of this package accepts.
var goTypes = map[string]string{
	"uint32": "a whole number", "bool": "true or false", "string": "text",
	"[]string": "a list of text", "[]uint32": "a list of whole numbers",
}

// friendly rewrites the YAML decoder's messages in terms of the file, not
// of Go types: "unknown key", "want a whole number".
func friendly(err error) string {
	msg := unknownField.ReplaceAllString(err.Error(), `unknown key "$1"`)
	msg = wrongType.ReplaceAllStringFunc(msg, func(m string) string {
		sub := wrongType.FindStringSubmatch(m)
		want, ok := goTypes[sub[2]]
		if !ok {
			want = "a mapping of keys"
		}
		return fmt.Sprintf("%q is not valid here: want %s", sub[1], want)
	})
	return strings.TrimPrefix(msg, "yaml: unmarshal errors:\n  ")
}

// durationType is the type of the duration fields.
var durationType = reflect.TypeOf(time.Duration(0))

// durationKeys lists the dotted keys of t's duration fields
// ("detection.learning_period"), as the YAML file spells them.
func durationKeys(t reflect.Type, prefix string, out map[string]bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		switch {
		case f.Type == durationType:
			out[prefix+name] = true
		case f.Type.Kind() == reflect.Struct:
			durationKeys(f.Type, prefix+name+".", out)
		}
	}
}

// checkDurations names the field of a duration that does not parse, which
// the YAML decoder does not: `detection.learning_period: "5x" is not a
// duration (e.g. 24h, 10m)`. A bare number is refused too (it would be
// nanoseconds), except 0. Other mistakes are left to the decoder.
func checkDurations(b []byte) error {
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil || len(root.Content) == 0 {
		return nil // the decoder reports it
	}
	keys := map[string]bool{}
	durationKeys(reflect.TypeOf(Config{}), "", keys)
	var walk func(n *yaml.Node, prefix string) error
	walk = func(n *yaml.Node, prefix string) error {
		if n.Kind != yaml.MappingNode {
			return nil
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := prefix+n.Content[i].Value, n.Content[i+1]
			if keys[key] {
				if val.Kind != yaml.ScalarNode {
					return fmt.Errorf("line %d: %s: want a duration (e.g. 24h, 10m)", val.Line, key)
				}
				if _, err := time.ParseDuration(val.Value); err != nil || (val.Tag != "!!str" && val.Value != "0") {
					return fmt.Errorf("line %d: %s: %q is not a duration (e.g. 24h, 10m)", val.Line, key, val.Value)
				}
				continue
			}
			if err := walk(val, key+"."); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(root.Content[0], "")
}

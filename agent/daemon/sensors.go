package daemon

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vigil-sensor/vigil/agent/config"
	"github.com/vigil-sensor/vigil/agent/hostinfo"
	"github.com/vigil-sensor/vigil/agent/kernelfs"
	"github.com/vigil-sensor/vigil/agent/response/netguard"
	"github.com/vigil-sensor/vigil/agent/rules"
	"github.com/vigil-sensor/vigil/agent/sensor"
	"github.com/vigil-sensor/vigil/agent/sensor/file"
	"github.com/vigil-sensor/vigil/agent/sensor/login"
	"github.com/vigil-sensor/vigil/agent/sensor/network"
	"github.com/vigil-sensor/vigil/agent/sensor/process"
)

// family is one event family the agent can run.
type family struct {
	name string
	// required families stop the agent when they fail to load; the others
	// are reported and skipped.
	required bool
	enabled  bool
	load     func() (sensor.Sensor, error)
}

// families lists every family with its loader, configured from cfg.
func families(cfg *config.Config, bootTime time.Time) []family {
	return []family{
		{name: "process", required: true, enabled: cfg.Sensors.Process.Enabled, load: func() (sensor.Sensor, error) {
			return process.Load(process.Options{RingSize: uint32(cfg.Sensors.Process.RingSize), BootTime: bootTime})
		}},
		{name: "file", enabled: cfg.Sensors.File.Enabled, load: func() (sensor.Sensor, error) {
			allow, err := allowList(cfg.Allow)
			if err != nil {
				return nil, err
			}
			return file.Load(file.Options{RingSize: uint32(cfg.Sensors.File.RingSize), BootTime: bootTime,
				Policy: file.Policy{
					Kinds:       fileKinds(cfg.Sensors.File.Events),
					WatchPaths:  nonNil(cfg.Sensors.File.Watch),
					WatchReads:  nonNil(cfg.Sensors.File.WatchReads),
					WatchHidden: nonNil(cfg.Sensors.File.WatchHidden),
					// The agent's own reads and writes are not news.
					AllowPIDs:    append([]uint32{uint32(os.Getpid())}, allow.PIDs...),
					AllowCgroups: allow.CgroupIDs,
					AllowExes:    allow.Exes,
				}})
		}},
		{name: "login", enabled: cfg.Sensors.Login.Enabled, load: func() (sensor.Sensor, error) {
			return login.Load(login.Options{RingSize: uint32(cfg.Sensors.Login.RingSize), BootTime: bootTime,
				IgnoreServices: cfg.Sensors.Login.IgnoreServices})
		}},
		{name: "network", enabled: cfg.Sensors.Network.Enabled, load: func() (sensor.Sensor, error) {
			return network.Load(network.Options{RingSize: uint32(cfg.Sensors.Network.RingSize), BootTime: bootTime,
				NoUDPFlows: !cfg.Sensors.Network.UDPFlows, NoDNS: !cfg.Sensors.Network.DNS})
		}},
	}
}

// loadSensors loads every enabled family. A required family that fails is
// an error; another one is passed to skipped and left out.
func loadSensors(cfg *config.Config, bootTime time.Time, skipped func(family, error)) ([]sensor.Sensor, error) {
	var loaded []sensor.Sensor
	for _, f := range families(cfg, bootTime) {
		if !f.enabled {
			continue
		}
		s, err := f.load()
		if err != nil {
			if f.required {
				for _, l := range loaded {
					l.Close()
				}
				return nil, err
			}
			skipped(f, err)
			continue
		}
		loaded = append(loaded, s)
	}
	return loaded, nil
}

// fileKindNames maps the config's event names to the file family's kinds.
var fileKindNames = map[string]file.Kind{
	"open": file.KindOpen, "rename": file.KindRename, "unlink": file.KindUnlink, "chmod": file.KindChmod,
	"chown": file.KindChown, "link": file.KindLink, "symlink": file.KindSymlink, "setid": file.KindCred,
	"ptrace": file.KindPtrace, "module": file.KindModuleLoad | file.KindModuleUnld, "memfd": file.KindMemfd,
	"mount": file.KindMount | file.KindUmount, "bpf": file.KindBPFProgLoad, "kill": file.KindKill,
}

// fileKinds turns validated event names into the kinds to hook.
func fileKinds(names []string) file.Kind {
	var k file.Kind
	for _, n := range names {
		k |= fileKindNames[n]
	}
	return k
}

// nonNil keeps an empty list empty: for the file family nil means "the defaults".
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func names(sensors []sensor.Sensor) []string {
	out := make([]string, len(sensors))
	for i, s := range sensors {
		out[i] = s.Name()
	}
	return out
}

// Check loads every enabled family once, prints which hooks attached and
// which families are unavailable or disabled, and unloads them. It returns
// an error when the agent could not run: a required family failed.
func Check(cfg *config.Config, configSource string, w io.Writer) error {
	fmt.Fprintf(w, "vigil-agent %s check\n", Version)
	fmt.Fprintf(w, "  %-10s %s\n", "config", configSource)
	fmt.Fprintf(w, "  %-10s %s\n", "kernel", hostinfo.KernelRelease())
	if err := kernelfs.Preflight(); err != nil {
		fmt.Fprintf(w, "  %-10s FAILED: %v\n", "preflight", err)
		return err
	}
	fmt.Fprintf(w, "  %-10s root, BTF at %s\n", "preflight", kernelfs.BTFPath)
	mounted, err := kernelfs.EnsureMounted(kernelfs.Needed)
	if err != nil {
		fmt.Fprintf(w, "  %-10s FAILED: %v\n", "mounts", err)
		return err
	}
	if len(mounted) > 0 {
		fmt.Fprintf(w, "  %-10s mounted %s\n", "mounts", strings.Join(mounted, ", "))
	}
	bootTime, err := hostinfo.BootTime()
	if err != nil {
		return err
	}
	failed := 0
	for _, f := range families(cfg, bootTime) {
		if !f.enabled {
			fmt.Fprintf(w, "  %-10s disabled in the config\n", f.name)
			continue
		}
		s, err := f.load()
		if err != nil {
			what := "unavailable, the agent runs without it"
			if f.required {
				what = "FAILED, the agent cannot run"
				failed++
			}
			fmt.Fprintf(w, "  %-10s %s: %v\n", f.name, what, err)
			continue
		}
		fmt.Fprintf(w, "  %-10s ok, %d hooks: %s\n", f.name, len(s.Hooks()), strings.Join(s.Hooks(), ", "))
		if g, ok := s.(sensor.Gapped); ok && len(g.Missing()) > 0 {
			fmt.Fprintf(w, "  %-10s not on this kernel, so not watched: %s\n", "", strings.Join(g.Missing(), ", "))
		}
		s.Close()
	}
	rulesOK := checkRules(cfg, w)
	checkResponses(cfg, w)
	if failed > 0 {
		return fmt.Errorf("%d required sensor families did not load", failed)
	}
	if !rulesOK {
		return fmt.Errorf("rule files in %s rejected", cfg.Detection.RulesDir)
	}
	return nil
}

// checkRules prints the rules the agent would run with, and the problems
// of the operator's rule files and of the server's rule set the agent last
// applied (which do not stop the agent: it runs on the built-in rules until
// they are fixed). It reports whether they loaded.
func checkRules(cfg *config.Config, w io.Writer) bool {
	dir := cfg.Detection.RulesDir
	var dirs []string
	if dir != "" {
		dirs = append(dirs, dir)
	}
	serverPath := filepath.Join(cfg.StateDir, rules.ServerSetName)
	server, err := rules.LoadServerSet(serverPath)
	if err != nil {
		fmt.Fprintf(w, "  %-10s server rule set REJECTED, the agent would run without it: %v\n", "rules", err)
		return false
	}
	set, err := rules.CompileLayers(server, dirs...)
	if err != nil {
		fmt.Fprintf(w, "  %-10s operator rules in %s or the server's set REJECTED, the agent would run on fewer rules:\n", "rules", dir)
		for _, e := range rules.Errors(err) {
			fmt.Fprintf(w, "  %-10s   %s\n", "", e)
		}
		if len(rules.Errors(err)) == 0 {
			fmt.Fprintf(w, "  %-10s   %v\n", "", err)
		}
		return false
	}
	files := 0
	for _, f := range set.Files() {
		if !strings.HasPrefix(f.Name, "default/") && !strings.HasPrefix(f.Name, rules.ServerPrefix) {
			files++
		}
	}
	enabled := 0
	for _, r := range set.Rules() {
		if r.Enabled {
			enabled++
		}
	}
	fmt.Fprintf(w, "  %-10s %d enabled of %d (built in, plus %d files in %s)\n", "rules", enabled, len(set.Rules()), files, dir)
	fmt.Fprintf(w, "  %-10s server rule set %s\n", "", rules.DescribeServerSet(server, serverPath))
	anomaly := "off"
	if cfg.Detection.Anomaly {
		anomaly = fmt.Sprintf("on, learning for %s from the first event", cfg.Detection.LearningPeriod)
	}
	fmt.Fprintf(w, "  %-10s %s; incidents stay open %s for related signals\n", "anomaly", anomaly, cfg.Detection.CorrelationWindow)
	return true
}

// checkResponses prints the response mode and which response mechanisms
// this host offers. None of them is required: an action whose mechanism is
// missing fails with the reason.
func checkResponses(cfg *config.Config, w io.Writer) {
	modes := cfg.Response.Mode
	if len(cfg.Response.Rules) > 0 {
		modes += fmt.Sprintf(" (%d rules overridden)", len(cfg.Response.Rules))
	}
	fmt.Fprintf(w, "  %-10s mode %s\n", "responses", modes)
	if g, err := netguard.Open(netguard.Options{Interfaces: cfg.Response.Interfaces}); err != nil {
		fmt.Fprintf(w, "  %-10s network (block, isolate, quarantine) unavailable: %v\n", "", err)
	} else {
		where := strings.Join(cfg.Response.Interfaces, ", ")
		if where == "" {
			where = "every interface that is up, except lo"
		}
		fmt.Fprintf(w, "  %-10s network (block, isolate, quarantine) ready for %s\n", "", where)
		g.Close()
	}
	if root, err := kernelfs.CgroupV2Root(); err != nil {
		fmt.Fprintf(w, "  %-10s freeze unavailable: %v\n", "", err)
	} else {
		fmt.Fprintf(w, "  %-10s kill, freeze (cgroup v2 at %s) ready\n", "", root)
	}
}

package rules

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/google/cel-go/cel"
	"go.yaml.in/yaml/v3"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

//go:embed default/*.yaml
var defaultFS embed.FS

// DefaultDir is the operator's rules directory.
const DefaultDir = "/etc/vigil/rules.d"

// DefaultRepeatWindow is a rule's repeat_window when it gives none.
const DefaultRepeatWindow = 10 * time.Second

// Response is what a rule asks the responder to do when it fires.
type Response string

// The responses a rule may name.
const (
	ResponseNone        Response = "none"
	ResponseKill        Response = "kill"
	ResponseFreeze      Response = "freeze"
	ResponseQuarantine  Response = "quarantine"
	ResponseBlockSource Response = "block_source"
	ResponseIsolate     Response = "isolate"
	ResponseRestore     Response = "restore"
)

var responses = []Response{ResponseNone, ResponseKill, ResponseFreeze, ResponseQuarantine, ResponseBlockSource, ResponseIsolate, ResponseRestore}

var severities = map[string]vigilv1.Severity{
	"info":     vigilv1.Severity_SEVERITY_INFO,
	"low":      vigilv1.Severity_SEVERITY_LOW,
	"medium":   vigilv1.Severity_SEVERITY_MEDIUM,
	"high":     vigilv1.Severity_SEVERITY_HIGH,
	"critical": vigilv1.Severity_SEVERITY_CRITICAL,
}

// SeverityName returns the rule-file name of a severity (info ... critical).
func SeverityName(s vigilv1.Severity) string {
	for k, v := range severities {
		if v == s {
			return k
		}
	}
	return "unspecified"
}

// Exception is a named condition under which a rule does not fire.
type Exception struct {
	// Name says what the exception lets through.
	Name string
	// Condition is the CEL bool expression.
	Condition string

	prg cel.Program
}

// Rule is one compiled detection rule.
type Rule struct {
	// ID is the stable identifier, e.g. "exec-from-tmp".
	ID string
	// Title is the one-line summary used as the incident title.
	Title string
	// Description explains what the rule detects and why it matters.
	Description string
	// Severity ranks incidents raised by the rule.
	Severity vigilv1.Severity
	// Attack is the ATT&CK tactic and technique.
	Attack *vigilv1.Attack
	// Kinds are the event kinds the rule is evaluated on.
	Kinds []string
	// Condition is the CEL bool expression that makes the rule fire.
	Condition string
	// Exceptions silence the rule when any of them holds.
	Exceptions []Exception
	// Reason is the CEL string expression that explains a match.
	Reason string
	// Response is the action the rule asks for (ResponseNone by default).
	Response Response
	// Enabled is false for a rule switched off with enabled: false.
	Enabled bool
	// RepeatKey is the CEL string expression that identifies repeats; empty:
	// the executable and the parent.
	RepeatKey string
	// RepeatWindow is how long repeats of a match stay quiet; 0 reports every match.
	RepeatWindow time.Duration
	// File and Line say where the rule was defined (for an overridden rule,
	// where the override is).
	File string
	// Line is the line of the rule's id.
	Line int
	// Overridden is set when an operator file replaced some of the rule's keys.
	Overridden bool

	cond, reason, key cel.Program
	// guard lists the process names the condition can only be true for
	// (nil: any); see nameGuard.
	guard nameGuard
	// ast is the checked condition and lists the lists it may name, for
	// KernelKill.
	ast   *cel.Ast
	lists map[string][]string
}

// FileInfo is one loaded rule file.
type FileInfo struct {
	// Name is the path (default/NAME.yaml for the embedded files).
	Name string
	// Rules counts the rules the file defines or overrides.
	Rules int
}

// Set is a compiled rule set, indexed by event kind. It is immutable.
type Set struct {
	rules  []*Rule
	byKind map[string][]*Rule
	files  []FileInfo
	// serverVersion and serverHash identify the server's rule set compiled
	// into the set (see CompileLayers); 0 and "" for none.
	serverVersion uint64
	serverHash    string
}

// Rules returns every rule of the set, disabled ones included, in load order.
func (s *Set) Rules() []*Rule { return s.rules }

// Files returns the files the set was loaded from, with their rule counts.
func (s *Set) Files() []FileInfo { return s.files }

// Server returns the version and hash of the server's rule set compiled
// into the set (see CompileLayers): 0 and "" when it has none.
func (s *Set) Server() (version uint64, hash string) { return s.serverVersion, s.serverHash }

// ForKind returns the enabled rules evaluated on events of kind.
func (s *Set) ForKind(kind string) []*Rule { return s.byKind[kind] }

// Rule returns the rule with the given id.
func (s *Set) Rule(id string) (*Rule, bool) {
	for _, r := range s.rules {
		if r.ID == id {
			return r, true
		}
	}
	return nil, false
}

// Source is a rule file's name and content, for Compile.
type Source struct {
	// Name is used in errors.
	Name string
	// Data is the YAML text.
	Data []byte
}

// DefaultFiles returns the embedded default rule files.
func DefaultFiles() ([]Source, error) {
	names, err := fs.Glob(defaultFS, "default/*.yaml")
	if err != nil {
		return nil, fmt.Errorf("list default rules: %w", err)
	}
	sort.Strings(names)
	out := make([]Source, 0, len(names))
	for _, n := range names {
		data, err := defaultFS.ReadFile(n)
		if err != nil {
			return nil, fmt.Errorf("read default rules: %w", err)
		}
		out = append(out, Source{Name: n, Data: data})
	}
	return out, nil
}

// DirFiles reads every *.yaml file of each directory, in name order. A
// directory that does not exist holds no files.
func DirFiles(dirs ...string) ([]Source, error) {
	var out []Source
	for _, dir := range dirs {
		names, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
		if err != nil {
			return nil, fmt.Errorf("list rules in %s: %w", dir, err)
		}
		if len(names) == 0 {
			if _, err := os.Stat(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("rules directory: %w", err)
			}
		}
		sort.Strings(names)
		for _, n := range names {
			data, err := os.ReadFile(n)
			if err != nil {
				return nil, fmt.Errorf("read rules: %w", err)
			}
			out = append(out, Source{Name: n, Data: data})
		}
	}
	return out, nil
}

// Load compiles the embedded default rules together with every *.yaml file
// of dirs (the operator's, normally DefaultDir). The error lists every
// problem found (see Errors); the set is nil then.
func Load(dirs ...string) (*Set, error) {
	defaults, err := DefaultFiles()
	if err != nil {
		return nil, err
	}
	operator, err := DirFiles(dirs...)
	if err != nil {
		return nil, err
	}
	return Compile(defaults, operator)
}

// ruleKeys are the keys a rule may have.
var ruleKeys = []string{
	"id", "title", "description", "severity", "tactic", "technique", "on", "condition",
	"exceptions", "reason", "response", "enabled", "override", "repeat_key", "repeat_window",
}

// spec is a rule as written: its keys' value nodes, each with its file.
type spec struct {
	id     string
	idNode *yaml.Node
	src    *source
	keys   map[string]keyed
	item   string
}

type keyed struct {
	src  *source
	node *yaml.Node
}

type listDef struct {
	name   string
	values []string
}

type macroDef struct {
	name string
	src  *source
	node *yaml.Node
}

var (
	identRE     = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)
	ruleIDRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]*$`)
	tacticRE    = regexp.MustCompile(`^TA\d{4}$`)
	techniqueRE = regexp.MustCompile(`^T\d{4}(\.\d{3})?$`)
)

// compiler gathers the parsed files and the problems found.
type compiler struct {
	errs   []error
	lists  []listDef
	macros []macroDef
	specs  []*spec
	byID   map[string]*spec
	files  []FileInfo
}

func (c *compiler) fail(e ...*Error) {
	for _, x := range e {
		c.errs = append(c.errs, x)
	}
}

// Compile compiles the default files and then the operator files into a
// Set. Lists and macros are shared by all files; a later definition of a
// name replaces an earlier one. An operator rule whose id is a default
// rule's must say override: true; its keys then replace the default's.
func Compile(defaults, operator []Source) (*Set, error) {
	c := &compiler{byID: make(map[string]*spec)}
	for _, f := range defaults {
		c.parseFile(f, false)
	}
	for _, f := range operator {
		c.parseFile(f, true)
	}
	if len(c.errs) > 0 {
		return nil, errors.Join(c.errs...)
	}
	set := c.compile()
	if len(c.errs) > 0 {
		return nil, errors.Join(c.errs...)
	}
	return set, nil
}

// mapping walks a mapping node, rejecting keys not in allowed and
// duplicate keys, and returns the value node of each key.
func (c *compiler) mapping(src *source, n *yaml.Node, item string, allowed []string) (map[string]*yaml.Node, bool) {
	if n.Kind != yaml.MappingNode {
		c.fail(src.errAt(n, item, "want a mapping, found %s", kindName(n)))
		return nil, false
	}
	out := make(map[string]*yaml.Node, len(n.Content)/2)
	ok := true
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if allowed != nil && !slices.Contains(allowed, k.Value) {
			c.fail(src.errAt(k, item, "unknown key %q", k.Value))
			ok = false
			continue
		}
		if _, dup := out[k.Value]; dup {
			c.fail(src.errAt(k, item, "key %q given twice", k.Value))
			ok = false
			continue
		}
		out[k.Value] = v
	}
	return out, ok
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	case yaml.AliasNode:
		return "an alias"
	}
	return "nothing"
}

func (c *compiler) parseFile(f Source, operator bool) {
	src := newSource(f.Name, f.Data)
	src.defaults = !operator
	var doc yaml.Node
	if err := yaml.Unmarshal(f.Data, &doc); err != nil {
		c.fail(src.yamlErr(err))
		return
	}
	info := FileInfo{Name: f.Name}
	defer func() { c.files = append(c.files, info) }()
	if len(doc.Content) == 0 {
		return // empty file
	}
	top, ok := c.mapping(src, doc.Content[0], "", []string{"lists", "macros", "rules"})
	if !ok && top == nil {
		return
	}
	if n := top["lists"]; n != nil {
		c.parseLists(src, n)
	}
	if n := top["macros"]; n != nil {
		m, _ := c.mapping(src, n, "macros", nil)
		for i := 0; n.Kind == yaml.MappingNode && i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			item := fmt.Sprintf("macro %q", k.Value)
			if !c.checkName(src, k, item) {
				continue
			}
			v := m[k.Value]
			if v == nil || v.Kind != yaml.ScalarNode {
				c.fail(src.errAt(n.Content[i+1], item, "want a CEL expression"))
				continue
			}
			c.macros = slices.DeleteFunc(c.macros, func(d macroDef) bool { return d.name == k.Value })
			c.macros = append(c.macros, macroDef{name: k.Value, src: src, node: v})
		}
	}
	if n := top["rules"]; n != nil {
		if n.Kind != yaml.SequenceNode {
			c.fail(src.errAt(n, "", "rules: want a list, found %s", kindName(n)))
			return
		}
		for i, rn := range n.Content {
			if c.parseRule(src, rn, i+1, operator) {
				info.Rules++
			}
		}
	}
}

// checkName rejects list and macro names that are not identifiers or that
// hide a variable.
func (c *compiler) checkName(src *source, k *yaml.Node, item string) bool {
	if !identRE.MatchString(k.Value) {
		c.fail(src.errAt(k, item, "name must be lower-case letters, digits and _"))
		return false
	}
	for _, v := range Variables {
		if v.Name == k.Value {
			c.fail(src.errAt(k, item, "name hides the variable %s", v.Name))
			return false
		}
	}
	return true
}

func (c *compiler) parseLists(src *source, n *yaml.Node) {
	if n.Kind != yaml.MappingNode {
		c.fail(src.errAt(n, "", "lists: want a mapping, found %s", kindName(n)))
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		item := fmt.Sprintf("list %q", k.Value)
		if !c.checkName(src, k, item) {
			continue
		}
		if seen[k.Value] {
			c.fail(src.errAt(k, item, "defined twice in this file"))
			continue
		}
		seen[k.Value] = true
		vals, ok := c.strings(src, v, item)
		if !ok {
			continue
		}
		c.lists = slices.DeleteFunc(c.lists, func(d listDef) bool { return d.name == k.Value })
		c.lists = append(c.lists, listDef{name: k.Value, values: vals})
	}
}

// strings reads a list of scalars.
func (c *compiler) strings(src *source, n *yaml.Node, item string) ([]string, bool) {
	if n.Kind != yaml.SequenceNode {
		c.fail(src.errAt(n, item, "want a list of strings, found %s", kindName(n)))
		return nil, false
	}
	out := make([]string, 0, len(n.Content))
	for _, e := range n.Content {
		if e.Kind != yaml.ScalarNode {
			c.fail(src.errAt(e, item, "want a string, found %s", kindName(e)))
			return nil, false
		}
		out = append(out, e.Value)
	}
	return out, true
}

// parseRule records one rule entry; it reports whether the entry is sound
// enough to count.
func (c *compiler) parseRule(src *source, n *yaml.Node, index int, operator bool) bool {
	item := fmt.Sprintf("rule #%d", index)
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == "id" && n.Content[i+1].Kind == yaml.ScalarNode && n.Content[i+1].Value != "" {
				item = fmt.Sprintf("rule %q", n.Content[i+1].Value)
			}
		}
	}
	m, ok := c.mapping(src, n, item, ruleKeys)
	if !ok {
		return false
	}
	idNode := m["id"]
	if idNode == nil || idNode.Kind != yaml.ScalarNode || idNode.Value == "" {
		c.fail(src.errAt(n, item, "missing id"))
		return false
	}
	if !ruleIDRE.MatchString(idNode.Value) {
		c.fail(src.errAt(idNode, item, "id must be lower-case letters, digits, '.' and '-'"))
		return false
	}
	override := false
	if o := m["override"]; o != nil {
		if o.Value != "true" && o.Value != "false" {
			c.fail(src.errAt(o, item, "override: want true or false, found %s", kindName(o)))
			return false
		}
		override = o.Value == "true"
	}
	s := &spec{id: idNode.Value, idNode: idNode, src: src, item: item, keys: map[string]keyed{}}
	for k, v := range m {
		s.keys[k] = keyed{src, v}
	}
	prev, dup := c.byID[s.id]
	switch {
	case override && !operator:
		c.fail(src.errAt(m["override"], item, "override is for operator files"))
		return false
	case override && !dup:
		c.fail(src.errAt(idNode, item, "override of unknown rule %q", s.id))
		return false
	case override:
		// The override's keys replace the default's.
		for k, v := range s.keys {
			prev.keys[k] = v
		}
		prev.idNode, prev.src, prev.item = idNode, src, item
		return true
	case dup:
		hint := ""
		if operator && prev.src.defaults {
			hint = "; set override: true to change it"
		}
		c.fail(src.errAt(idNode, item, "duplicate rule id %q, first defined at %s:%d%s", s.id, prev.src.name, prev.idNode.Line, hint))
		return false
	}
	c.byID[s.id] = s
	c.specs = append(c.specs, s)
	return true
}

// compile builds the CEL environment with the lists and macros and
// compiles every rule.
func (c *compiler) compile() *Set {
	env, err := baseEnv()
	if err != nil {
		c.errs = append(c.errs, err)
		return nil
	}
	// Lists are constants, so that `x in list` is a set lookup.
	var opts []cel.EnvOption
	for _, l := range c.lists {
		opts = append(opts, cel.Constant(l.name, cel.ListType(cel.StringType), constList(l.values)))
	}
	if env, err = env.Extend(opts...); err != nil {
		c.errs = append(c.errs, fmt.Errorf("declare lists: %w", err))
		return nil
	}
	// Macros are compiled in order, each seeing the ones before it, and
	// inlined where they are used.
	var inline []*cel.InlineVariable
	for _, m := range c.macros {
		item := fmt.Sprintf("macro %q", m.name)
		ast, ok := c.compileExpr(env, inline, m.src, m.node, item, "macro", nil)
		if !ok {
			continue
		}
		next, err := env.Extend(cel.Variable(m.name, ast.OutputType()))
		if err != nil {
			c.fail(m.src.errAt(m.node, item, "declare: %v", err))
			continue
		}
		env = next
		inline = append(inline, cel.NewInlineVariable(m.name, ast))
	}
	set := &Set{byKind: make(map[string][]*Rule), files: c.files}
	for _, s := range c.specs {
		r, ok := c.buildRule(env, inline, s)
		if !ok {
			continue
		}
		set.rules = append(set.rules, r)
		if r.Enabled {
			for _, k := range r.Kinds {
				set.byKind[k] = append(set.byKind[k], r)
			}
		}
	}
	return set
}

// compileExpr compiles and type-checks one expression, checks its type
// (when want is not nil) and inlines the macros.
func (c *compiler) compileExpr(env *cel.Env, inline []*cel.InlineVariable, src *source, n *yaml.Node, item, what string, want *cel.Type) (*cel.Ast, bool) {
	if n.Kind != yaml.ScalarNode || strings.TrimSpace(n.Value) == "" {
		c.fail(src.errAt(n, item, "%s: want a CEL expression, found %s", what, kindName(n)))
		return nil, false
	}
	ast, iss := env.Compile(n.Value)
	if iss.Err() != nil {
		c.fail(src.celErrs(n, item, what, n.Value, iss)...)
		return nil, false
	}
	if want != nil && !ast.OutputType().IsExactType(want) {
		c.fail(src.errAt(n, item, "%s: want a %s expression, found %s", what, want, ast.OutputType()))
		return nil, false
	}
	if len(inline) > 0 {
		opt, err := cel.NewStaticOptimizer(cel.NewInliningOptimizer(inline...))
		if err != nil {
			c.fail(src.errAt(n, item, "%s: %v", what, err))
			return nil, false
		}
		ast, iss = opt.Optimize(env, ast)
		if iss.Err() != nil {
			c.fail(src.celErrs(n, item, what, n.Value, iss)...)
			return nil, false
		}
	}
	return ast, true
}

func (c *compiler) program(env *cel.Env, ast *cel.Ast, src *source, n *yaml.Node, item, what string) (cel.Program, bool) {
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		c.fail(src.errAt(n, item, "%s: %v", what, err))
		return nil, false
	}
	return prg, true
}

// listValues returns the lists by name.
func (c *compiler) listValues() map[string][]string {
	m := make(map[string][]string, len(c.lists))
	for _, l := range c.lists {
		m[l.name] = l.values
	}
	return m
}

// buildRule checks a rule's keys and compiles its expressions.
func (c *compiler) buildRule(env *cel.Env, inline []*cel.InlineVariable, s *spec) (*Rule, bool) {
	r := &Rule{ID: s.id, File: s.src.name, Line: s.idNode.Line, Enabled: true, Response: ResponseNone, RepeatWindow: DefaultRepeatWindow}
	_, r.Overridden = s.keys["override"]
	ok := true
	str := func(key string, required bool) (string, keyed) {
		k, has := s.keys[key]
		if !has {
			if required {
				c.fail(s.src.errAt(s.idNode, s.item, "missing %s", key))
				ok = false
			}
			return "", k
		}
		if k.node.Kind != yaml.ScalarNode {
			c.fail(k.src.errAt(k.node, s.item, "%s: want a string, found %s", key, kindName(k.node)))
			ok = false
			return "", k
		}
		return k.node.Value, k
	}
	r.Title, _ = str("title", true)
	r.Description, _ = str("description", true)
	if v, k := str("severity", true); k.node != nil {
		sev, found := severities[v]
		if !found {
			c.fail(k.src.errAt(k.node, s.item, "severity: unknown %q, want info, low, medium, high or critical", v))
			ok = false
		}
		r.Severity = sev
	}
	r.Attack = &vigilv1.Attack{}
	if v, k := str("tactic", true); k.node != nil {
		id, name, _ := strings.Cut(v, " ")
		if !tacticRE.MatchString(id) || strings.TrimSpace(name) == "" {
			c.fail(k.src.errAt(k.node, s.item, "tactic: want an ATT&CK tactic id and name, e.g. \"TA0002 Execution\", found %q", v))
			ok = false
		}
		r.Attack.TacticId, r.Attack.Tactic = id, strings.TrimSpace(name)
	}
	if v, k := str("technique", true); k.node != nil {
		id, name, _ := strings.Cut(v, " ")
		if !techniqueRE.MatchString(id) || strings.TrimSpace(name) == "" {
			c.fail(k.src.errAt(k.node, s.item, "technique: want an ATT&CK technique id and name, e.g. \"T1059.004 Unix Shell\", found %q", v))
			ok = false
		}
		r.Attack.TechniqueId, r.Attack.Technique = id, strings.TrimSpace(name)
	}
	if v, k := str("response", false); k.node != nil {
		r.Response = Response(v)
		if !slices.Contains(responses, r.Response) {
			c.fail(k.src.errAt(k.node, s.item, "response: unknown %q, want one of none, kill, freeze, quarantine, block_source, isolate, restore", v))
			ok = false
		}
	}
	if v, k := str("enabled", false); k.node != nil {
		if v != "true" && v != "false" {
			c.fail(k.src.errAt(k.node, s.item, "enabled: want true or false, found %q", v))
			ok = false
		}
		r.Enabled = v == "true"
	}
	if v, k := str("repeat_window", false); k.node != nil {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			c.fail(k.src.errAt(k.node, s.item, "repeat_window: want a duration such as 10s or 0s, found %q", v))
			ok = false
		}
		r.RepeatWindow = d
	}
	if k, has := s.keys["on"]; !has {
		c.fail(s.src.errAt(s.idNode, s.item, "missing on"))
		ok = false
	} else if kinds, good := c.strings(k.src, k.node, s.item+": on"); !good {
		ok = false
	} else if len(kinds) == 0 {
		c.fail(k.src.errAt(k.node, s.item, "on: name at least one event kind"))
		ok = false
	} else {
		for i, kind := range kinds {
			if !slices.Contains(Kinds, kind) {
				c.fail(k.src.errAt(k.node.Content[i], s.item, "on: unknown event kind %q, want one of %s", kind, strings.Join(Kinds, ", ")))
				ok = false
			}
		}
		r.Kinds = kinds
	}
	// Expressions.
	if cond, k := str("condition", true); k.node != nil {
		r.Condition = cond
		if ast, good := c.compileExpr(env, inline, k.src, k.node, s.item, "condition", cel.BoolType); good {
			r.lists = c.listValues()
			r.guard, r.ast = guardOf(ast, r.lists), ast
			r.cond, good = c.program(env, ast, k.src, k.node, s.item, "condition")
			ok = ok && good
		} else {
			ok = false
		}
	}
	if reason, k := str("reason", true); k.node != nil {
		r.Reason = reason
		if ast, good := c.compileExpr(env, inline, k.src, k.node, s.item, "reason", cel.StringType); good {
			r.reason, good = c.program(env, ast, k.src, k.node, s.item, "reason")
			ok = ok && good
		} else {
			ok = false
		}
	}
	if key, k := str("repeat_key", false); k.node != nil {
		r.RepeatKey = key
		if ast, good := c.compileExpr(env, inline, k.src, k.node, s.item, "repeat_key", cel.StringType); good {
			r.key, good = c.program(env, ast, k.src, k.node, s.item, "repeat_key")
			ok = ok && good
		} else {
			ok = false
		}
	}
	if k, has := s.keys["exceptions"]; has {
		if k.node.Kind != yaml.SequenceNode {
			c.fail(k.src.errAt(k.node, s.item, "exceptions: want a list, found %s", kindName(k.node)))
			ok = false
		} else {
			for _, en := range k.node.Content {
				m, good := c.mapping(k.src, en, s.item+": exception", []string{"name", "condition"})
				if !good {
					ok = false
					continue
				}
				name, cond := m["name"], m["condition"]
				if name == nil || name.Kind != yaml.ScalarNode || name.Value == "" || cond == nil {
					c.fail(k.src.errAt(en, s.item, "exception: want name and condition"))
					ok = false
					continue
				}
				what := fmt.Sprintf("exception %q", name.Value)
				ast, good := c.compileExpr(env, inline, k.src, cond, s.item, what, cel.BoolType)
				if !good {
					ok = false
					continue
				}
				prg, good := c.program(env, ast, k.src, cond, s.item, what)
				if !good {
					ok = false
					continue
				}
				r.Exceptions = append(r.Exceptions, Exception{Name: name.Value, Condition: cond.Value, prg: prg})
			}
		}
	}
	return r, ok
}

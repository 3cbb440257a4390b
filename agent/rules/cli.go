package rules

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// commandUsage is the help of `vigil-agent rules`.
const commandUsage = `usage: vigil-agent rules validate [PATH...]
       vigil-agent rules list [--state-dir DIR] [PATH...]

validate  compiles the built-in rules with the operator's rule files and
          reports every problem as FILE:LINE:COL: ITEM: MESSAGE
list      prints every rule of the set the agent would run

A PATH is a directory, whose *.yaml files are read, or one .yaml file;
without one, ` + DefaultDir + ` (when it exists).
See vigil-agent rules validate --help and vigil-agent rules list --help.
`

const validateUsage = `usage: vigil-agent rules validate [PATH...]

Compiles the built-in rules together with the operator's rule files and
prints each file with its rule count, or every problem as
FILE:LINE:COL: ITEM: MESSAGE. A PATH is a directory, whose *.yaml files
are read, or one .yaml file; a missing path, or a directory without *.yaml
files, is an error. Without a PATH, ` + DefaultDir + ` is read when it
exists. Exits 0 when the set compiles, 1 when it does not, 2 on bad usage.
`

const listUsage = `usage: vigil-agent rules list [--state-dir DIR] [PATH...]

Prints the id, severity, ATT&CK technique, event kinds and state of every
rule the agent would run: the built-in rules, the server's rule set the
agent of the state directory last applied, and the operator's rule files.
A PATH is a directory, whose *.yaml files are read (it may have none), or
one .yaml file; a missing path is an error. Without one, ` + DefaultDir + `
is read when it exists.

Flags:
`

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help" || arg == "help"
}

// Command implements `vigil-agent rules SUBCOMMAND ...`: args[0] is
// validate or list, the rest go to ValidateCommand or ListCommand. It
// returns the exit status.
func Command(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, commandUsage)
		return 2
	}
	if isHelp(args[0]) {
		fmt.Fprint(stdout, commandUsage)
		return 0
	}
	switch args[0] {
	case "validate":
		return ValidateCommand(args[1:], stdout, stderr)
	case "list":
		return ListCommand(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "rules: unknown command %q (want validate or list; see vigil-agent rules --help)\n", args[0])
	return 2
}

// PathFiles reads the operator's rule files of paths for the rules
// commands: a directory gives its *.yaml files and a file is read as it
// is. Unlike DirFiles, which lets the agent run without a rules
// directory, a path given on the command line must exist and hold rules:
// a missing path, a file not named *.yaml and a directory without *.yaml
// files are errors naming the path. With no path, DefaultDir is read when
// it exists.
func PathFiles(paths []string) ([]Source, error) {
	return pathFiles(paths, false)
}

// pathFiles is PathFiles; with allowEmpty a directory without *.yaml files
// is no error (rules list: a host may run on the server's rules alone).
func pathFiles(paths []string, allowEmpty bool) ([]Source, error) {
	if len(paths) == 0 {
		return DirFiles(DefaultDir)
	}
	var out []Source
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("rules path %s: %w", p, errors.Unwrap(err))
		}
		if !st.IsDir() {
			if filepath.Ext(p) != ".yaml" {
				return nil, fmt.Errorf("rules path %s: not a directory nor a .yaml file", p)
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return nil, fmt.Errorf("read rules: %w", err)
			}
			out = append(out, Source{Name: p, Data: data})
			continue
		}
		files, err := DirFiles(p)
		if err != nil {
			return nil, err
		}
		if len(files) == 0 && !allowEmpty {
			return nil, fmt.Errorf("rules path %s: no *.yaml files in the directory", p)
		}
		out = append(out, files...)
	}
	return out, nil
}

// ValidateCommand implements `vigil-agent rules validate [PATH...]`: it
// compiles the default rules with the files of PathFiles and prints each
// file with its rule count, or every problem as FILE:LINE:COL: ITEM:
// MESSAGE. It returns 0 when the set compiles, 1 when it does not or a
// path is wrong, 2 for bad usage.
func ValidateCommand(args []string, stdout, stderr io.Writer) int {
	for _, a := range args {
		if isHelp(a) && a != "help" {
			fmt.Fprint(stdout, validateUsage)
			return 0
		}
		if strings.HasPrefix(a, "-") {
			fmt.Fprintf(stderr, "rules validate: unknown flag %s (see vigil-agent rules validate --help)\n", a)
			return 2
		}
	}
	defaults, err := DefaultFiles()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	operator, err := PathFiles(args)
	if err != nil {
		fmt.Fprintf(stderr, "rules validate: %v\n", err)
		return 1
	}
	set, err := Compile(defaults, operator)
	if err != nil {
		for _, e := range Errors(err) {
			fmt.Fprintln(stderr, e)
		}
		if len(Errors(err)) == 0 {
			fmt.Fprintln(stderr, err)
		}
		return 1
	}
	for _, f := range set.Files() {
		fmt.Fprintf(stdout, "%s: %d rules\n", f.Name, f.Rules)
	}
	enabled := 0
	for _, r := range set.Rules() {
		if r.Enabled {
			enabled++
		}
	}
	fmt.Fprintf(stdout, "ok: %d rules (%d enabled) in %d files\n", len(set.Rules()), enabled, len(set.Files()))
	return 0
}

// ListCommand implements `vigil-agent rules list [--state-dir DIR]
// [DIR...]`: it prints the id, severity, ATT&CK technique and event kinds
// of every rule of the set loaded from the defaults, the server's rule set
// the agent of the state directory (DefaultStateDir) last applied, and the
// directories (DefaultDir when none is given), marking disabled ones, and
// then the server set's version.
func ListCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vigil-agent rules list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	stateDir := fs.String("state-dir", DefaultStateDir, "the agent's state `directory`, which keeps the server's rule set")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), listUsage)
		fs.PrintDefaults()
	}
	for _, a := range args {
		if isHelp(a) && a != "help" {
			fs.SetOutput(stdout)
			fs.Usage()
			return 0
		}
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	local, err := pathFiles(fs.Args(), true)
	if err != nil {
		fmt.Fprintf(stderr, "rules list: %v\n", err)
		return 1
	}
	serverPath := filepath.Join(*stateDir, ServerSetName)
	server, err := LoadServerSet(serverPath)
	if err != nil {
		fmt.Fprintf(stderr, "%v; listing without it\n", err)
	}
	set, err := compileLayers(server, local)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSEVERITY\tTECHNIQUE\tKINDS\tSTATE")
	for _, r := range set.Rules() {
		state := "enabled"
		if !r.Enabled {
			state = "disabled"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.ID, SeverityName(r.Severity), r.Attack.GetTechniqueId(), strings.Join(r.Kinds, ","), state)
	}
	if err := tw.Flush(); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "server rule set: %s\n", DescribeServerSet(server, serverPath))
	return 0
}

// DescribeServerSet says in a few words which server rule set rs is, kept
// at path: "version 3 (sha256:1f2e3d4c5b6a, 2 files, set by alice) from
// PATH", or "none" when rs is nil.
func DescribeServerSet(rs *vigilv1.RuleSet, path string) string {
	if rs == nil {
		return "none (" + path + " holds none)"
	}
	hash := rs.GetHash()
	if len(hash) > len("sha256:")+12 {
		hash = hash[:len("sha256:")+12]
	}
	files := fmt.Sprintf("%d files", len(rs.GetFiles()))
	if len(rs.GetFiles()) == 1 {
		files = "1 file"
	}
	by := ""
	if rs.GetSetBy() != "" {
		by = ", set by " + rs.GetSetBy()
	}
	return fmt.Sprintf("version %d (%s, %s%s) from %s", rs.GetVersion(), hash, files, by, path)
}

package rules

import (
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// Command implements `vigil-agent rules SUBCOMMAND ...`: args[0] is
// validate or list, the rest go to ValidateCommand or ListCommand. It
// returns the exit status.
func Command(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: vigil-agent rules validate DIR... | rules list [--state-dir DIR] [DIR...]")
		return 2
	}
	switch args[0] {
	case "validate":
		return ValidateCommand(args[1:], stdout, stderr)
	case "list":
		return ListCommand(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "rules: unknown command %q (want validate or list)\n", args[0])
	return 2
}

// ValidateCommand implements `vigil-agent rules validate DIR...`: it
// compiles the default rules with every *.yaml file of the directories
// (DefaultDir when none is given) and prints each file with its rule count,
// or every problem as FILE:LINE:COL: ITEM: MESSAGE. It returns 0 when the
// set compiles, 1 when it does not.
func ValidateCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		args = []string{DefaultDir}
	}
	defaults, err := DefaultFiles()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	operator, err := DirFiles(args...)
	if err != nil {
		fmt.Fprintln(stderr, err)
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
	if err := fs.Parse(args); err != nil {
		return 2
	}
	args = fs.Args()
	if len(args) == 0 {
		args = []string{DefaultDir}
	}
	serverPath := filepath.Join(*stateDir, ServerSetName)
	server, err := LoadServerSet(serverPath)
	if err != nil {
		fmt.Fprintf(stderr, "%v; listing without it\n", err)
	}
	set, err := CompileLayers(server, args...)
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

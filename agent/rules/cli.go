package rules

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Command implements `vigil-agent rules SUBCOMMAND ...`: args[0] is
// validate or list, the rest go to ValidateCommand or ListCommand. It
// returns the exit status.
func Command(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: vigil-agent rules validate DIR... | rules list [DIR...]")
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

// ListCommand implements `vigil-agent rules list [DIR...]`: it prints the
// id, severity, ATT&CK technique and event kinds of every rule of the set
// loaded from the defaults and the directories (DefaultDir when none is
// given), marking disabled ones.
func ListCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		args = []string{DefaultDir}
	}
	set, err := Load(args...)
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
	return 0
}

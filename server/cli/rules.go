package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/render"
)

const rulesUsage = `vigilctl rules sets and shows the fleet's rule set: rule files that every
agent loads after its built-in rules and before its own rules directory
(/etc/vigil/rules.d). The server checks a set with the agents' rule
compiler before storing it, sends it to every connected agent at once and
to the others when they connect; each agent swaps its rules without
restarting, and keeps the set it had when the new one does not compile
with its own files. 'vigilctl agents' shows the version each agent runs.

Usage:
  vigilctl rules push DIR [--requester NAME]   set the *.yaml files of DIR as the fleet's rules
  vigilctl rules clear [--requester NAME]      remove the fleet's rules from the agents
  vigilctl rules show [--files] [--json]       print the fleet's rule set

Flags:
  --requester NAME   who sets the rules (default $USER), when the server
                     checks no tokens; with --token the token's holder
  --files            also print each file's content
  --json             print the rule set as one JSON line (with the files)

Setting rules needs the admin role; showing them the viewer role. A set
that does not compile is refused, and each problem printed as
FILE:LINE:COLUMN: ITEM: MESSAGE; nothing is stored then.

Examples:
  vigil-agent rules validate ./fleet-rules && vigilctl rules push ./fleet-rules
  vigilctl rules show --files
`

// rules dispatches the rules subcommands.
func (a *app) rules(ctx context.Context, args []string) error {
	const cmd = "vigilctl rules"
	if len(args) == 0 {
		fmt.Fprint(a.stderr, rulesUsage)
		return &usageError{cmd, "no rules command given (push, clear or show)"}
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(a.stdout, rulesUsage+globalUsage)
		return flag.ErrHelp
	case "push", "set":
		return a.rulesPush(ctx, args[1:], false)
	case "clear":
		return a.rulesPush(ctx, args[1:], true)
	case "show", "get":
		return a.rulesShow(ctx, args[1:])
	default:
		return &usageError{cmd, fmt.Sprintf("unknown rules command %q (want push, clear or show)", args[0])}
	}
}

// ruleFiles reads every *.yaml file of dir, in name order.
func ruleFiles(dir string) ([]*vigilv1.RuleFile, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("rules directory: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("rules directory: %s is not a directory", dir)
	}
	names, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, fmt.Errorf("list rules in %s: %w", dir, err)
	}
	sort.Strings(names)
	out := make([]*vigilv1.RuleFile, 0, len(names))
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			return nil, fmt.Errorf("read rules: %w", err)
		}
		out = append(out, &vigilv1.RuleFile{Name: filepath.Base(n), Content: string(b)})
	}
	return out, nil
}

// rulesPush runs "vigilctl rules push DIR" and, with clear, "vigilctl
// rules clear".
func (a *app) rulesPush(ctx context.Context, args []string, clear bool) error {
	cmd := "vigilctl rules push"
	if clear {
		cmd = "vigilctl rules clear"
	}
	fs := a.newFlagSet()
	requester := fs.String("requester", os.Getenv("USER"), "")
	pos, err := parse(fs, args)
	if err != nil {
		return a.flagError(cmd, rulesUsage, err)
	}
	var files []*vigilv1.RuleFile
	switch {
	case clear && len(pos) > 0:
		return &usageError{cmd, fmt.Sprintf("unexpected argument %q", pos[0])}
	case !clear && len(pos) != 1:
		return &usageError{cmd, "want one DIR"}
	case !clear:
		if files, err = ruleFiles(pos[0]); err != nil {
			return err
		}
		if len(files) == 0 {
			return fmt.Errorf("no *.yaml files in %s (to remove the fleet's rules, run 'vigilctl rules clear')", pos[0])
		}
	}
	conn, err := a.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	callCtx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	resp, err := vigilv1.NewRulesServiceClient(conn).SetRuleSet(callCtx, &vigilv1.SetRuleSetRequest{Files: files, Requester: *requester})
	if err != nil {
		return a.rpcError("set rules", err)
	}
	rs := resp.GetRuleSet()
	if !resp.GetChanged() {
		fmt.Fprintf(a.stdout, "rule set unchanged: version %d (%s) already holds these files\n", rs.GetVersion(), rs.GetHash())
		return nil
	}
	fmt.Fprintf(a.stdout, "rule set version %d (%s): %s, sent to %s\n", rs.GetVersion(), rs.GetHash(),
		render.Count(len(rs.GetFiles()), "file", "files"), render.Count(int(resp.GetAgentsConnected()), "connected agent", "connected agents"))
	return nil
}

// rulesShow runs "vigilctl rules show".
func (a *app) rulesShow(ctx context.Context, args []string) error {
	const cmd = "vigilctl rules show"
	fs := a.newFlagSet()
	withFiles := fs.Bool("files", false, "")
	asJSON := fs.Bool("json", false, "")
	pos, err := parse(fs, args)
	if err != nil {
		return a.flagError(cmd, rulesUsage, err)
	}
	if len(pos) > 0 {
		return &usageError{cmd, fmt.Sprintf("unexpected argument %q", pos[0])}
	}
	conn, err := a.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	callCtx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	rs, err := vigilv1.NewRulesServiceClient(conn).GetRuleSet(callCtx, &vigilv1.GetRuleSetRequest{})
	if err != nil {
		return a.rpcError("get rules", err)
	}
	if *asJSON {
		return jsonLine(a.stdout, rs)
	}
	return writeRuleSet(a.stdout, rs, *withFiles)
}

// writeRuleSet prints a rule set: its version, hash, who set it and when,
// then its files with their sizes and, with content, their text.
func writeRuleSet(w io.Writer, rs *vigilv1.RuleSet, content bool) error {
	if rs.GetVersion() == 0 {
		_, err := fmt.Fprintln(w, "no rule set: the agents run on their own rules only")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, f := range [][2]string{
		{"Version", fmt.Sprint(rs.GetVersion())},
		{"Hash", rs.GetHash()},
		{"Set by", rs.GetSetBy()},
		{"Set", render.Time(rs.GetSetTime())},
		{"Files", fmt.Sprint(len(rs.GetFiles()))},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", f[0], dashed(f[1]))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write rule set: %w", err)
	}
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, f := range rs.GetFiles() {
		fmt.Fprintf(tw, "  %s\t%d bytes\n", render.Printable(f.GetName()), len(f.GetContent()))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write rule set: %w", err)
	}
	if !content {
		return nil
	}
	var b strings.Builder
	for _, f := range rs.GetFiles() {
		fmt.Fprintf(&b, "\n# --- %s\n%s", render.Printable(f.GetName()), f.GetContent())
		if !strings.HasSuffix(f.GetContent(), "\n") {
			b.WriteByte('\n')
		}
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write rule set: %w", err)
	}
	return nil
}

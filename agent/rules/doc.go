// Package rules is the agent's rule engine: detection rules written in YAML
// whose conditions are CEL expressions over typed event fields, each mapped
// to MITRE ATT&CK, compiled once and evaluated on every event of the kinds
// they name.
//
// # Files
//
// The embedded default set (default/*.yaml in this package) is loaded
// first, then every *.yaml file of the operator's directories (DefaultDir,
// /etc/vigil/rules.d) in name order. A file has up to three keys; any other
// key, anywhere, is an error.
//
//	lists:            # name -> list of strings, a CEL constant list(string)
//	  my_tools: [frob, frobd]
//	macros:           # name -> CEL expression, usable by name afterwards
//	  by_my_tools: process.name in my_tools
//	rules:
//	  - id: frob-from-tmp              # lower-case letters, digits, '.', '-'
//	    title: One-line incident title
//	    description: What it detects and why it matters.
//	    severity: medium               # info | low | medium | high | critical
//	    tactic: TA0002 Execution       # ATT&CK id, space, name
//	    technique: "T1204.002 User Execution: Malicious File"
//	    on: [exec]                     # event kinds (see Kinds)
//	    condition: by_my_tools && process.cwd.under(tmp_dirs)   # CEL bool
//	    exceptions:                    # the rule stays quiet if any holds
//	      - name: build farm
//	        condition: user.name == 'builder'
//	    reason: "'frob ran in ' + process.cwd"   # CEL string
//	    response: none                 # none | kill | freeze | quarantine | block_source | isolate | restore
//	    enabled: true
//	    repeat_key: process.exe        # CEL string; default: exe + parent
//	    repeat_window: 10s             # 0s reports every match
//
// Lists and macros are shared by all files; a later definition of a name
// (a later file, operator files after the defaults) replaces an earlier
// one, so an operator can widen a default list by redefining it. A macro
// may use the lists and the macros defined before it; macros are
// type-checked where they are defined and inlined where they are used.
//
// Rule ids are unique across all files. An operator rule whose id is a
// default rule's must say override: true; the keys it gives then replace
// the default's and the others are kept. To switch a default rule off:
//
//	rules:
//	  - id: exec-from-tmp
//	    override: true
//	    enabled: false
//
// # Errors
//
// Load and Compile report every problem, each as an *Error that says
// FILE:LINE:COLUMN: ITEM: MESSAGE, where ITEM is `rule "id"` (`rule #N`
// when the id is missing), `macro "name"` or `list "name"`. CEL compile
// and type errors are placed at the offending character in the file, also
// inside folded (>-) and literal (|) blocks. YAML syntax errors carry only
// a line from the YAML parser (for an unfinished construct, the line where
// it started); the column is that of the line's first non-blank character.
//
// # The CEL environment
//
// The variables are kind, process, parent, ancestors (list, parent first),
// file, cred, ptrace, module, memfd, mount, bpf, kill, login, network and
// user; every one is always set, to zero values where it does not apply.
// Their fields are those of Input and its parts (the cel struct tags); a
// misspelt field is a compile error. Every number is a CEL int, so rules
// compare with plain literals (process.uid == 0). process.listening and
// parent.listening are computed on first use from /proc with the engine's
// Probe (ProcProbe: the process holds a TCP socket in LISTEN state).
//
// Besides CEL's standard library and the strings, lists and bindings
// (cel.bind) extensions, rules may call:
//
//	p.under(dir) / p.under([dirs])  p is dir or lies below it
//	p.glob(pattern) / p.glob([...]) path.Match, '*' stops at '/'
//	abspath(p, cwd)                 p made absolute against cwd, cleaned
//	base(p), dirname(p)             path.Base, path.Dir
//	quote(s)                        s as a Go double-quoted string
//	octal(n)                        n as 4 octal digits (file modes)
//	any_bits(n, mask), all_bits(n, mask)   bit tests (CEL has no '&')
//	file_arg(process, [files])      [file, argument] for the first argument
//	                                after argv[0] naming one of files (or
//	                                file + "-") relative to cwd or absolute,
//	                                alone or after "=", else []
//
// # Evaluation
//
// Engine indexes the enabled rules by kind, so an event evaluates only the
// rules of its kind: the condition first, then the exceptions and the
// reason only when it holds. A match whose rule and repeat key (by default
// the executable and the parent's pid and start time) matched within the
// rule's repeat window is counted and not returned; the next match
// reported carries the count in Repeats. Swap and Watcher replace the set
// atomically while evaluation goes on.
//
// The objects are served to CEL by a typed provider of this package rather
// than ext.NativeTypes: both type-check field names, but the provider
// reads fields without reflection (BenchmarkFieldAccess: 40-50% less time
// and half the allocations).
package rules

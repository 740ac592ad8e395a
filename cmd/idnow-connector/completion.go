package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
)

// A completion script is generated from the same sources the help shows: the command list of
// usage and each command's flag set as its -h prints it. A flag or command added later is
// completed without anyone remembering to edit a list here.

type complFlag struct {
	name, help string
	takesValue bool
}

type complCommand struct {
	name, help string
	subs       []string // config: print, check
	flags      []complFlag
}

var (
	usageCommand = regexp.MustCompile(`^  ([a-z][a-z-]*)\s+(\S.*)$`)
	flagLine     = regexp.MustCompile(`^  -([A-Za-z0-9][A-Za-z0-9_-]*)(?: (\S+))?$`)
)

// completionModel reads the commands from usage and asks each for its flags.
func completionModel(ctx context.Context) []complCommand {
	var cmds []complCommand
	inCommands := false
	for _, line := range strings.Split(usage, "\n") {
		if line == "commands:" {
			inCommands = true
			continue
		}
		m := usageCommand.FindStringSubmatch(line)
		if !inCommands || m == nil {
			continue
		}
		c := complCommand{name: m[1], help: m[2]}
		switch c.name {
		case "version", "completion":
		case "config":
			c.subs = []string{"print", "check"}
			c.flags = commandFlags(ctx, "config", "print")
		case "privacy":
			c.subs = []string{"init", "rotate-kek"}
			c.flags = commandFlags(ctx, "privacy", "init")
		default:
			c.flags = commandFlags(ctx, c.name)
		}
		cmds = append(cmds, c)
	}
	return cmds
}

// commandFlags runs `args... -h` and reads the flags from what flag.PrintDefaults wrote.
func commandFlags(ctx context.Context, args ...string) []complFlag {
	var help bytes.Buffer
	// -h parses flags only: nothing is loaded, started or bound.
	_ = run(ctx, append(args, "-h"), &help, &help) // sim prints its help on stdout
	var flags []complFlag
	sc := bufio.NewScanner(&help)
	for sc.Scan() {
		if m := flagLine.FindStringSubmatch(sc.Text()); m != nil {
			flags = append(flags, complFlag{name: m[1], takesValue: m[2] != ""})
			continue
		}
		if n := len(flags); n > 0 && flags[n-1].help == "" && strings.HasPrefix(sc.Text(), "    \t") {
			flags[n-1].help = strings.TrimSpace(sc.Text())
		}
	}
	sort.Slice(flags, func(i, j int) bool { return flags[i].name < flags[j].name })
	return flags
}

// flagValues are the fixed answers of flags that take one of a few words; "" = any value.
func flagValues(name string) string {
	switch name {
	case "format":
		return "json pretty"
	case "mode":
		return "run ingress enricher reconciler commands archiver"
	}
	return ""
}

func completion(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) != 1 || (args[0] != "bash" && args[0] != "zsh") {
		return fmt.Errorf("completion: want bash or zsh, e.g. 'source <(idnow-connector completion bash)'")
	}
	cmds := completionModel(ctx)
	if args[0] == "bash" {
		return writeBash(stdout, cmds)
	}
	return writeZsh(stdout, cmds)
}

func writeBash(w io.Writer, cmds []complCommand) error {
	var b strings.Builder
	names := make([]string, 0, len(cmds))
	for _, c := range cmds {
		names = append(names, c.name)
	}
	b.WriteString("# bash completion for idnow-connector: source <(idnow-connector completion bash)\n")
	b.WriteString("_idnow_connector() {\n")
	b.WriteString("  local cur=\"${COMP_WORDS[COMP_CWORD]}\" prev=\"${COMP_WORDS[COMP_CWORD-1]}\" words=\"\"\n")
	fmt.Fprintf(&b, "  if [[ $COMP_CWORD -eq 1 ]]; then\n    COMPREPLY=($(compgen -W %q -- \"$cur\"))\n    return\n  fi\n", strings.Join(append(names, "--version", "--help"), " "))
	b.WriteString("  case \"$prev\" in\n")
	b.WriteString("    -config|--config) COMPREPLY=($(compgen -f -- \"$cur\")); return ;;\n")
	for _, n := range []string{"format", "mode"} {
		fmt.Fprintf(&b, "    -%s|--%s) COMPREPLY=($(compgen -W %q -- \"$cur\")); return ;;\n", n, n, flagValues(n))
	}
	b.WriteString("  esac\n  case \"${COMP_WORDS[1]}\" in\n")
	for _, c := range cmds {
		if c.name == "completion" {
			continue // its one argument is written below
		}
		var words []string
		for _, f := range c.flags {
			words = append(words, "--"+f.name)
		}
		if len(c.subs) > 0 {
			fmt.Fprintf(&b, "    %s) if [[ $COMP_CWORD -eq 2 ]]; then words=%q; else words=%q; fi ;;\n", c.name, strings.Join(c.subs, " "), strings.Join(words, " "))
			continue
		}
		fmt.Fprintf(&b, "    %s) words=%q ;;\n", c.name, strings.Join(words, " "))
	}
	b.WriteString("    completion) [[ $COMP_CWORD -eq 2 ]] && words=\"bash zsh\" ;;\n")
	b.WriteString("  esac\n  COMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n}\n")
	b.WriteString("complete -o default -F _idnow_connector idnow-connector\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// zshQuote escapes text for a single-quoted _arguments/_describe spec.
func zshQuote(s string) string {
	s = strings.NewReplacer("'", "'\\''", "[", "(", "]", ")", ":", " -").Replace(s)
	return s
}

func writeZsh(w io.Writer, cmds []complCommand) error {
	var b strings.Builder
	b.WriteString("#compdef idnow-connector\n")
	b.WriteString("# zsh completion for idnow-connector: put in $fpath as _idnow-connector, or source <(idnow-connector completion zsh)\n")
	b.WriteString("_idnow_connector() {\n  local -a commands\n  commands=(\n")
	for _, c := range cmds {
		fmt.Fprintf(&b, "    '%s:%s'\n", c.name, zshQuote(c.help))
	}
	b.WriteString("  )\n  if (( CURRENT == 2 )); then\n    _describe 'command' commands\n    return\n  fi\n  case $words[2] in\n")
	for _, c := range cmds {
		fmt.Fprintf(&b, "    %s)\n      _arguments", c.name)
		if len(c.subs) > 0 {
			fmt.Fprintf(&b, " '1:subcommand:(%s)'", strings.Join(c.subs, " "))
		}
		if c.name == "completion" {
			b.WriteString(" '1:shell:(bash zsh)'")
		}
		for _, f := range c.flags {
			spec := fmt.Sprintf("--%s[%s]", f.name, zshQuote(f.help))
			if f.takesValue {
				switch {
				case f.name == "config":
					spec += ":file:_files"
				case flagValues(f.name) != "":
					spec += fmt.Sprintf(":%s:(%s)", f.name, flagValues(f.name))
				default:
					spec += ":" + f.name + ": "
				}
			}
			fmt.Fprintf(&b, " \\\n        '%s'", spec)
		}
		b.WriteString("\n      ;;\n")
	}
	b.WriteString("  esac\n}\n")
	b.WriteString("if [[ $funcstack[1] == _idnow_connector ]]; then\n  _idnow_connector \"$@\"\nelse\n  compdef _idnow_connector idnow-connector\nfi\n")
	_, err := io.WriteString(w, b.String())
	return err
}

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"text/tabwriter"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/app"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/config"
)

// printVersion writes the version, the Go toolchain and, when the binary was built from a git
// checkout, the commit (from the build info the go command embeds; "-dirty" if it had changes).
func printVersion(w io.Writer) {
	fmt.Fprintf(w, "idnow-connector %s\n", version)
	goVersion := runtime.Version()
	commit := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
		modified := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if commit != "" && modified {
			commit += "-dirty"
		}
	}
	fmt.Fprintf(w, "go: %s\n", goVersion)
	if commit != "" {
		fmt.Fprintf(w, "commit: %s\n", commit)
	}
}

const configUsage = `usage: idnow-connector config <print|check> [--config FILE] [--mode run|ingress|enricher|reconciler|archiver]

  print  the effective configuration (defaults, then the file, then IDNOW_CONNECTOR_* variables),
         one key a line with its value and source; secrets are shown as <redacted>
  check  validate the configuration for --mode and list every problem; exits 1 if there is any
         (for CI and as a Kubernetes init container)
`

func configCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "print" && args[0] != "check") {
		fmt.Fprint(stderr, configUsage)
		if len(args) == 0 {
			return errors.New("config: missing subcommand print or check")
		}
		if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
			return flag.ErrHelp
		}
		return fmt.Errorf("config: unknown subcommand %q: want print or check", args[0])
	}
	sub := args[0]
	fs := flag.NewFlagSet("config "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "config.yaml", "configuration file (environment variables "+config.EnvPrefix+"* override it)")
	mode := fs.String("mode", string(app.ModeRun), "the role whose sections are validated: run, ingress, enricher, reconciler or archiver")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("config %s: unexpected arguments %q", sub, fs.Args())
	}
	m := app.Mode(*mode)
	if m != app.ModeRun && m != app.ModeIngress && m != app.ModeEnricher && m != app.ModeReconciler && m != app.ModeCommands && m != app.ModeArchiver {
		return fmt.Errorf("config %s: --mode %q must be run, ingress, enricher, reconciler, commands or archiver", sub, *mode)
	}
	explicit := false
	fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "config" })
	cfg := app.DefaultConfig()
	settings, loadErr := config.Explain(config.Source{Path: *path, Required: explicit, Environ: os.Environ()}, &cfg, app.SecretKeys...)
	if sub == "print" {
		if settings == nil {
			return loadErr // the file could not be read at all
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY\tVALUE\tSOURCE")
		for _, s := range settings {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Key, s.Value, s.Source)
		}
		if err := tw.Flush(); err != nil {
			return fmt.Errorf("config print: write: %w", err)
		}
		if loadErr != nil {
			return fmt.Errorf("config print: the values above are defaults where these were refused:\n%w", loadErr)
		}
		return nil
	}
	// check: the loading problems and, on what did load, every section's validation.
	problems := flatten(loadErr)
	if settings != nil {
		problems = append(problems, flatten(cfg.Validate(m))...)
	}
	// Tracing is configured by the standard OTEL_* variables, which start-up checks too.
	problems = append(problems, flatten(app.TracingProblems(os.Getenv))...)
	if len(problems) == 0 {
		fmt.Fprintf(stdout, "configuration OK for %s (%s)\n", m, describeSource(*path, explicit))
		return nil
	}
	lines := make([]string, len(problems))
	for i, p := range problems {
		lines[i] = "  - " + p.Error()
	}
	fmt.Fprintf(stdout, "%d problem(s) in the configuration for %s (%s):\n%s\n", len(problems), m, describeSource(*path, explicit), strings.Join(lines, "\n"))
	return fmt.Errorf("config check: %d problem(s)", len(problems))
}

func describeSource(path string, explicit bool) string {
	if _, err := os.Stat(path); err != nil && !explicit {
		return "no " + path + "; defaults and environment"
	}
	return path + " and environment"
}

// flatten splits joined errors into their leaves, so each problem is one line.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

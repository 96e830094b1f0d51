// Command herald is the real-time notification hub: its server and the
// tools around it (validate, token, sub, pub, plugins, version).
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sort"
	"strings"
)

// version, commit and buildDate are set at build time (the Makefile passes
// -ldflags "-X main.commit=... -X main.buildDate=..."); a binary built with
// VCS stamping takes them from its build info instead.
var (
	version   = "0.1.0-dev"
	commit    = ""
	buildDate = ""
)

type command struct {
	summary string
	run     func(args []string, stdout, stderr io.Writer) error
}

// commands is filled in init: the commands' own usage texts refer to it.
var commands map[string]command

func init() {
	commands = map[string]command{
		"serve":    {"run the hub", runServe},
		"validate": {"check a config file", runValidate},
		"token":    {"mint an HS256 client token with the configured secret", runToken},
		"sub":      {"subscribe to channels and print each notification as a JSON line", runSub},
		"pub":      {"publish a notification through the HTTP API", runPub},
		"plugins":  {"list the plugins of a running hub", runPlugins},
		"plugin":   {"plugin new NAME: write a working out-of-tree plugin to start from", runPlugin},
		"call":     {"call a plugin method as a client (token) or a backend (API key); print the result", runCall},
		"version":  {"print the version, commit and build date", runVersion},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "herald — a real-time notification hub")
	fmt.Fprintln(w, "\nUsage: herald <command> [flags]   (herald <command> -h for its flags)")
	fmt.Fprintln(w, "\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-9s %s\n", n, commands[n].summary)
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// errUsage marks errors already explained by flag's own output.
var errUsage = errors.New("usage")

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && (args[0] == "--version" || args[0] == "-version" || args[0] == "-v") {
		args = []string{"version"}
	}
	if len(args) == 0 {
		usage(stderr) // a mistake, explained where mistakes are
		return 2
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "herald: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	if err := cmd.run(args[1:], stdout, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		if errors.Is(err, errUsage) {
			return 2
		}
		var ec exitCode
		if errors.As(err, &ec) {
			return int(ec)
		}
		fmt.Fprintf(stderr, "herald %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

// exitCode ends the command with that code and no further message.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit %d", int(e)) }

// newFlags returns a flag set that returns errors instead of exiting. Its
// help, asked for with -h, goes to stdout as `herald -h`'s does; what it
// prints about a mistake goes to stderr.
func newFlags(name, synopsis string, stdout, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("herald "+name, flag.ContinueOnError)
	fs.SetOutput(&flagOutput{stdout: stdout, stderr: stderr})
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: %s\n\n%s\n", strings.TrimSpace("herald "+name+" "+synopsis), commands[name].summary)
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintln(w, "\nFlags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

// flagOutput is a flag set's output: stderr, except during parse, when it
// holds what package flag prints until parse knows whether -h asked for
// it.
type flagOutput struct {
	stdout, stderr io.Writer
	parsing        bool
	held           bytes.Buffer
}

func (o *flagOutput) Write(p []byte) (int, error) {
	if o.parsing {
		return o.held.Write(p)
	}
	return o.stderr.Write(p)
}

// parse is fs.Parse, printing the help that -h asked for to stdout.
func parse(fs *flag.FlagSet, args []string) error {
	o, ok := fs.Output().(*flagOutput)
	if !ok {
		return fs.Parse(args)
	}
	o.parsing = true
	err := fs.Parse(args)
	o.parsing = false
	w := o.stderr
	if errors.Is(err, flag.ErrHelp) {
		w = o.stdout
	}
	_, _ = w.Write(o.held.Bytes())
	o.held.Reset()
	return err
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := parse(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected arguments: %v\n", fs.Args())
		fs.Usage()
		return errUsage
	}
	return nil
}

func runVersion(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("version", "", stdout, stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintln(stdout, versionLine())
	return nil
}

// versionLine is the version with the commit and its date when the binary
// was built from a checkout (the Go toolchain stamps them in its build info).
func versionLine() string {
	line := "herald " + version
	rev, when, dirty, goVersion := commit, buildDate, "", ""
	if info, ok := debug.ReadBuildInfo(); ok {
		goVersion = " " + info.GoVersion
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value[:min(12, len(s.Value))]
			case "vcs.time":
				when = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "+modified"
				}
			}
		}
	}
	if rev != "" {
		line += " (commit " + rev + dirty
		if when != "" {
			line += ", " + when
		}
		line += ")"
	}
	return line + goVersion
}

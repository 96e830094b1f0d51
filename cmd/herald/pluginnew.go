package main

import (
	"bytes"
	"embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"text/template"

	gomodule "golang.org/x/mod/module"

	"github.com/heraldhq/herald/sdk/confine"
)

// skeleton is the out-of-tree plugin that `herald plugin new` writes.
//
//go:embed skeleton/*.tmpl
var skeleton embed.FS

// pluginName is what a plugin name, its channel prefix and its method
// namespace may be.
var pluginName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)

func runPlugin(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "herald plugin: want a subcommand: new")
		newPluginFlags(stdout, stderr).fs.Usage()
		return errUsage
	}
	if args[0] == "-h" || args[0] == "-help" || args[0] == "--help" {
		return parse(newPluginFlags(stdout, stderr).fs, args[:1]) // the help of plugin new
	}
	if args[0] != "new" {
		fmt.Fprintf(stderr, "herald plugin: unknown subcommand %q (want: new)\n", args[0])
		return errUsage
	}
	return runPluginNew(args[1:], stdout, stderr)
}

// pluginFlags are the flags of `herald plugin new`.
type pluginFlags struct {
	fs                  *flag.FlagSet
	dir, module, herald *string
	tidy                *bool
}

func newPluginFlags(stdout, stderr io.Writer) pluginFlags {
	fs := newFlags("plugin", "new NAME [-dir DIR] [-module PATH] [-herald DIR] [-tidy=false]", stdout, stderr)
	return pluginFlags{
		fs:     fs,
		dir:    fs.String("dir", "", "directory to write (default: ./NAME), outside Herald's checkout; it must not exist or be empty"),
		module: fs.String("module", "", "the plugin's Go module path (default: example.com/NAME)"),
		herald: fs.String("herald", "", "a checkout of Herald's repository, for go.mod's replace directive (default: the checkout around the current directory)"),
		// No backquotes here: package flag would show the quoted words
		// as the flag's argument.
		tidy: fs.Bool("tidy", true, "run go mod tidy in the new module (needs go on PATH)"),
	}
}

// checkPluginName refuses a name herald validate would refuse for the
// plugin block the skeleton's README shows (the name is also its channel
// prefix and its method namespace).
func checkPluginName(name string) error {
	switch {
	case !pluginName.MatchString(name):
		return fmt.Errorf("plugin name %q: use 1 to 32 lower-case letters, digits and _, starting with a letter (it is also the channel prefix and the method namespace)", name)
	case name == "rpc":
		return fmt.Errorf(`plugin name "rpc" is reserved: JSON-RPC 2.0 keeps methods named rpc.* for itself; choose another name`)
	case confine.CoreChannel(name):
		return fmt.Errorf("plugin name %q is one of Herald's own channels, so it cannot be the plugin's channel prefix; choose another name", name)
	}
	return nil
}

func runPluginNew(args []string, stdout, stderr io.Writer) error {
	pf := newPluginFlags(stdout, stderr)
	flags, dir, module, herald, tidy := pf.fs, pf.dir, pf.module, pf.herald, pf.tidy
	// NAME as the synopsis shows it, first; flags before it are taken too,
	// as the other commands take theirs.
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if err := parse(flags, args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return err
			}
			return errUsage
		}
		args = flags.Args()
		if len(args) == 0 {
			fmt.Fprintln(stderr, "herald plugin new: NAME is required")
			flags.Usage()
			return errUsage
		}
	}
	name := args[0]
	if err := parseFlags(flags, args[1:]); err != nil {
		return err
	}
	if err := checkPluginName(name); err != nil {
		return err
	}
	if *dir == "" {
		*dir = name
	}
	if *module == "" {
		*module = "example.com/" + name
	}
	if err := gomodule.CheckPath(*module); err != nil {
		return fmt.Errorf("-module %q is not a Go module path (%v): use a path such as example.com/%s", *module, err, name)
	}
	src, err := heraldCheckout(*herald)
	if err != nil {
		return err
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	// A plugin is its own module, built against the checkout through a
	// replace directive; written inside the checkout it would be files in
	// Herald's repository (the usual first try: plugin new NAME there).
	if within(abs, src) {
		return fmt.Errorf("%s is inside the Herald checkout %s: a plugin lives outside it; give -dir, for example -dir %s (its go.mod points back at the checkout)",
			*dir, src, filepath.Join(filepath.Dir(src), name))
	}
	if err := emptyDir(*dir); err != nil {
		return err
	}
	data := map[string]string{
		"Name":       name,
		"Module":     *module,
		"HeraldDir":  src,
		"GoVersion":  goLine(src),
		"BinaryHint": filepath.Join(abs, name),
	}
	files, err := fs.Glob(skeleton, "skeleton/*.tmpl")
	if err != nil {
		return err
	}
	for _, f := range files {
		t, err := template.ParseFS(skeleton, f)
		if err != nil {
			return fmt.Errorf("template %s: %w", f, err)
		}
		var out bytes.Buffer
		if err := t.Execute(&out, data); err != nil {
			return fmt.Errorf("template %s: %w", f, err)
		}
		target := filepath.Join(*dir, strings.TrimSuffix(filepath.Base(f), ".tmpl"))
		if err := os.WriteFile(target, out.Bytes(), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", target, err)
		}
		fmt.Fprintf(stdout, "wrote %s\n", target)
	}
	if *tidy {
		cmd := exec.Command("go", "mod", "tidy")
		cmd.Dir = *dir
		cmd.Stdout, cmd.Stderr = stderr, stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go mod tidy in %s: %w (the files are written; fix and run it again)", *dir, err)
		}
		fmt.Fprintf(stdout, "ran go mod tidy in %s\n", *dir)
	}
	tidyStep := ""
	if !*tidy { // go.sum is not written yet: go test would stop on missing entries
		tidyStep = "go mod tidy && "
	}
	fmt.Fprintf(stdout, "\nNext:\n  cd %s && %sgo test ./... && go build -o %s .\nthen load it with a plugin %q block (see %s).\n",
		*dir, tidyStep, name, name, filepath.Join(*dir, "README.md"))
	return nil
}

// within reports whether path is dir or below it.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// heraldCheckout finds the Herald repository the plugin builds against:
// the given directory, else the one around the current directory.
func heraldCheckout(given string) (string, error) {
	start := given
	if start == "" {
		wd, err := os.Getwd()
		if err != nil {
			return "", err
		}
		start = wd
	}
	abs, err := filepath.Abs(start)
	if err != nil {
		return "", err
	}
	for d := abs; ; d = filepath.Dir(d) {
		if isHeraldModule(filepath.Join(d, "go.mod")) {
			return d, nil
		}
		if given != "" || filepath.Dir(d) == d {
			break
		}
	}
	if given != "" {
		return "", fmt.Errorf("-herald %s: not a checkout of Herald (no go.mod of module github.com/heraldhq/herald there)", given)
	}
	return "", errors.New("not inside a checkout of Herald: give -herald DIR, the checkout the plugin's go.mod should point at (Herald's module is not published)")
}

func isHeraldModule(goMod string) bool {
	b, err := os.ReadFile(goMod)
	return err == nil && regexp.MustCompile(`(?m)^module github\.com/heraldhq/herald\s*$`).Match(b)
}

// goLine is the go directive of Herald's go.mod, so the plugin asks for no
// newer toolchain than Herald does.
func goLine(src string) string {
	b, err := os.ReadFile(filepath.Join(src, "go.mod"))
	if err == nil {
		if m := regexp.MustCompile(`(?m)^go (\S+)`).FindSubmatch(b); m != nil {
			return string(m[1])
		}
	}
	return strings.TrimPrefix(runtime.Version(), "go")
}

func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		return err
	}
	if len(entries) > 0 {
		return fmt.Errorf("%s is not empty: choose another -dir", dir)
	}
	return nil
}

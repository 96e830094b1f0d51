package js_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/heraldtest"
)

// The client installs as a package: `npm pack` makes a tarball that an
// application installs and imports by its name, offline.
func TestPackageInstallsFromItsTarball(t *testing.T) {
	node, flags := nodeArgs(t)
	npm, err := exec.LookPath("npm")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("npm is not installed (.ci/run installs it)")
		}
		t.Skip("npm is not installed: skipping the package test")
	}
	run := func(dir string, name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "npm_config_cache="+filepath.Join(t.TempDir(), "npm-cache"), "npm_config_audit=false", "npm_config_fund=false", "npm_config_update_notifier=false")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return string(out)
	}
	packDir := t.TempDir()
	out := run(filepath.Join(heraldtest.RepoRoot(), "sdk", "js"), npm, "pack", "--pack-destination", packDir)
	lines := strings.Fields(strings.TrimSpace(out))
	tarball := filepath.Join(packDir, lines[len(lines)-1])
	if _, err := os.Stat(tarball); err != nil {
		t.Fatalf("npm pack did not write %s: %v\n%s", tarball, err, out)
	}

	app := t.TempDir()
	if err := os.WriteFile(filepath.Join(app, "package.json"), []byte(`{"name":"app","version":"1.0.0","type":"module","private":true}`), 0o600); err != nil {
		t.Fatal(err)
	}
	run(app, npm, "install", "--offline", "--no-save", tarball)
	for _, f := range []string{"src/herald.js", "src/herald.d.ts", "README.md", "package.json"} {
		if _, err := os.Stat(filepath.Join(app, "node_modules", "@heraldhq", "client", f)); err != nil {
			t.Errorf("the installed package lacks %s: %v", f, err)
		}
	}
	if err := os.WriteFile(filepath.Join(app, "main.mjs"), []byte(
		"import { Herald, Codes } from '@heraldhq/client';\n"+
			"if (typeof Herald !== 'function' || Codes.pluginUnavailable !== -32050) throw new Error('bad exports');\n"+
			"console.log('ok');\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(run(app, node, append(flags, "main.mjs")...)); got != "ok" {
		t.Fatalf("node main.mjs printed %q", got)
	}
}

// Package systemd_test checks the example unit with systemd's own verifier.
package systemd_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/heraldtest"
)

func TestMain(m *testing.M) { heraldtest.Main(m) }

// herald.service passes systemd-analyze verify (with the binary path
// pointing at a real herald), where systemd is installed.
func TestUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed: skipping the check of examples/systemd/herald.service")
	}
	unit, err := os.ReadFile("herald.service")
	if err != nil {
		t.Fatal(err)
	}
	bin := heraldtest.Binary(t, "cmd/herald")
	text := strings.ReplaceAll(string(unit), "/usr/local/bin/herald", bin)
	dir := t.TempDir()
	path := filepath.Join(dir, "herald.service")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || strings.Contains(string(out), "herald.service") {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// The install recipe leaves a service that can read its config and write
// its State: the config file is readable by the unit's group, which is a
// real group when the file is installed (not a DynamicUser's), and the
// recipe moves state.dir to the StateDirectory, the one writable place
// under ProtectSystem=strict (the default, next to the config, is /etc).
func TestInstallRecipeFitsTheUnit(t *testing.T) {
	unit, err := os.ReadFile("herald.service")
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{}
	var install []string
	var stateDir string
	for _, line := range strings.Split(string(unit), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			keys[k] = v
		}
		if strings.HasPrefix(line, "#") && strings.Contains(line, " /etc/herald/herald.hcl") {
			_, cmd, _ := strings.Cut(line, "&& ")
			install = strings.Fields(cmd)
		}
		if _, dir, ok := strings.Cut(line, `state { dir = "`); ok {
			stateDir, _, _ = strings.Cut(dir, `"`)
		}
	}
	if keys["DynamicUser"] == "yes" {
		t.Error("DynamicUser=yes: its group does not exist when the config file is installed, so the file cannot be made readable to it")
	}
	flag := func(name string) string {
		for i, f := range install {
			if f == name && i+1 < len(install) {
				return install[i+1]
			}
		}
		return ""
	}
	if install == nil || flag("-g") != keys["Group"] {
		t.Errorf("the config file is not installed with group %q (Group=): %q", keys["Group"], install)
	}
	if mode := flag("-m"); len(mode) != 4 || !strings.ContainsAny(mode[2:3], "4567") {
		t.Errorf("the config file's mode %q does not let its group read it", mode)
	}
	want := "/var/lib/" + keys["StateDirectory"] + "/"
	if keys["StateDirectory"] == "" || !strings.HasPrefix(stateDir, want) {
		t.Errorf("the recipe's state.dir %q is not under the StateDirectory %s", stateDir, want)
	}
}

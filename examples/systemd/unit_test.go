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

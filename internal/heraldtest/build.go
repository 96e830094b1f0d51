package heraldtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

var (
	buildMu    sync.Mutex
	buildCache = map[string]string{}
	buildDir   string
)

// RepoRoot is the module's root directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Binary builds the main package at pkg (a path relative to the repo root,
// e.g. "cmd/herald") once per test process and returns the binary's path.
func Binary(t testing.TB, pkg string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := buildCache[pkg]; ok {
		return p
	}
	if buildDir == "" {
		d, err := os.MkdirTemp("", "heraldtest-bin-")
		if err != nil {
			t.Fatalf("heraldtest: temp dir: %v", err)
		}
		buildDir = d
	}
	out := filepath.Join(buildDir, strings.ReplaceAll(pkg, "/", "_"))
	args := []string{"build", "-o", out}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "./"+pkg)
	cmd := exec.Command("go", args...)
	cmd.Dir = RepoRoot()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("heraldtest: go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	buildCache[pkg] = out
	return out
}

// Main runs a package's tests and removes the binaries built for them. Call
// it from TestMain: func TestMain(m *testing.M) { heraldtest.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	buildMu.Lock()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	buildMu.Unlock()
	os.Exit(code)
}

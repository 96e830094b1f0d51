package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action     string
	Package    string
	ImportPath string // build-output, build-fail
	Test       string
	Output     string
}

type skip struct{ pkg, test, reason string }

// errFailed is report's error when the stream showed a failure.
var errFailed = errors.New("tests failed")

// report filters a `go test -json` stream from r onto w.
func report(r io.Reader, w io.Writer) error {
	tests := map[[2]string][]string{} // package, test -> output lines
	pkgs := map[string][]string{}     // package-level output lines
	var skips []skip
	failed := false
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil || e.Action == "" {
			// Not an event (go vet's or the build's own words): pass it on.
			fmt.Fprintf(w, "%s\n", line)
			continue
		}
		switch {
		case e.Action == "build-output":
			fmt.Fprint(w, e.Output)
		case e.Action == "build-fail":
			failed = true
		case e.Test != "":
			key := [2]string{e.Package, e.Test}
			switch e.Action {
			case "output":
				tests[key] = append(tests[key], e.Output)
			case "fail":
				failed = true
				for _, o := range tests[key] {
					fmt.Fprint(w, o)
				}
				delete(tests, key)
			case "skip":
				skips = append(skips, skip{e.Package, e.Test, skipReason(tests[key])})
				delete(tests, key)
			case "pass":
				delete(tests, key)
			}
		default:
			switch e.Action {
			case "output":
				pkgs[e.Package] = append(pkgs[e.Package], e.Output)
			case "fail":
				failed = true
				for _, o := range pkgs[e.Package] {
					fmt.Fprint(w, o)
				}
				delete(pkgs, e.Package)
			case "pass", "skip":
				for _, o := range pkgs[e.Package] {
					// The summary line ("ok  pkg 1.2s", "?  pkg [no test
					// files]"); a passing package's PASS and logs stay quiet.
					if strings.HasPrefix(o, "ok ") || strings.HasPrefix(o, "?") {
						fmt.Fprint(w, o)
					}
				}
				delete(pkgs, e.Package)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read go test -json: %w", err)
	}
	printSkips(w, skips)
	if failed {
		return errFailed
	}
	return nil
}

// skipReason is what the test said before and in its --- SKIP line.
func skipReason(out []string) string {
	var reason []string
	for _, o := range out {
		o = strings.TrimSpace(o)
		if o == "" || strings.HasPrefix(o, "=== ") || strings.HasPrefix(o, "--- SKIP") {
			continue
		}
		reason = append(reason, o)
	}
	if len(reason) == 0 {
		return "(no reason given)"
	}
	return strings.Join(reason, " ")
}

func printSkips(w io.Writer, skips []skip) {
	if len(skips) == 0 {
		return
	}
	sort.Slice(skips, func(i, j int) bool {
		if skips[i].pkg != skips[j].pkg {
			return skips[i].pkg < skips[j].pkg
		}
		return skips[i].test < skips[j].test
	})
	fmt.Fprintf(w, "\n*** %d tests were SKIPPED, so this run did not test what they cover:\n", len(skips))
	for _, s := range skips {
		fmt.Fprintf(w, "SKIP %s %s\n     %s\n", s.pkg, s.test, s.reason)
	}
	fmt.Fprintln(w, "*** CI (CI=true, .ci/run) installs node and chromium and fails instead of skipping.")
}

// Command testreport reads `go test -json` on stdin and prints what a plain
// `go test` prints (each package's ok/FAIL line, the whole output of every
// failing test and package, build errors), then a summary of every skipped
// test with its reason, so that a run on a machine without node or Chromium
// says loudly what it did not test. It exits 1 if any test or package
// failed; the Makefile also keeps go test's own exit status (pipefail).
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := report(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "testreport:", err)
		os.Exit(1)
	}
}

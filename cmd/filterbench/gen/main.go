// Command gen writes the standard filter-benchmark workloads:
// filters-<N>.json for each N and docs.json, into a directory.
//
//	gen -out DIR [-filters 1000,10000,100000] [-docs 2000] [-seed 1]
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/heraldhq/herald/plugins/documents/filter/workload"
)

func main() {
	out := flag.String("out", ".", "output directory")
	counts := flag.String("filters", "1000,10000,100000", "comma-separated filter counts")
	docs := flag.Int("docs", 2000, "number of documents")
	seed := flag.Uint64("seed", 1, "random seed")
	flag.Parse()
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fail(err)
	}
	for _, c := range strings.Split(*counts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil {
			fail(err)
		}
		write(filepath.Join(*out, fmt.Sprintf("filters-%d.json", n)), workload.Filters(n, *seed))
	}
	write(filepath.Join(*out, "docs.json"), workload.Documents(*docs, *seed))
}

func write(path string, items []json.RawMessage) {
	var b bytes.Buffer
	b.WriteString("[\n")
	for i, it := range items {
		if i > 0 {
			b.WriteString(",\n")
		}
		b.Write(it)
	}
	b.WriteString("\n]\n")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "gen:", err)
	os.Exit(1)
}

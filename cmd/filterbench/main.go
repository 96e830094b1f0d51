// Command filterbench measures the realtime filter engine on given files
// and prints one JSON line; cmd/filterbench/koncorde does the same with
// Koncorde, so any two runs on the same files can be compared.
//
//	filterbench -filters F.json -docs D.json [-seconds 5]
//	filterbench -table results.jsonl   # side-by-side table of such lines
//
// F.json is a JSON array of filters, D.json a JSON array of documents
// (one index and collection). Every filter is registered, then documents
// are tested round-robin on one goroutine for the given time.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald/plugins/documents/filter"
)

type result struct {
	Engine        string  `json:"engine"`
	Filters       int     `json:"filters"`
	RegisterMS    float64 `json:"register_ms"`
	RegisterCPUMS float64 `json:"register_cpu_ms,omitempty"` // process CPU time (GC included), herald only
	RSSMiB        float64 `json:"rss_mib"`
	DocsPerS      float64 `json:"docs_per_s"`
	MatchesPerDoc float64 `json:"matches_per_doc"`
	TotalMatches  int     `json:"total_matches"`
	Docs          int     `json:"docs"`
}

func main() {
	filtersPath := flag.String("filters", "", "JSON array of filters")
	docsPath := flag.String("docs", "", "JSON array of documents")
	seconds := flag.Float64("seconds", 5, "how long to test documents")
	table := flag.String("table", "", "print a comparison table of the JSON lines in this file")
	flag.Parse()
	if *table != "" {
		if err := printTable(*table); err != nil {
			fmt.Fprintln(os.Stderr, "filterbench:", err)
			os.Exit(1)
		}
		return
	}
	if *filtersPath == "" || *docsPath == "" {
		flag.Usage()
		os.Exit(2)
	}
	r, err := run(*filtersPath, *docsPath, time.Duration(*seconds*float64(time.Second)))
	if err != nil {
		fmt.Fprintln(os.Stderr, "filterbench:", err)
		os.Exit(1)
	}
	out, _ := json.Marshal(r)
	fmt.Println(string(out))
}

func readArray(path string) ([]json.RawMessage, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var arr []json.RawMessage
	if err := json.Unmarshal(b, &arr); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return arr, nil
}

func run(filtersPath, docsPath string, d time.Duration) (*result, error) {
	runtime.GOMAXPROCS(1) // single-threaded, like node
	filters, err := readArray(filtersPath)
	if err != nil {
		return nil, err
	}
	rawDocs, err := readArray(docsPath)
	if err != nil {
		return nil, err
	}
	if len(rawDocs) == 0 {
		return nil, fmt.Errorf("%s: no documents", docsPath)
	}
	// Parsed up front: Koncorde is handed parsed objects too.
	docs := make([]*filter.Document, len(rawDocs))
	for i, r := range rawDocs {
		if docs[i], err = filter.ParseDocument(r); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
	}

	batch := make([][]byte, len(filters))
	for i, f := range filters {
		batch[i] = f
	}
	e := filter.New(filter.Options{})
	cpu0 := cpuTime()
	start := time.Now()
	ids, errs := e.RegisterMany(batch) // GOMAXPROCS is 1: no parallelism
	reg := time.Since(start)
	regCPU := cpuTime() - cpu0
	registered := 0
	// Filters that normalize alike share an ID; matches are counted per
	// registered filter so that engines with different ID schemes agree.
	perID := map[string]int{}
	for i, id := range ids {
		if errs == nil || errs[i] == nil {
			registered++
			perID[id]++
		}
	}
	runtime.GC()
	debug.FreeOSMemory()
	rss := rssMiB()

	total := 0
	for _, doc := range docs {
		for _, id := range e.MatchDocument(doc) {
			total += perID[id]
		}
	}
	n := 0
	start = time.Now()
	deadline := start.Add(d)
	for {
		for i := 0; i < 64; i++ {
			e.MatchDocument(docs[n%len(docs)])
			n++
		}
		if time.Now().After(deadline) {
			break
		}
	}
	elapsed := time.Since(start).Seconds()
	return &result{
		Engine:        "herald",
		Filters:       registered,
		RegisterMS:    float64(reg.Milliseconds()),
		RegisterCPUMS: float64(regCPU.Milliseconds()),
		RSSMiB:        rss,
		DocsPerS:      float64(int(float64(n) / elapsed)),
		MatchesPerDoc: math.Round(float64(total)/float64(len(docs))*1000) / 1000,
		TotalMatches:  total,
		Docs:          len(docs),
	}, nil
}

// rssMiB reads the resident set size from /proc (Linux); 0 elsewhere.
func rssMiB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return float64(int(kb/1024*10)) / 10
		}
	}
	return 0
}

// printTable pairs herald and koncorde lines by filter count.
func printTable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	type pair struct{ h, k *result }
	var order []int
	rows := map[int]*pair{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var r result
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		key := r.Filters
		p := rows[key]
		if p == nil {
			p = &pair{}
			rows[key] = p
			order = append(order, key)
		}
		if r.Engine == "koncorde" {
			p.k = &r
		} else {
			p.h = &r
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	fmt.Printf("| filters | herald docs/s | koncorde docs/s | ratio | matches/doc (herald / koncorde) | register ms (herald [CPU] / koncorde) | RSS MiB (herald / koncorde) |\n")
	fmt.Printf("|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, n := range order {
		p := rows[n]
		if p.h == nil || p.k == nil {
			continue
		}
		same := "equal"
		if p.h.TotalMatches != p.k.TotalMatches {
			same = "DIFFER"
		}
		fmt.Printf("| %d | %.0f | %.0f | %.1f× | %.3f / %.3f (%s) | %.0f [%.0f] / %.0f | %.0f / %.0f |\n",
			n, p.h.DocsPerS, p.k.DocsPerS, p.h.DocsPerS/p.k.DocsPerS,
			p.h.MatchesPerDoc, p.k.MatchesPerDoc, same, p.h.RegisterMS, p.h.RegisterCPUMS, p.k.RegisterMS, p.h.RSSMiB, p.k.RSSMiB)
	}
	return nil
}

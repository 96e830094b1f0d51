package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
)

// recorderFigure is one line of BenchmarkEmit's output: the same emit shape
// with a recording Core in place of herald's.
type recorderFigure struct {
	perS, hostCPU, pluginCPU, perBatch float64
}

var benchName = regexp.MustCompile(`^BenchmarkEmit/workers=(\d+)/per=(\d+)`)

// readRecorder parses go test -bench output; the key is "workers/per". A
// shape measured more than once keeps its last figure.
func readRecorder(path string) (map[string]recorderFigure, error) {
	out := map[string]recorderFigure{}
	if path == "" {
		return out, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("-recorder: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := benchName.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		// After the name and the iterations come value-unit pairs.
		fields := strings.Fields(sc.Text())
		var r recorderFigure
		for i := 2; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				continue
			}
			switch fields[i+1] {
			case "notifications/s":
				r.perS = v
			case "host-cpu-µs/n":
				r.hostCPU = v
			case "plugin-cpu-µs/n":
				r.pluginCPU = v
			case "n/batch":
				r.perBatch = v
			}
		}
		out[m[1]+"/"+m[2]] = r
	}
	return out, sc.Err()
}

func printTable(w io.Writer, path, recorderPath string) error {
	rec, err := readRecorder(recorderPath)
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("-table: %w", err)
	}
	defer f.Close()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tclients/channels\tworkers×per\trate\tdelivered\tnotif/s\trecorder/s\tratio\tp50 ms\tp99 ms\therald µs/n\tplugin µs/n\trecorder host+plugin µs/n\tCPU ratio\tn/batch (recorder)\tbench µs/n\twarm-up\twarm-up herald+plugin µs/n\tload\t")
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var s summary
		if json.Unmarshal(sc.Bytes(), &s) != nil || s.Name == "" {
			continue
		}
		rate := "max"
		if s.Rate > 0 {
			rate = fmt.Sprintf("%.0f/s", s.Rate)
		}
		recS, ratio, recCPU, cpuRatio := "-", "-", "-", "-"
		perBatch := "-"
		if s.PerBatch > 0 {
			perBatch = fmt.Sprintf("%.1f", s.PerBatch)
		}
		if r, ok := rec[fmt.Sprintf("%d/%d", s.Workers, s.Per)]; ok && r.perS > 0 {
			recS = fmt.Sprintf("%.0f", r.perS)
			recCPU = fmt.Sprintf("%.2f+%.2f", r.hostCPU, r.pluginCPU)
			// The batch size decides the per-notification share of each
			// batch's cost on both sides: like with like when they are near.
			perBatch += fmt.Sprintf(" (%.1f)", r.perBatch)
			// Like with like only: as fast as possible (a paced run's rate is
			// its own choice), one client per channel (with more, each
			// notification is several deliveries).
			if s.Rate == 0 && s.Clients == s.Channels {
				ratio = fmt.Sprintf("%.2f", s.DeliveredPerS/r.perS)
				// The same comparison by CPU, which holds up better than
				// wall clock on a loaded machine: where CPU is the limit,
				// the rates would stand in this ratio.
				if e2e := s.HeraldCPUus + s.PluginCPUus; e2e > 0 {
					cpuRatio = fmt.Sprintf("%.2f", (r.hostCPU+r.pluginCPU)/e2e)
				}
			}
		}
		// What the run's shape cost a fresh herald, before the measured run
		// (-warmup): its history filling and its heap growing.
		warm, warmCPU := "-", "-"
		if s.Warmup > 0 {
			warm, warmCPU = strconv.Itoa(s.Warmup), fmt.Sprintf("%.2f+%.2f", s.WarmupHeraldCPUus, s.WarmupPluginCPUus)
		}
		fmt.Fprintf(tw, "%s\t%d/%d\t%d×%d\t%s\t%d/%d\t%.0f\t%s\t%s\t%.2f\t%.2f\t%.2f\t%.2f\t%s\t%s\t%s\t%.2f\t%s\t%s\t%s\t\n",
			s.Name, s.Clients, s.Channels, s.Workers, s.Per, rate, s.Delivered, s.Expected, s.DeliveredPerS,
			recS, ratio, s.P50ms, s.P99ms, s.HeraldCPUus, s.PluginCPUus, recCPU, cpuRatio, perBatch, s.BenchCPUus, warm, warmCPU, s.Load1)
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return tw.Flush()
}

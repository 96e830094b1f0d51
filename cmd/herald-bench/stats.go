package main

import (
	"fmt"
	"math/bits"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// histogram counts durations in microseconds with 16 sub-buckets per power
// of two (about 6 % precision), lock-free; the maximum is exact.
type histogram struct {
	counts [1024]atomic.Uint64
	max    atomic.Int64
}

func bucketOf(us uint64) int {
	if us < 16 {
		return int(us)
	}
	shift := bits.Len64(us) - 5
	return 16*(shift+1) + int(us>>shift) - 16
}

// bucketHigh is the largest value that falls in bucket i.
func bucketHigh(i int) uint64 {
	if i < 16 {
		return uint64(i)
	}
	shift := i/16 - 1
	top := uint64(i%16 + 16)
	return (top+1)<<shift - 1
}

func (h *histogram) record(ns int64) {
	if ns < 0 {
		ns = 0
	}
	h.counts[bucketOf(uint64(ns/1000))].Add(1)
	for {
		m := h.max.Load()
		if ns <= m || h.max.CompareAndSwap(m, ns) {
			return
		}
	}
}

// merged adds up sharded histograms.
func merged(hs []histogram) (counts [1024]uint64, maxNs int64) {
	for i := range hs {
		for b := range hs[i].counts {
			counts[b] += hs[i].counts[b].Load()
		}
		maxNs = max(maxNs, hs[i].max.Load())
	}
	return counts, maxNs
}

// quantileMs is the upper bound of the bucket holding quantile q, in ms.
func quantileMs(counts *[1024]uint64, q float64) float64 {
	var total uint64
	for _, c := range counts {
		total += c
	}
	if total == 0 {
		return 0
	}
	rank := uint64(q*float64(total) + 0.5)
	rank = max(rank, 1)
	var seen uint64
	for i, c := range counts {
		seen += c
		if seen >= rank {
			return float64(bucketHigh(i)) / 1000
		}
	}
	return 0
}

// procStat is a process's resident memory and CPU time, from /proc.
type procStat struct {
	RSSBytes int64
	CPU      time.Duration
}

// clockTick is USER_HZ, 100 on every Linux platform Go supports.
const clockTick = 100

func readProc(pid int) (procStat, error) {
	var ps procStat
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ps, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			ps.RSSBytes = kb << 10
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ps, err
	}
	// The command name may hold spaces; fields are counted after its ')'.
	s := string(stat)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return ps, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	ps.CPU = time.Duration(utime+stime) * time.Second / clockTick
	return ps, nil
}

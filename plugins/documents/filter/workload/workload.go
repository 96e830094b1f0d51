// Package workload generates the standard benchmark workloads of the
// filter engine: a mix of realistic subscription filters and documents
// with nested fields and arrays, as JSON, seeded. The Go benchmarks and
// cmd/filterbench (which also feeds Koncorde) use the same generator, so
// every figure is measured on the same kind of data.
package workload

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
)

// Mix, in percent of the filters.
const (
	pctEquals   = 25
	pctRange    = 15
	pctIn       = 12
	pctAndEqRng = 20
	pctBoolNot  = 12
	pctExists   = 12
	// the rest (4%) are regexps
)

type gen struct{ r *rand.Rand }

// Filters returns n filters as JSON values.
func Filters(n int, seed uint64) []json.RawMessage {
	g := gen{rand.New(rand.NewPCG(seed, 1))}
	out := make([]json.RawMessage, n)
	for i := range out {
		b, err := json.Marshal(g.filter())
		if err != nil {
			panic(err)
		}
		out[i] = b
	}
	return out
}

// Documents returns n documents as JSON values.
func Documents(n int, seed uint64) []json.RawMessage {
	g := gen{rand.New(rand.NewPCG(seed, 2))}
	out := make([]json.RawMessage, n)
	for i := range out {
		b, err := json.Marshal(g.doc())
		if err != nil {
			panic(err)
		}
		out[i] = b
	}
	return out
}

type m = map[string]any

func (g gen) category() string { return fmt.Sprintf("cat%d", g.r.IntN(300)) }
func (g gen) status() string   { return fmt.Sprintf("st%d", g.r.IntN(12)) }
func (g gen) country() string  { return fmt.Sprintf("c%d", g.r.IntN(60)) }
func (g gen) tag() string      { return fmt.Sprintf("t%d", g.r.IntN(800)) }
func (g gen) user() string     { return fmt.Sprintf("u%d", g.r.IntN(5000)) }

var syllables = []string{"ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "ba"}

func (g gen) name() string {
	s := ""
	for i := 0; i < 3+g.r.IntN(3); i++ {
		s += syllables[g.r.IntN(len(syllables))]
	}
	return s
}

func (g gen) filter() m {
	p := g.r.IntN(100)
	switch {
	case p < pctEquals:
		if g.r.IntN(2) == 0 {
			return m{"equals": m{"category": g.category()}}
		}
		return m{"equals": m{"user.id": g.user()}}
	case p < pctEquals+pctRange:
		lo := float64(g.r.IntN(1000))
		w := float64(5 + g.r.IntN(40))
		if g.r.IntN(2) == 0 {
			return m{"range": m{"price": m{"gte": lo, "lt": lo + w}}}
		}
		return m{"range": m{"meta.score": m{"gt": lo / 10, "lte": (lo + w) / 10}}}
	case p < pctEquals+pctRange+pctIn:
		vals := []any{}
		for i := 0; i < 2+g.r.IntN(4); i++ {
			vals = append(vals, g.country())
		}
		return m{"in": m{"country": vals}}
	case p < pctEquals+pctRange+pctIn+pctAndEqRng:
		lo := float64(18 + g.r.IntN(60))
		return m{"and": []any{
			m{"equals": m{"status": g.status()}},
			m{"equals": m{"category": g.category()}},
			m{"range": m{"age": m{"gte": lo, "lte": lo + float64(1+g.r.IntN(20))}}},
		}}
	case p < pctEquals+pctRange+pctIn+pctAndEqRng+pctBoolNot:
		return m{"bool": m{
			"must":     []any{m{"equals": m{"category": g.category()}}},
			"must_not": []any{m{"equals": m{"status": g.status()}}, m{"exists": "banned"}},
		}}
	case p < pctEquals+pctRange+pctIn+pctAndEqRng+pctBoolNot+pctExists:
		if g.r.IntN(4) == 0 {
			return m{"exists": fmt.Sprintf("extra.f%d", g.r.IntN(200))}
		}
		return m{"exists": fmt.Sprintf("tags[%q]", g.tag())}
	default:
		pre := syllables[g.r.IntN(len(syllables))] + syllables[g.r.IntN(len(syllables))]
		if g.r.IntN(4) == 0 {
			return m{"regexp": m{"user.name": m{"value": pre + "$", "flags": "i"}}}
		}
		return m{"regexp": m{"user.name": "^" + pre}}
	}
}

func (g gen) doc() m {
	tags := []any{}
	for i := 0; i < 2+g.r.IntN(5); i++ {
		tags = append(tags, g.tag())
	}
	d := m{
		"user":     m{"id": g.user(), "name": g.name(), "address": m{"city": g.name(), "zip": float64(g.r.IntN(99999))}},
		"category": g.category(),
		"status":   g.status(),
		"country":  g.country(),
		"price":    float64(g.r.IntN(100000)) / 100,
		"age":      float64(18 + g.r.IntN(70)),
		"tags":     tags,
		"meta":     m{"score": float64(g.r.IntN(1000)) / 10, "source": "bench"},
	}
	if g.r.IntN(3) == 0 {
		extra := m{}
		for i := 0; i < 1+g.r.IntN(3); i++ {
			extra[fmt.Sprintf("f%d", g.r.IntN(200))] = true
		}
		d["extra"] = extra
	}
	if g.r.IntN(20) == 0 {
		d["banned"] = true
	}
	return d
}

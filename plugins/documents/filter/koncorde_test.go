package filter

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

// The differential test: the same generated filters and documents go
// through the real Koncorde (npm, run by node) and through this package;
// every verdict must agree. Seeded: HERALD_DIFF_SEED reproduces a run.

var (
	koncordeOnce sync.Once
	koncordeDir  string
	koncordeErr  error
)

// koncordeCache installs koncorde@4 once into a cache directory outside
// the repository and returns the directory holding node_modules.
func koncordeCache(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is required for the Koncorde differential test (CI=true): %v", tool, err)
			}
			t.Skipf("%s not found: skipping the Koncorde differential test", tool)
		}
	}
	koncordeOnce.Do(func() {
		dir := os.Getenv("HERALD_CACHE")
		if dir == "" {
			base, err := os.UserCacheDir()
			if err != nil {
				base = os.TempDir()
			}
			dir = filepath.Join(base, "herald")
		}
		dir = filepath.Join(dir, "koncorde-4.x")
		// Usable only if it loads: its native modules (re2) may have been
		// left half-built by an interrupted install.
		loader, err := filepath.Abs("testdata/koncorde_load.js")
		if err != nil {
			koncordeErr = err
			return
		}
		probe := exec.Command("node", loader)
		probe.Env = append(os.Environ(), "NODE_PATH="+filepath.Join(dir, "node_modules"))
		if probe.Run() == nil {
			koncordeDir = dir
			return
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			koncordeErr = err
			return
		}
		fmt.Fprintf(os.Stderr, "installing koncorde@4 into %s (once)\n", dir)
		// --ignore-scripts skips building re2 from source (about 25 minutes
		// on 2 cores); testdata/koncorde_load.js then runs Koncorde with its
		// js regexp engine. HERALD_KONCORDE_RE2=native builds it instead.
		args := []string{"install", "--prefix", dir, "--no-audit", "--no-fund", "--no-save"}
		if os.Getenv("HERALD_KONCORDE_RE2") != "native" {
			args = append(args, "--ignore-scripts")
		}
		cmd := exec.Command("npm", append(args, "koncorde@~4.7.0")...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			koncordeErr = fmt.Errorf("npm install koncorde@4: %v\n%s", err, out)
			return
		}
		if os.Getenv("HERALD_KONCORDE_RE2") != "native" {
			// Koncorde's other native modules are needed and build in
			// well under a minute.
			cmd = exec.Command("npm", "rebuild", "--prefix", dir, "--no-audit", "--no-fund", "kuzzle-espresso-logic-minimizer", "boost-geospatial-index")
			if out, err := cmd.CombinedOutput(); err != nil {
				koncordeErr = fmt.Errorf("npm rebuild Koncorde's native modules: %v\n%s", err, out)
				return
			}
		}
		koncordeDir = dir
	})
	if koncordeErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(koncordeErr)
		}
		t.Skipf("skipping the Koncorde differential test: %v", koncordeErr)
	}
	return koncordeDir
}

type koncordeResult struct {
	Errors  []*string `json:"errors"`
	Matches [][]int   `json:"matches"`
}

func runKoncorde(t *testing.T, filters, docs []any) koncordeResult {
	t.Helper()
	dir := koncordeCache(t)
	script, err := filepath.Abs("testdata/koncorde_verdicts.js")
	if err != nil {
		t.Fatal(err)
	}
	in, err := json.Marshal(map[string]any{"filters": filters, "docs": docs})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", script)
	cmd.Env = append(os.Environ(), "NODE_PATH="+filepath.Join(dir, "node_modules"))
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, stderr.String())
	}
	var res koncordeResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("koncorde output: %v", err)
	}
	return res
}

func TestKoncordeDifferential(t *testing.T) {
	seed := uint64(20240611)
	if s := os.Getenv("HERALD_DIFF_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	rounds, nFilters, nDocs := diffRounds, 600, 300
	for r := 0; r < rounds; r++ {
		g := newGen(seed + uint64(r))
		filters := make([]any, nFilters)
		for i := range filters {
			filters[i] = g.filter(0)
		}
		docs := make([]any, nDocs)
		for i := range docs {
			docs[i] = g.doc()
		}
		want := runKoncorde(t, filters, docs)
		e := New(Options{})
		idx := map[string][]int{}
		errs := 0
		for i, f := range filters {
			raw, _ := json.Marshal(f)
			id, err := e.Register(raw)
			kerr := want.Errors[i]
			switch {
			case err != nil && kerr == nil:
				t.Errorf("seed %d filter %d: Herald rejects, Koncorde accepts: %v\n%s", seed+uint64(r), i, err, raw)
			case err == nil && kerr != nil:
				t.Errorf("seed %d filter %d: Herald accepts, Koncorde rejects (%s)\n%s", seed+uint64(r), i, *kerr, raw)
			}
			if err != nil {
				errs++
				continue
			}
			idx[id] = append(idx[id], i)
		}
		mismatches := 0
		for d, doc := range docs {
			if want.Matches[d] == nil {
				continue // Koncorde throws on this document
			}
			raw, _ := json.Marshal(doc)
			ids, err := e.Match(raw)
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, id := range ids {
				got = append(got, idx[id]...)
			}
			sort.Ints(got)
			if !equalInts(got, want.Matches[d]) && mismatches < 10 {
				mismatches++
				only := diffInts(got, want.Matches[d])
				var b strings.Builder
				for _, fi := range only {
					fr, _ := json.Marshal(filters[fi])
					fmt.Fprintf(&b, "  filter %d (%s): %s\n", fi, who(fi, got), fr)
				}
				t.Errorf("seed %d doc %d: verdicts differ\n doc: %s\n%s", seed+uint64(r), d, raw, b.String())
			}
		}
		t.Logf("round %d: %d filters (%d rejected), %d documents, %d filter ids", r, nFilters, errs, nDocs, len(idx))
	}
}

func who(fi int, got []int) string {
	for _, g := range got {
		if g == fi {
			return "only Herald matches"
		}
	}
	return "only Koncorde matches"
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func diffInts(a, b []int) []int {
	in := map[int]int{}
	for _, x := range a {
		in[x]++
	}
	for _, x := range b {
		in[x]--
	}
	var out []int
	for x, n := range in {
		if n != 0 {
			out = append(out, x)
		}
	}
	sort.Ints(out)
	return out
}

// gen produces filters and documents over a small shared vocabulary, so
// that filters hit documents often, with nested fields, arrays, missing
// fields, type mismatches and geo points in every format.
type gen struct{ r *rand.Rand }

func newGen(seed uint64) *gen { return &gen{rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))} }

func (g *gen) pick(xs ...any) any    { return xs[g.r.IntN(len(xs))] }
func (g *gen) chance(p float64) bool { return g.r.Float64() < p }

var genFields = []string{"a", "b", "n", "s", "c.d", "c.e", "c", "tags", "_id", "flag", "nil"}

func (g *gen) field() string { return genFields[g.r.IntN(len(genFields))] }

func (g *gen) scalar() any {
	return g.pick("x", "y", "z", "1", "true", "null", "", "xy", "Xa", 0.0, 1.0, 2.0, 1.5, -1.0, 100.0, 1e9, true, false, nil)
}

func (g *gen) str() any { return g.pick("x", "y", "z", "1", "true", "xy", "Xa", "") }

func (g *gen) num() float64 {
	return g.pick(0.0, 1.0, 2.0, 1.5, -1.0, 3.0, 10.0, 100.0, 1e9, 5.00000000001).(float64)
}

func (g *gen) geoCenter() (float64, float64) {
	return 43.6 + g.r.Float64()*0.2 - 0.1, 3.9 + g.r.Float64()*0.2 - 0.1
}

func (g *gen) geoPoint(lat, lon float64) any {
	switch g.r.IntN(9) {
	case 0:
		return map[string]any{"lat": lat, "lon": lon}
	case 1:
		return []any{lat, lon}
	case 2:
		return fmt.Sprintf("%v, %v", lat, lon)
	case 3:
		return map[string]any{"lat_lon": []any{lat, lon}}
	case 4:
		return map[string]any{"latLon": map[string]any{"lat": lat, "lon": lon}}
	case 5:
		return map[string]any{"latLon": fmt.Sprintf("%v,%v", lat, lon)}
	case 6:
		return geohash(lat, lon, 4+g.r.IntN(8))
	case 7:
		return map[string]any{"lat": fmt.Sprint(lat), "lon": fmt.Sprint(lon)}
	default:
		return []any{fmt.Sprint(lat), lon}
	}
}

func geohash(lat, lon float64, n int) string {
	minLat, maxLat, minLon, maxLon := -90.0, 90.0, -180.0, 180.0
	var b strings.Builder
	even, bit, ch := true, 0, 0
	for b.Len() < n {
		if even {
			mid := (minLon + maxLon) / 2
			if lon >= mid {
				ch |= 1 << (4 - bit)
				minLon = mid
			} else {
				maxLon = mid
			}
		} else {
			mid := (minLat + maxLat) / 2
			if lat >= mid {
				ch |= 1 << (4 - bit)
				minLat = mid
			} else {
				maxLat = mid
			}
		}
		even = !even
		if bit < 4 {
			bit++
		} else {
			b.WriteByte(geohashAlphabet[ch])
			bit, ch = 0, 0
		}
	}
	return b.String()
}

func (g *gen) distance() string {
	return g.pick("1km", "5 km", "2000m", "3mi", "1,5 km", "10000 ft", "5000 meters", "2 miles", "1h", "3000yd",
		"800m", "15km", "0.5 mi", "12000 feet", "1 kilometer", "4 km").(string)
}

func (g *gen) geoField() string { return g.pick("geo", "loc.pt", "geo").(string) }

func (g *gen) leaf() map[string]any {
	f := g.field()
	switch g.r.IntN(17) {
	case 0, 1:
		return map[string]any{"equals": map[string]any{f: g.scalar()}}
	case 2:
		vals := []any{}
		for i := 0; i < 1+g.r.IntN(3); i++ {
			vals = append(vals, g.str())
		}
		return map[string]any{"in": map[string]any{f: vals}}
	case 3:
		return map[string]any{"ids": map[string]any{"values": []any{g.str(), g.str()}}}
	case 4, 5:
		kw := g.pick("exists", "missing").(string)
		var p any = f
		switch g.r.IntN(4) {
		case 0:
			p = fmt.Sprintf("tags[%s]", g.pick(`"x"`, `"y"`, "1", "true", "null", `"1"`))
		case 1:
			p = map[string]any{"field": f}
		}
		return map[string]any{kw: p}
	case 6, 7:
		r := map[string]any{}
		lo, hi := g.num(), g.num()
		if lo > hi {
			lo, hi = hi, lo
		}
		if lo == hi {
			hi = lo + 1
		}
		switch g.r.IntN(3) {
		case 0:
			r[g.pick("gt", "gte").(string)] = lo
		case 1:
			r[g.pick("lt", "lte").(string)] = hi
		default:
			r[g.pick("gt", "gte").(string)] = lo
			r[g.pick("lt", "lte").(string)] = hi
		}
		return map[string]any{"range": map[string]any{f: r}}
	case 8:
		pat := g.pick("^x", "y$", "^1", "x|y", ".*", "^X", "[0-9]", "^$", "a", "^tr", "ul").(string)
		if g.chance(0.4) {
			spec := map[string]any{"value": pat}
			if g.chance(0.7) {
				spec["flags"] = g.pick("i", "m", "s", "im").(string) // g and y are stateful in Koncorde: see README
			}
			return map[string]any{"regexp": map[string]any{f: spec}}
		}
		return map[string]any{"regexp": map[string]any{f: pat}}
	case 9:
		lat, lon := g.geoCenter()
		d := 0.02 + g.r.Float64()*0.08
		var box any
		switch g.r.IntN(3) {
		case 0:
			box = map[string]any{"top": lat + d, "left": lon - d, "bottom": lat - d, "right": lon + d}
		case 1:
			box = map[string]any{"top": fmt.Sprint(lat + d), "left": lon - d, "bottom": fmt.Sprint(lat - d), "right": lon + d}
		default:
			key1, key2 := "topLeft", "bottomRight"
			if g.chance(0.5) {
				key1, key2 = "top_left", "bottom_right"
			}
			box = map[string]any{key1: g.geoPoint(lat+d, lon-d), key2: g.geoPoint(lat-d, lon+d)}
		}
		return map[string]any{"geoBoundingBox": map[string]any{g.geoField(): box}}
	case 10:
		lat, lon := g.geoCenter()
		return map[string]any{"geoDistance": map[string]any{g.geoField(): g.geoPoint(lat, lon), "distance": g.distance()}}
	case 11:
		lat, lon := g.geoCenter()
		from, to := g.pick("500m", "1km", "2km").(string), g.pick("3km", "5km", "9km").(string)
		return map[string]any{"geoDistanceRange": map[string]any{g.geoField(): g.geoPoint(lat, lon), "from": from, "to": to}}
	case 12:
		lat, lon := g.geoCenter()
		var pts []any
		n := 3 + g.r.IntN(4)
		for i := 0; i < n; i++ {
			a := float64(i) / float64(n) * 6.283
			rad := 0.03 + g.r.Float64()*0.07
			pts = append(pts, g.geoPoint(lat+rad*sin(a), lon+rad*cos(a)))
		}
		return map[string]any{"geoPolygon": map[string]any{g.geoField(): map[string]any{"points": pts}}}
	case 13:
		var m any
		switch g.r.IntN(4) {
		case 0:
			m = map[string]any{f: g.scalar()}
		case 1:
			m = map[string]any{"tags": []any{g.str()}}
		case 2:
			m = map[string]any{"c": map[string]any{"d": g.scalar()}}
		default:
			m = map[string]any{"c.d": g.scalar()}
		}
		return map[string]any{"match": m}
	case 14:
		return map[string]any{"select": map[string]any{"field": "tags", "index": g.pick(0.0, 1.0, -1.0),
			"query": g.pick(
				map[string]any{"equals": map[string]any{"value": g.str()}},
				map[string]any{"regexp": map[string]any{"value": "^x"}},
				map[string]any{"range": map[string]any{"value": map[string]any{"gte": 1.0}}},
			)}}
	case 15:
		if g.chance(0.2) {
			return map[string]any{"nothing": true}
		}
		return map[string]any{"equals": map[string]any{f: g.scalar()}}
	default:
		return map[string]any{"equals": map[string]any{f: g.str()}}
	}
}

func (g *gen) filter(depth int) map[string]any {
	if depth >= 3 || g.chance(0.35+0.2*float64(depth)) {
		if depth == 0 && g.chance(0.01) {
			return map[string]any{}
		}
		return g.leaf()
	}
	list := func() []any {
		var l []any
		for i := 0; i < 1+g.r.IntN(3); i++ {
			l = append(l, g.filter(depth+1))
		}
		return l
	}
	switch g.r.IntN(5) {
	case 0:
		return map[string]any{"and": list()}
	case 1:
		return map[string]any{"or": list()}
	case 2:
		return map[string]any{"not": g.filter(depth + 1)}
	default:
		b := map[string]any{}
		for _, k := range []string{"must", "must_not", "should", "should_not"} {
			if g.chance(0.45) {
				b[k] = list()
			}
		}
		if len(b) == 0 {
			b["must"] = list()
		}
		return map[string]any{"bool": b}
	}
}

func (g *gen) value() any {
	switch g.r.IntN(8) {
	case 0:
		return []any{g.scalar(), g.scalar()}
	case 1:
		return map[string]any{"d": g.scalar()}
	default:
		return g.scalar()
	}
}

func (g *gen) doc() map[string]any {
	d := map[string]any{}
	for _, f := range []string{"a", "b", "n", "s", "_id", "flag"} {
		if g.chance(0.6) {
			d[f] = g.value()
		}
	}
	if g.chance(0.5) {
		d["n"] = g.num()
	}
	if g.chance(0.6) {
		c := map[string]any{}
		if g.chance(0.7) {
			c["d"] = g.value()
		}
		if g.chance(0.5) {
			c["e"] = g.scalar()
		}
		d["c"] = c
	} else if g.chance(0.3) {
		d["c"] = g.scalar()
	}
	if g.chance(0.7) {
		var tags []any
		for i := 0; i < g.r.IntN(4); i++ {
			tags = append(tags, g.scalar())
		}
		if tags == nil {
			tags = []any{}
		}
		d["tags"] = tags
	} else if g.chance(0.3) {
		d["tags"] = g.scalar()
	}
	for _, gf := range []string{"geo", "loc"} {
		if !g.chance(0.7) {
			continue
		}
		lat, lon := g.geoCenter()
		lat += g.r.Float64()*0.2 - 0.1
		lon += g.r.Float64()*0.2 - 0.1
		var v any = g.geoPoint(lat, lon)
		if g.chance(0.06) {
			v = g.pick("nowhere", 12.0, map[string]any{"x": 1.0}, []any{1.0}, "", 0.0, nil)
		}
		if gf == "loc" {
			v = map[string]any{"pt": v}
		}
		d[gf] = v
	}
	return d
}

package filter

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/heraldhq/herald/plugins/documents/filter/workload"
	"github.com/stretchr/testify/require"
)

func matchIDs(t *testing.T, e *Engine, doc string) []string {
	t.Helper()
	ids, err := e.Match([]byte(doc))
	require.NoError(t, err)
	sort.Strings(ids)
	return ids
}

func TestLanguage(t *testing.T) {
	cases := []struct {
		name   string
		filter string
		yes    []string
		no     []string
	}{
		{"empty matches everything", `{}`, []string{`{}`, `{"a":1}`}, nil},
		{"equals is typed", `{"equals":{"a":1}}`, []string{`{"a":1}`, `{"a":1.0}`}, []string{`{"a":"1"}`, `{"a":[1]}`, `{}`}},
		{"equals nested", `{"equals":{"a.b":"x"}}`, []string{`{"a":{"b":"x"}}`}, []string{`{"a":[{"b":"x"}]}`}},
		{"in", `{"in":{"s":["x","y"]}}`, []string{`{"s":"y"}`}, []string{`{"s":"z"}`}},
		{"ids", `{"ids":{"values":["1"]}}`, []string{`{"_id":"1"}`}, []string{`{"_id":1}`}},
		{"exists", `{"exists":"a.b"}`, []string{`{"a":{"b":null}}`}, []string{`{"a":1}`}},
		{"exists object syntax", `{"exists":{"field":"a"}}`, []string{`{"a":0}`}, []string{`{}`}},
		{"exists array value", `{"exists":"tags[\"x\"]"}`, []string{`{"tags":["y","x"]}`}, []string{`{"tags":"x"}`, `{"tags":["xy"]}`}},
		{"missing", `{"missing":"a"}`, []string{`{}`, `{"b":1}`}, []string{`{"a":null}`}},
		{"missing array value", `{"missing":"tags[1]"}`, []string{`{"tags":[2]}`, `{}`, `{"tags":1}`}, []string{`{"tags":[1]}`}},
		{"range", `{"range":{"n":{"gte":1,"lt":3}}}`, []string{`{"n":1}`, `{"n":2.9}`}, []string{`{"n":3}`, `{"n":"2"}`, `{}`}},
		{"not range matches non numbers", `{"not":{"range":{"n":{"gt":1}}}}`, []string{`{"n":1}`, `{"n":"5"}`, `{}`}, []string{`{"n":2}`}},
		{"regexp", `{"regexp":{"s":"^ab"}}`, []string{`{"s":"abc"}`}, []string{`{"s":"cab"}`, `{"s":1}`}},
		{"regexp flags", `{"regexp":{"s":{"value":"^AB","flags":"i"}}}`, []string{`{"s":"abc"}`}, []string{`{"s":"xab"}`}},
		{"not regexp tests the string form", `{"not":{"regexp":{"n":"^1"}}}`, []string{`{"n":2}`, `{}`}, []string{`{"n":12}`}},
		{"geoDistance", `{"geoDistance":{"p":{"lat":43.6,"lon":3.9},"distance":"1km"}}`,
			[]string{`{"p":{"lat":43.605,"lon":3.9}}`, `{"p":"43.605, 3.9"}`, `{"p":[43.6,3.9]}`}, []string{`{"p":{"lat":43.7,"lon":3.9}}`}},
		{"geoBoundingBox", `{"geoBoundingBox":{"p":{"top":2,"left":0,"bottom":0,"right":2}}}`, []string{`{"p":[1,1]}`}, []string{`{"p":[3,1]}`}},
		{"geoPolygon", `{"geoPolygon":{"p":{"points":[[0,0],[0,2],[2,2],[2,0]]}}}`, []string{`{"p":[1,1]}`}, []string{`{"p":[3,1]}`}},
		{"geoDistanceRange", `{"geoDistanceRange":{"p":[0,0],"from":"1km","to":"2km"}}`, []string{`{"p":[0.0135,0]}`}, []string{`{"p":[0,0]}`}},
		{"match", `{"match":{"a":{"b":[1]}}}`, []string{`{"a":{"b":[2,1],"c":3}}`}, []string{`{"a":{"b":[2]}}`}},
		{"select", `{"select":{"field":"t","index":-1,"query":{"equals":{"value":"z"}}}}`, []string{`{"t":["a","z"]}`}, []string{`{"t":["z","a"]}`}},
		{"nothing", `{"nothing":true}`, nil, []string{`{}`}},
		{"and or not", `{"and":[{"equals":{"a":1}},{"or":[{"equals":{"b":1}},{"not":{"exists":"c"}}]}]}`,
			[]string{`{"a":1,"b":1,"c":1}`, `{"a":1}`}, []string{`{"a":1,"c":1}`}},
		{"bool", `{"bool":{"must":[{"equals":{"a":1}}],"must_not":[{"equals":{"b":1}}],"should":[{"exists":"c"},{"exists":"d"}]}}`,
			[]string{`{"a":1,"c":0}`}, []string{`{"a":1,"b":1,"c":0}`, `{"a":1}`}},
		{"not equals matches missing fields", `{"not":{"equals":{"a":1}}}`, []string{`{}`, `{"a":"1"}`}, []string{`{"a":1}`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := New(Options{})
			id, err := e.Register([]byte(tc.filter))
			require.NoError(t, err)
			for _, d := range tc.yes {
				require.Equal(t, []string{id}, matchIDs(t, e, d), "document %s", d)
			}
			for _, d := range tc.no {
				require.Empty(t, matchIDs(t, e, d), "document %s", d)
			}
		})
	}
}

func TestErrorsNameTheClause(t *testing.T) {
	cases := map[string]string{
		`{"and":[{"equals":{"a":1}},{"range":{"age":{"gt":5,"lt":1}}}]}`: "and[1].range.age: lower boundary must be below the upper one",
		`{"equals":{"a":{}}}`:                               "equals.a: must either be a string, a number, a boolean, or null",
		`{"foo":{}}`:                                        "foo: unknown keyword",
		`{"in":{"a":["x",1]}}`:                              `in.a[1]: must hold only values of type "string"`,
		`{"regexp":{"a":"("}}`:                              "regexp.a: cannot parse regexp",
		`{"regexp":{"a":{"value":"^A","flags":"x"}}}`:       `regexp.a: cannot parse regexp /^A/x: invalid flag 'x'`,
		`{"regexp":{"a":{"value":"^A","flags":"ii"}}}`:      `regexp.a: cannot parse regexp /^A/ii: flag 'i' given twice`,
		`{"geoDistance":{"p":[0,0],"distance":"1 parsec"}}`: `geoDistance.distance: unable to parse distance value "1 parsec"`,
		`{"or":[{"equals":{"a":1}},[]]}`:                    "or[1]: or can only contain non-empty objects",
		`{"not":{"nothing":true}}`:                          "nothing cannot be negated",
		`{"equals":{"a":1},"exists":"b"}`:                   "a filter must have exactly one keyword",
	}
	for filter, want := range cases {
		_, err := Normalize([]byte(filter), Options{})
		require.Error(t, err, filter)
		require.Contains(t, err.Error(), want, filter)
		var pe *ParseError
		require.True(t, errors.As(err, &pe), filter)
	}
}

func TestLimits(t *testing.T) {
	var big string
	for i := 0; i < 51; i++ {
		if i > 0 {
			big += ","
		}
		big += fmt.Sprintf(`{"equals":{"f%d":1}}`, i)
	}
	_, err := Normalize([]byte(`{"and":[`+big+`]}`), Options{})
	require.ErrorIs(t, err, ErrTooComplex)
	_, err = Normalize([]byte(`{"and":[`+big+`]}`), Options{MaxConditions: -1})
	require.NoError(t, err)

	var ors string
	for i := 0; i < 10; i++ {
		if i > 0 {
			ors += ","
		}
		ors += fmt.Sprintf(`{"or":[{"equals":{"a%d":1}},{"equals":{"b%d":1}}]}`, i, i)
	}
	_, err = Normalize([]byte(`{"and":[`+ors+`]}`), Options{MaxTerms: 100})
	require.ErrorIs(t, err, ErrTooComplex)
	require.Contains(t, err.Error(), "expands to more than 100 terms")
}

func TestIdentity(t *testing.T) {
	same := []string{
		`{"and":[{"equals":{"a":1}},{"equals":{"b":2}}]}`,
		`{"and":[{"equals":{"b":2}},{"equals":{"a":1}}]}`,
		`{"bool":{"must":[{"equals":{"a":1}},{"equals":{"b":2}}]}}`,
		`{"not":{"or":[{"not":{"equals":{"a":1}}},{"not":{"equals":{"b":2}}}]}}`,
	}
	var first string
	for _, f := range same {
		n, err := Normalize([]byte(f), Options{})
		require.NoError(t, err)
		if first == "" {
			first = n.ID
		}
		require.Equal(t, first, n.ID, f)
	}
	n, err := Normalize([]byte(`{"equals":{"a":1}}`), Options{})
	require.NoError(t, err)
	require.NotEqual(t, first, n.ID)
}

func TestRegisterTwiceAndRemove(t *testing.T) {
	e := New(Options{})
	f := []byte(`{"and":[{"equals":{"a":1}},{"range":{"n":{"gt":0}}}]}`)
	id1, err := e.Register(f)
	require.NoError(t, err)
	id2, err := e.Register(f)
	require.NoError(t, err)
	require.Equal(t, id1, id2)
	require.Equal(t, 1, e.Len())
	other, err := e.Register([]byte(`{"equals":{"a":1}}`))
	require.NoError(t, err)
	require.Equal(t, sortedIDs([]string{id1, other}), matchIDs(t, e, `{"a":1,"n":1}`))

	require.True(t, e.Remove(id1))
	require.False(t, e.Remove(id1))
	require.Equal(t, []string{other}, matchIDs(t, e, `{"a":1,"n":1}`))
	require.True(t, e.Remove(other))
	require.Empty(t, e.conds)
	require.Empty(t, e.terms)
	require.Empty(t, e.fields)
}

func sortedIDs(ids []string) []string { sort.Strings(ids); return ids }

func TestConcurrentMatchAndRegister(t *testing.T) {
	e := New(Options{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				f := fmt.Sprintf(`{"and":[{"equals":{"a":%d}},{"range":{"n":{"gte":%d}}}]}`, i%7, i)
				id, err := e.Register([]byte(f))
				require.NoError(t, err)
				_, err = e.Match([]byte(fmt.Sprintf(`{"a":%d,"n":%d}`, i%7, i+w)))
				require.NoError(t, err)
				if i%3 == 0 {
					e.Remove(id)
				}
			}
		}(w)
	}
	wg.Wait()
}

func TestRegisterMany(t *testing.T) {
	raw := workload.Filters(3000, 7)
	filters := make([][]byte, 0, len(raw)+2)
	for _, r := range raw {
		filters = append(filters, r)
	}
	filters = append(filters[:10], append([][]byte{[]byte(`{"range":{"a":{"gt":5,"lt":1}}}`)}, filters[10:]...)...)
	filters = append(filters, []byte(`{"nope":1}`))

	one := New(Options{})
	want := make([]string, len(filters))
	for i, f := range filters {
		want[i], _ = one.Register(f)
	}
	many := New(Options{})
	docs := workload.Documents(50, 3)
	var wg sync.WaitGroup
	wg.Go(func() { // matching while the batch is stored
		for _, d := range docs {
			_, err := many.Match(d)
			require.NoError(t, err)
		}
	})
	ids, errs := many.RegisterMany(filters)
	wg.Wait()
	require.Equal(t, want, ids)
	require.Len(t, errs, len(filters))
	for i, err := range errs {
		if i == 10 || i == len(filters)-1 {
			var pe *ParseError
			require.ErrorAs(t, err, &pe, "filter %d", i)
			continue
		}
		require.NoError(t, err, "filter %d", i)
	}
	require.Equal(t, one.Len(), many.Len())
	for _, d := range docs {
		a, err := one.Match(d)
		require.NoError(t, err)
		b, err := many.Match(d)
		require.NoError(t, err)
		require.ElementsMatch(t, a, b)
	}
	require.True(t, many.Has(ids[0]))
	for _, bad := range []string{"", "x", strings.ToUpper(ids[0]), ids[0][:31] + "g", ids[0] + "0"} {
		require.False(t, many.Has(bad), bad)
		require.False(t, many.Remove(bad), bad)
	}
	ids, errs = New(Options{}).RegisterMany(nil)
	require.Empty(t, ids)
	require.Nil(t, errs)
	ids, errs = New(Options{}).RegisterMany(filters[:5])
	require.Nil(t, errs)
	require.Equal(t, want[:5], ids)
}

// Filters are decoded into reused memory: what a registered filter keeps
// of its JSON (a match object, a select sub-query) must survive the
// registrations that follow.
func TestFilterMemoryIsNotReused(t *testing.T) {
	e := New(Options{})
	m, err := e.Register([]byte(`{"match":{"user":{"roles":["admin","ops"],"name":"x"}}}`))
	require.NoError(t, err)
	s, err := e.Register([]byte(`{"select":{"field":"tags","index":-1,"query":{"match":{"value":{"k":[1,2]}}}}}`))
	require.NoError(t, err)
	for i := 0; i < 500; i++ {
		_, err := e.Register([]byte(fmt.Sprintf(`{"and":[{"match":{"user":{"roles":["r%d","q%d"],"name":"y%d"}}},{"in":{"c":["a%d","b","c","d"]}}]}`, i, i, i, i)))
		require.NoError(t, err)
	}
	require.Equal(t, []string{m}, matchIDs(t, e, `{"user":{"roles":["ops","admin","x"],"name":"x"}}`))
	require.Equal(t, []string{s}, matchIDs(t, e, `{"tags":[0,{"k":[2,1,3]}]}`))
}

func TestAppendQuote(t *testing.T) {
	for _, s := range []string{"", "abc", "a b", `a"b`, `a\b`, "a\nb", "é", "\x7f", "~", "\u2028", "\xff"} {
		require.Equal(t, strconv.Quote(s), string(appendQuote(nil, s)), "%q", s)
	}
}

func TestIsProtoName(t *testing.T) {
	for name := range protoNames {
		require.True(t, isProtoName(name), name)
	}
	for _, name := range []string{"", "a", "value", "valueOf2", "category", "toStrin", "Constructor"} {
		require.False(t, isProtoName(name), name)
	}
}

func TestSplitArrayField(t *testing.T) {
	cases := []string{"", "a", "[]", "a[]", "a[b]", `a\[b]`, `a\\[b]`, "[a]", "a[b][c]", "a[b", "ab]",
		"a\n[b]", "a[\nb]", "a[b]\n", "\n[a]", "é[1]", "\xff[1]", `tags["x"]`, `a\[b][c]`, "a[[b]]"}
	alphabet := []string{"a", "[", "]", `\`, "\n", "é", "\xff"}
	r := uint64(1)
	for i := 0; i < 20000; i++ {
		var b strings.Builder
		r = r*6364136223846793005 + 1442695040888963407
		for n, x := 0, r>>59; n < int(x%9); n++ {
			r = r*6364136223846793005 + 1442695040888963407
			b.WriteString(alphabet[(r>>33)%uint64(len(alphabet))])
		}
		cases = append(cases, b.String())
	}
	for _, f := range cases {
		m := arrayFieldRe.FindStringSubmatch(f)
		name, val, ok := splitArrayField(f)
		require.Equal(t, m != nil, ok, "%q", f)
		if ok {
			require.Equal(t, m[1], name, "%q", f)
			require.Equal(t, m[2], val, "%q", f)
		}
	}
}

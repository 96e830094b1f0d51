package filter

import "testing"

// FuzzParse feeds arbitrary bytes to the parser and matcher: either an
// error or a filter that can be registered, matched and removed, never a
// panic. CI runs the seeds; `go test -fuzz FuzzParse` explores.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{}`, `null`, `[]`, `"x"`, `{"equals":{"a":1}}`, `{"in":{"a":["x","y"]}}`,
		`{"exists":"tags[\"x\"]"}`, `{"missing":{"field":"a\\[b"}}`,
		`{"range":{"n":{"gt":1,"lte":5}}}`, `{"regexp":{"s":{"value":"^a(b|c)","flags":"im"}}}`,
		`{"ids":{"values":["1"]}}`, `{"nothing":1}`, `{"match":{"a":[1,{"b":null}]}}`,
		`{"select":{"field":"t","index":-1,"query":{"range":{"value":{"gte":0}}}}}`,
		`{"geoBoundingBox":{"p":{"top_left":"43.7,3.8","bottom_right":[43.5,4.0]}}}`,
		`{"geoDistance":{"p":"spey","distance":"1,5 km"}}`,
		`{"geoDistanceRange":{"p":{"lat_lon":[0,0]},"from":"1km","to":"2mi"}}`,
		`{"geoPolygon":{"p":{"points":[[0,0],"1,1",{"lat":0,"lon":1}]}}}`,
		`{"bool":{"must":[{"equals":{"a":1}}],"must_not":[{"exists":"b"}],"should":[{"equals":{"c":1}}],"should_not":[{"equals":{"d":1}}]}}`,
		`{"not":{"and":[{"or":[{"equals":{"a":1}},{"exists":"b"}]},{"not":{"equals":{"c":"x"}}}]}}`,
	} {
		f.Add([]byte(s))
	}
	docs := [][]byte{
		[]byte(`{"a":1,"b":{"c":"x"},"tags":["x",1],"n":3,"s":"abc","p":[0.001,0.001],"t":[1,-1]}`),
		[]byte(`{}`),
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		e := New(Options{})
		id, err := e.Register(data)
		if err != nil {
			return
		}
		for _, d := range docs {
			if _, err := e.Match(d); err != nil {
				t.Fatal(err)
			}
		}
		if !e.Remove(id) {
			t.Fatal("registered filter not found")
		}
		if len(e.conds) != 0 || len(e.terms) != 0 || len(e.fields) != 0 {
			t.Fatal("remove left state behind")
		}
		_, _ = e.Match(data) // arbitrary bytes as a document: an error at most
	})
}

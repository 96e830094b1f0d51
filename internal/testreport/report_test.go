package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const stream = `{"Action":"start","Package":"a"}
{"Action":"run","Package":"a","Test":"TestOK"}
{"Action":"output","Package":"a","Test":"TestOK","Output":"=== RUN   TestOK\n"}
{"Action":"output","Package":"a","Test":"TestOK","Output":"    a_test.go:9: chatter of a passing test\n"}
{"Action":"pass","Package":"a","Test":"TestOK"}
{"Action":"run","Package":"a","Test":"TestNode"}
{"Action":"output","Package":"a","Test":"TestNode","Output":"=== RUN   TestNode\n"}
{"Action":"output","Package":"a","Test":"TestNode","Output":"    js_test.go:31: node is not installed: skipping the JavaScript client's tests\n"}
{"Action":"output","Package":"a","Test":"TestNode","Output":"--- SKIP: TestNode (0.00s)\n"}
{"Action":"skip","Package":"a","Test":"TestNode"}
{"Action":"output","Package":"a","Output":"PASS\n"}
{"Action":"output","Package":"a","Output":"ok  \ta\t0.01s\n"}
{"Action":"pass","Package":"a"}
{"Action":"run","Package":"b","Test":"TestBad"}
{"Action":"output","Package":"b","Test":"TestBad","Output":"=== RUN   TestBad\n"}
{"Action":"output","Package":"b","Test":"TestBad","Output":"    b_test.go:5: expected 1, got 2\n"}
{"Action":"output","Package":"b","Test":"TestBad","Output":"--- FAIL: TestBad (0.00s)\n"}
{"Action":"fail","Package":"b","Test":"TestBad"}
{"Action":"output","Package":"b","Output":"FAIL\n"}
{"Action":"output","Package":"b","Output":"FAIL\tb\t0.01s\n"}
{"Action":"fail","Package":"b"}
`

func TestReportShowsFailuresAndSkips(t *testing.T) {
	var out strings.Builder
	err := report(strings.NewReader(stream), &out)
	require.ErrorIs(t, err, errFailed)
	got := out.String()
	require.Contains(t, got, "ok  \ta\t0.01s")
	require.Contains(t, got, "b_test.go:5: expected 1, got 2")
	require.Contains(t, got, "FAIL\tb\t0.01s")
	require.NotContains(t, got, "chatter of a passing test")
	require.Contains(t, got, "1 tests were SKIPPED")
	require.Contains(t, got, "SKIP a TestNode\n     js_test.go:31: node is not installed: skipping the JavaScript client's tests")
}

func TestReportPassesWithoutSkips(t *testing.T) {
	var out strings.Builder
	lines := strings.SplitAfter(stream, "\n")
	var ok []string
	for _, l := range lines {
		if strings.Contains(l, `"Package":"a"`) && !strings.Contains(l, "TestNode") {
			ok = append(ok, l)
		}
	}
	require.NoError(t, report(strings.NewReader(strings.Join(ok, "")), &out))
	require.Equal(t, "ok  \ta\t0.01s\n", out.String())
}

func TestReportPassesBuildErrorsOn(t *testing.T) {
	var out strings.Builder
	in := `{"ImportPath":"c","Action":"build-output","Output":"c/x.go:3:1: syntax error\n"}
{"ImportPath":"c","Action":"build-fail"}
not json at all
`
	require.ErrorIs(t, report(strings.NewReader(in), &out), errFailed)
	require.Contains(t, out.String(), "c/x.go:3:1: syntax error")
	require.Contains(t, out.String(), "not json at all")
}

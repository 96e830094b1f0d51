// Package grafana_test checks the example Grafana dashboard against what a
// real herald exports.
package grafana_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/heraldtest"
)

func TestMain(m *testing.M) { heraldtest.Main(m) }

// promqlKeywords are words of PromQL that are not metric names where they
// stand without a following "(".
var promqlKeywords = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true,
	"group_left": true, "group_right": true, "offset": true, "bool": true, "and": true, "or": true,
	"unless": true, "inf": true, "nan": true,
	// aggregations, which may stand before "by (...)" rather than "("
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
	"limitk": true, "limit_ratio": true}

// labelListAfter are the keywords followed by a list of label names in
// parentheses, which are not metric names either.
var labelListAfter = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}

// metricNames returns the metric names a PromQL expression reads: the
// identifiers outside label matchers ({...}), ranges ([...]), strings and
// Grafana variables ($x) that are neither a function or aggregation (an
// identifier followed by "("), nor a keyword, nor a label list after by,
// without, on, ignoring, group_left or group_right.
func metricNames(expr string) ([]string, error) {
	var out []string
	isStart := func(c byte) bool { return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	isPart := func(c byte) bool { return isStart(c) || c >= '0' && c <= '9' }
	skipTo := func(i int, close byte) (int, error) {
		for j := i + 1; j < len(expr); j++ {
			if c := expr[j]; c == '"' || c == '\'' || c == '`' {
				k := strings.IndexByte(expr[j+1:], c)
				if k < 0 {
					return 0, fmt.Errorf("unterminated string at %d in %q", j, expr)
				}
				j += k + 1
			} else if c == close {
				return j + 1, nil
			}
		}
		return 0, fmt.Errorf("no %q after %d in %q", close, i, expr)
	}
	nextNonSpace := func(i int) int {
		for i < len(expr) && (expr[i] == ' ' || expr[i] == '\n' || expr[i] == '\t') {
			i++
		}
		return i
	}
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '{':
			j, err := skipTo(i, '}')
			if err != nil {
				return nil, err
			}
			i = j
		case c == '[':
			j, err := skipTo(i, ']')
			if err != nil {
				return nil, err
			}
			i = j
		case c == '"' || c == '\'' || c == '`':
			k := strings.IndexByte(expr[i+1:], c)
			if k < 0 {
				return nil, fmt.Errorf("unterminated string at %d in %q", i, expr)
			}
			i += k + 2
		case c == '$':
			i++
			for i < len(expr) && isPart(expr[i]) {
				i++
			}
		case c >= '0' && c <= '9' || c == '.':
			for i < len(expr) && (isPart(expr[i]) || expr[i] == '.') {
				i++
			}
		case isStart(c):
			j := i
			for j < len(expr) && isPart(expr[j]) {
				j++
			}
			word := expr[i:j]
			next := nextNonSpace(j)
			switch {
			case labelListAfter[word]:
				if next < len(expr) && expr[next] == '(' {
					end, err := skipTo(next, ')')
					if err != nil {
						return nil, err
					}
					j = end
				}
			case promqlKeywords[word]:
			case next < len(expr) && expr[next] == '(':
				// a function or an aggregation
			default:
				out = append(out, word)
			}
			i = j
		default:
			i++
		}
	}
	return out, nil
}

func TestMetricNamesOfAnExpression(t *testing.T) {
	got, err := metricNames(`histogram_quantile(0.99, max by (le, source) (rate(herald_publish_latency_seconds_bucket{instance=~"$instance",x="a}b"}[$__rate_interval]))) / on (instance) group_left (le) herald_x offset 5m and bool ignoring (y) other_metric`)
	require.NoError(t, err)
	require.Equal(t, []string{"herald_publish_latency_seconds_bucket", "herald_x", "other_metric"}, got)
	_, err = metricNames(`rate(x{a="b}[1m])`)
	require.Error(t, err)
}

// dashboardQueries returns every PromQL expression of the dashboard: its
// panels' targets (rows included) and its template variables' queries.
func dashboardQueries(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile("herald.json")
	require.NoError(t, err)
	var d struct {
		Panels     []json.RawMessage
		Templating struct {
			List []struct {
				Type       string
				Definition string
			}
		}
	}
	require.NoError(t, json.Unmarshal(raw, &d), "herald.json is not valid JSON")
	type panel struct {
		Type    string
		Title   string
		Panels  []json.RawMessage
		Targets []struct{ Expr string }
	}
	var exprs []string
	var walk func(list []json.RawMessage)
	walk = func(list []json.RawMessage) {
		for _, r := range list {
			var p panel
			require.NoError(t, json.Unmarshal(r, &p))
			walk(p.Panels)
			if p.Type != "row" {
				require.NotEmpty(t, p.Targets, "panel %q queries nothing", p.Title)
			}
			for _, tg := range p.Targets {
				require.NotEmpty(t, tg.Expr, "panel %q has a target without expr", p.Title)
				exprs = append(exprs, tg.Expr)
			}
		}
	}
	walk(d.Panels)
	labelValues := regexp.MustCompile(`^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := labelValues.FindStringSubmatch(v.Definition)
		require.NotNil(t, m, "template query %q: expected label_values(metric, label)", v.Definition)
		exprs = append(exprs, m[1])
	}
	return exprs
}

// exported scrapes herald's /metrics and returns the names it exports: each
// family, and for a histogram its _bucket, _sum and _count series.
func exported(t *testing.T, url string) map[string]bool {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	names := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 4 || f[0] != "#" || f[1] != "TYPE" {
			continue
		}
		names[f[2]] = true
		if f[3] == "histogram" {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[f[2]+s] = true
			}
		}
	}
	require.NoError(t, sc.Err())
	return names
}

// Every metric the dashboard queries is one a real herald exports, with a
// plugin loaded and some traffic so that the labelled series exist.
func TestDashboardQueriesOnlyExportedMetrics(t *testing.T) {
	exprs := dashboardQueries(t)
	require.NotEmpty(t, exprs)

	plugin := fmt.Sprintf("plugin \"echo\" {\n  command = %q\n}\n", heraldtest.Binary(t, "examples/echo-plugin"))
	h := heraldtest.Start(t, heraldtest.Options{HCL: plugin})
	alice := h.Dial(t, "")
	alice.MustCall(t, "hello", map[string]any{"token": h.Token(t, "alice")})
	alice.Subscribe(t, "echo:alice")
	h.Publish(t, heraldtest.N("echo:alice", "e", "t", `{}`))
	alice.Notifications(t, 1)
	alice.MustCall(t, "echo.say", map[string]any{"text": "hi"}) // a plugin call and an emit
	alice.Notifications(t, 1)
	alice.CallErr(t, "echo.say", map[string]any{}) // a plugin call that fails
	alice.CallErr(t, "nope", nil)                  // a core call that fails
	have := exported(t, h.URL+"/metrics")

	var queried []string
	for _, e := range exprs {
		names, err := metricNames(e)
		require.NoError(t, err)
		require.NotEmpty(t, names, "no metric in %q", e)
		for _, n := range names {
			if !slices.Contains(queried, n) {
				queried = append(queried, n)
			}
		}
	}
	slices.Sort(queried)
	t.Logf("the dashboard queries %d metrics: %s", len(queried), strings.Join(queried, ", "))
	for _, n := range queried {
		require.True(t, have[n], "the dashboard queries %s, which herald does not export", n)
	}
	// And the other way round: every metric of herald's own is in the
	// operator's table.
	doc, err := os.ReadFile("../../docs/operations.md")
	require.NoError(t, err)
	for n := range have {
		if strings.HasPrefix(n, "herald_") && !strings.HasSuffix(n, "_bucket") && !strings.HasSuffix(n, "_sum") && !strings.HasSuffix(n, "_count") {
			require.Contains(t, string(doc), "`"+n, "herald exports %s, which docs/operations.md does not document", n)
		}
	}
}

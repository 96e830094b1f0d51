package pluginhost

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/rpc"
)

// herald_plugin_call_errors_total takes the contract's codes as its code
// label, anything else as "other": a plugin cannot grow its series.
func TestCallErrorCodeLabelIsBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newMetrics(reg)
	m.callError("p", "m", rpc.CodeForbidden)
	for code := range 1000 {
		m.callError("p", "m", code)
	}
	mfs, err := reg.Gather()
	require.NoError(t, err)
	byCode := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "herald_plugin_call_errors_total" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == "code" {
					byCode[l.GetValue()] = mt.GetCounter().GetValue()
				}
			}
		}
	}
	require.Equal(t, map[string]float64{"-32003": 1, "other": 1000}, byCode)
}

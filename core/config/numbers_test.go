package config

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDecimalMagnitude(t *testing.T) {
	tests := []struct {
		in   string
		mag  int
		isNr bool
	}{
		{"0", 0, true},
		{"000.000", 0, true},
		{"1", 0, true},
		{"42", 1, true},
		{"0.5", -1, true},
		{"0.005", -3, true},
		{"1e3", 3, true},
		{"-1.5E-3", -3, true},
		{"+12.5e+2", 3, true},
		{"1e400777777", 400777777, true},
		{"1e99999999999999999999", 0, true}, // clamped, checked below
		{"", 0, false},
		{"e5", 0, false},
		{"1e", 0, false},
		{"1.2.3", 0, false},
		{"12ms", 0, false},
		{"http://x", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			mag, ok := decimalMagnitude([]byte(tt.in))
			require.Equal(t, tt.isNr, ok)
			if tt.in == "1e99999999999999999999" {
				require.Greater(t, mag, maxMagnitude)
				return
			}
			require.Equal(t, tt.mag, mag)
		})
	}
}

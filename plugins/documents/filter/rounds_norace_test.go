//go:build !race

package filter

// diffRounds is how many generated rounds the differential test runs.
const diffRounds = 8

//go:build !race

package heraldtest

const raceEnabled = false

package main

import "github.com/heraldhq/herald/sdk"

// The Makefile builds every plugins/<name>/main.go into bin/plugins/<name>.
func main() { sdk.Serve(New()) }

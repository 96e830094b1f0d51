package main_test

import (
	"testing"

	"github.com/heraldhq/herald/internal/heraldtest"
)

func TestMain(m *testing.M) { heraldtest.Main(m) }

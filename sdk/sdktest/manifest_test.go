package sdktest_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/sdk"
	"github.com/heraldhq/herald/sdk/sdktest"
)

// claimer declares the prefixes and routes it is given; keeps declares
// its ExpiryKeeper prefixes.
type claimer struct {
	prefixes, keeps []string
	routes          []string // "METHOD pattern"
}

func (c claimer) ExpiryKeptPrefixes() []string { return c.keeps }

func (c claimer) Manifest() sdk.Manifest {
	m := sdk.Manifest{Name: "claimer", Version: "1", Prefixes: c.prefixes, AllowAllSubscriptions: true}
	for _, r := range c.routes {
		method, pattern, _ := strings.Cut(r, " ")
		m.Routes = append(m.Routes, sdk.Route{Method: method, Pattern: pattern, Handler: http.NotFoundHandler()})
	}
	return m
}

// What Herald refuses in a manifest (herald validate) fails the start, in
// Herald's words (core/pluginhost's TestCheckPrefix, TestCoreCollision and
// the expiry check pin the same messages).
func TestManifestIsHeldToHeraldsChecks(t *testing.T) {
	for _, tc := range []struct {
		c    claimer
		want string
	}{
		{claimer{prefixes: []string{"config"}}, `manifest: claims channel prefix "config", which is Herald's own`},
		{claimer{prefixes: []string{"$server"}}, `manifest: claims channel prefix "$server", which is Herald's own`},
		{claimer{prefixes: []string{"a b"}}, `manifest: invalid channel prefix "a b": printable ASCII only, without spaces or ":"`},
		{claimer{prefixes: []string{"a:b"}}, `manifest: invalid channel prefix "a:b": printable ASCII only, without spaces or ":"`},
		{claimer{prefixes: []string{"p"}, keeps: []string{"chat"}}, `manifest: expiry_kept_prefixes names "chat", which is not one of its prefixes [p]`},
		{claimer{prefixes: []string{"p"}, routes: []string{"GET /metrics"}}, `manifest: claims HTTP route "GET /metrics", which collides with Herald's own /metrics`},
		{claimer{prefixes: []string{"p"}, routes: []string{"GET /{page...}"}}, `manifest: claims HTTP route "GET /{page...}", which collides with Herald's own /ws`},
		{claimer{prefixes: []string{"p", "config"}, routes: []string{"GET /healthz"}},
			`manifest: claims channel prefix "config", which is Herald's own; claims HTTP route "GET /healthz", which collides with Herald's own /healthz`},
	} {
		_, err := sdktest.StartErr(t, tc.c, nil)
		require.EqualError(t, err, tc.want, "%+v", tc.c)
	}
	// A malformed pattern: net/http's own words follow Herald's.
	_, err := sdktest.StartErr(t, claimer{prefixes: []string{"p"}, routes: []string{"GET nopath"}}, nil)
	require.ErrorContains(t, err, `manifest: HTTP route "GET nopath": parsing "GET nopath": `)
	require.ErrorContains(t, err, "host/path missing /")

	_, err = sdktest.StartErr(t, claimer{prefixes: []string{"p"}, keeps: []string{"p"}, routes: []string{"GET /v1/p/{id}", "GET /{$}"}}, nil)
	require.NoError(t, err)
}

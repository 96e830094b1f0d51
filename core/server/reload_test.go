package server

import (
	"reflect"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/config"
)

func TestChangedKeysNamesConfigKeys(t *testing.T) {
	a := config.Defaults()
	b := config.Defaults()
	require.Empty(t, changedKeys(&a, &b))
	b.Server.AllowedOrigins = []string{"https://x.example"}
	b.Auth.APIKeys = []string{"k"}
	b.Delivery.MaxBatch = 3
	b.Broker.Kind = "other"
	b.Server.TLS = &config.TLS{CertFile: "c", KeyFile: "k"}
	b.Plugins = []config.Plugin{{Name: "x"}}
	b.File = "elsewhere.hcl"
	require.Equal(t, []string{"server.allowed_origins", "server.tls", "auth.api_keys", "delivery.max_batch", "broker.kind"}, changedKeys(&a, &b))
}

// Writing state.dir's default where there was no state block changes no
// key: State.DirSet (whether dir was written) is no config key, and the
// restart-only warning named it as "state.dir_set".
func TestChangedKeysSkipsFieldsThatAreNoKey(t *testing.T) {
	a := config.Defaults()
	b := config.Defaults()
	b.State.DirSet = true
	require.Empty(t, changedKeys(&a, &b))
	b.State.Dir = "elsewhere"
	require.Equal(t, []string{"state.dir"}, changedKeys(&a, &b))
}

// Every field changedKeys compares names a config key, but for the ones
// that record how a key was written.
func TestChangedKeysComparesEveryKey(t *testing.T) {
	c := config.Defaults()
	v := reflect.ValueOf(c)
	for i := 0; i < v.NumField(); i++ {
		f := v.Type().Field(i)
		if f.Type.Kind() != reflect.Struct {
			continue
		}
		for j := 0; j < f.Type.NumField(); j++ {
			key := snake(f.Name) + "." + snake(f.Type.Field(j).Name)
			require.Equal(t, key != "state.dir_set", config.IsKey(key), key)
		}
	}
}

func TestSnake(t *testing.T) {
	for in, want := range map[string]string{"AllowedOrigins": "allowed_origins", "APIKeys": "api_keys", "TLS": "tls",
		"URL": "url", "MaxFrameBytes": "max_frame_bytes", "BusyOutboxRatio": "busy_outbox_ratio", "Listen": "listen", "IOUring": "io_uring"} {
		require.Equal(t, want, snake(in), in)
	}
}

// liveConfig takes exactly the reloadable keys from the new config: with
// every key changed, the live config differs from the running one in those
// keys and no other.
func TestLiveConfigTakesExactlyTheReloadableKeys(t *testing.T) {
	running := config.Defaults()
	next := config.Defaults()
	changeEveryKey(reflect.ValueOf(&next).Elem())
	next.Plugins, next.File = nil, ""
	var want []string
	for _, k := range changedKeys(&running, &next) {
		if reloadable[k] {
			want = append(want, k)
		}
	}
	require.Len(t, want, len(reloadable), "every reloadable key is a config key")
	require.ElementsMatch(t, want, changedKeys(&running, liveConfig(&running, &next)))
}

// changeEveryKey gives every leaf of v another value.
func changeEveryKey(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			changeEveryKey(v.Field(i))
		}
	case reflect.String:
		v.SetString(v.String() + "x")
	case reflect.Int, reflect.Int64:
		v.SetInt(v.Int() + 1)
	case reflect.Float64:
		v.SetFloat(v.Float() + 0.25)
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Slice:
		v.Set(reflect.Append(v, reflect.Zero(v.Type().Elem())))
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
	}
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/heraldhq/herald/sdk"
)

// fakeHost records emits; subscriptions always succeed.
type fakeHost struct {
	mu      sync.Mutex
	emitted []sdk.Notification
}

func (h *fakeHost) Emit(_ context.Context, ns ...sdk.Notification) ([]sdk.Published, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]sdk.Published, len(ns))
	for i, n := range ns {
		if !json.Valid(n.Object.(json.RawMessage)) {
			return nil, errors.New("invalid JSON object")
		}
		out[i] = sdk.Published{Channel: n.Channel, Seq: uint64(len(h.emitted) + i + 1)}
	}
	h.emitted = append(h.emitted, ns...)
	return out, nil
}
func (h *fakeHost) Subscribe(context.Context, string, string) error   { return nil }
func (h *fakeHost) Unsubscribe(context.Context, string, string) error { return nil }
func (h *fakeHost) Presence(context.Context, string) (sdk.PresenceInfo, error) {
	return sdk.PresenceInfo{}, nil
}
func (h *fakeHost) CallClient(context.Context, string, string, any) (json.RawMessage, error) {
	return nil, errors.New("no client")
}
func (h *fakeHost) Logger() hclog.Logger { return hclog.NewNullLogger() }

var fuzzMethods = []string{"create", "createOrReplace", "replace", "update", "delete", "get", "count",
	"subscribe", "join", "unsubscribe", "publish", "list", "validate"}

// FuzzRequestBodies sends arbitrary params to every action, as a client and
// as a backend: a call either answers JSON or fails with a coded error
// (-32602 for what the caller got wrong), never panics, and every
// notification it emits is valid JSON.
func FuzzRequestBodies(f *testing.F) {
	for _, seed := range []string{
		`{"index":"i","collection":"c","_id":"a","body":{"x":1}}`,
		`{"index":"i","collection":"c","body":{"range":{"x":{"gte":1}}}}`,
		`{"index":"i","collection":"c","body":{"and":[{"equals":{"a":1}},{"nothing":true}]},"scope":"in","state":"all","users":"all","volatile":{"v":1}}`,
		`{"roomId":"r","volatile":null}`,
		`{"index":"i","collection":"c","_id":"a","body":{"x":{"y":[1,2]}}}`,
		`{"index":"","collection":"c"}`,
		`{"index":"i","collection":"c","since":{"channel":"documents:x","seq":1,"epoch":"e"}}`,
		`[1,2]`, `null`, `{"body":"x"}`, `{"index":1}`,
	} {
		for m := range fuzzMethods {
			f.Add(uint8(m), false, []byte(seed))
		}
	}
	h := &fakeHost{}
	d := New()
	st := newMemState()
	d.stateOf = func(sdk.Host) (sdk.State, error) { return st, nil }
	if err := d.Configure(context.Background(), h, sdk.NewConfig(map[string]any{"resume_window": "0s"})); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = d.Drain(context.Background()) })
	handlers := map[string]func(context.Context, *sdk.Call) (any, error){}
	for _, m := range d.Manifest().Methods {
		handlers[m.Name] = m.Handler
	}
	f.Fuzz(func(t *testing.T, m uint8, backend bool, params []byte) {
		name := fuzzMethods[int(m)%len(fuzzMethods)]
		caller := sdk.Caller{ConnID: "c1", UserID: "u1"}
		if backend {
			caller = sdk.Caller{Backend: true}
		}
		res, err := handlers[name](context.Background(), &sdk.Call{Method: name, Caller: caller, Params: params, Host: h})
		if err != nil {
			var e *sdk.Error
			if !errors.As(err, &e) {
				t.Fatalf("%s %s: uncoded error %v", name, params, err)
			}
			switch e.Code {
			case sdk.CodeInvalidParams, sdk.CodeLimitExceeded:
			case sdk.CodeInternal:
				// Call.Subscribe needs the SDK's own host: only subscribe and
				// join may fail that way here.
				if name != "subscribe" && name != "join" {
					t.Fatalf("%s %s: internal error %v", name, params, e)
				}
			default:
				t.Fatalf("%s %s: unexpected code %v", name, params, e)
			}
			return
		}
		if _, err := json.Marshal(res); err != nil {
			t.Fatalf("%s %s: result does not marshal: %v", name, params, err)
		}
	})
}

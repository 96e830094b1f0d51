package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"unicode"
	"unicode/utf8"
)

// Handler answers one call of a local-interface method: params is the
// call's JSON params; the returned value becomes the JSON-RPC result, a
// returned error the JSON-RPC error (an *Error keeps its code, any other
// error is sent as CodeApplication with its text).
type Handler func(ctx context.Context, params json.RawMessage) (any, error)

// Methods is a local interface given as a map: method name (as herald
// calls it, e.g. "onNotificationReceived") to handler.
type Methods map[string]Handler

// Typed adapts a function of a decoded params type to a Handler.
func Typed[P, R any](f func(context.Context, P) (R, error)) Handler {
	return func(ctx context.Context, raw json.RawMessage) (any, error) {
		var p P
		if err := decodeParams(raw, &p); err != nil {
			return nil, err
		}
		return f(ctx, p)
	}
}

// OnNotifications is a Handler for onNotificationReceived that hands f
// each batch.
func OnNotifications(f func(context.Context, []Notification) error) Handler {
	return func(ctx context.Context, raw json.RawMessage) (any, error) {
		var b Batch
		if err := decodeParams(raw, &b); err != nil {
			return nil, err
		}
		return nil, f(ctx, b.Notifications)
	}
}

func decodeParams(raw json.RawMessage, v any) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return &Error{Code: CodeInvalidParams, Message: "invalid params: " + err.Error()}
	}
	return nil
}

var (
	ctxType   = reflect.TypeFor[context.Context]()
	errorType = reflect.TypeFor[error]()
	batchType = reflect.TypeFor[Batch]()
)

// local is a local interface ready to be called.
type local struct {
	methods map[string]Handler
	// batch holds methods that take a Batch: the client hands them the
	// batch it already decoded instead of encoding it again.
	batch map[string]func(context.Context, *Batch) (any, error)
}

func (l *local) names() []string {
	out := make([]string, 0, len(l.methods))
	for n := range l.methods {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// newLocal builds the local interface from Options.Local: nil, Methods,
// map[string]Handler, or any Go value whose methods take a context.Context
// first. Such a method Foo is presented as "foo"; its shape must be
// func(ctx[, params P]) [R,] error.
func newLocal(v any) (*local, error) {
	l := &local{methods: map[string]Handler{}, batch: map[string]func(context.Context, *Batch) (any, error){}}
	switch m := v.(type) {
	case nil:
		return l, nil
	case Methods:
		for n, h := range m {
			l.methods[n] = h
		}
		return l, nil
	case map[string]Handler:
		for n, h := range m {
			l.methods[n] = h
		}
		return l, nil
	}
	rv := reflect.ValueOf(v)
	rt := rv.Type()
	var errs []error
	for i := 0; i < rt.NumMethod(); i++ {
		meth := rt.Method(i)
		fn := rv.Method(i)
		ft := fn.Type()
		if ft.NumIn() == 0 || ft.In(0) != ctxType {
			continue // not meant for herald: String(), Close(), ...
		}
		name := lowerFirst(meth.Name)
		h, bh, err := reflectHandler(fn)
		if err != nil {
			errs = append(errs, fmt.Errorf("local interface method %s.%s: %w", rt, meth.Name, err))
			continue
		}
		l.methods[name] = h
		if bh != nil {
			l.batch[name] = bh
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(l.methods) == 0 {
		hint := ""
		switch {
		case rt.Kind() == reflect.Map:
			hint = "; for a map of functions, use client.Methods"
		case rt.Kind() != reflect.Pointer && reflect.PointerTo(rt).NumMethod() > rt.NumMethod():
			hint = fmt.Sprintf("; its methods have a pointer receiver: pass &%s{...}", rt.Name())
		}
		return nil, fmt.Errorf("local interface %s has no method taking a context.Context first (e.g. OnNotificationReceived(ctx context.Context, b client.Batch) error)%s", rt, hint)
	}
	return l, nil
}

func reflectHandler(fn reflect.Value) (Handler, func(context.Context, *Batch) (any, error), error) {
	ft := fn.Type()
	if ft.IsVariadic() || ft.NumIn() > 2 {
		return nil, nil, errors.New("takes (ctx) or (ctx, params) only")
	}
	switch {
	case ft.NumOut() == 1 && ft.Out(0) == errorType:
	case ft.NumOut() == 2 && ft.Out(1) == errorType:
	default:
		return nil, nil, errors.New("must return error or (result, error)")
	}
	var pt reflect.Type
	if ft.NumIn() == 2 {
		pt = ft.In(1)
	}
	invoke := func(ctx context.Context, p reflect.Value) (any, error) {
		in := []reflect.Value{reflect.ValueOf(ctx)}
		if pt != nil {
			in = append(in, p)
		}
		out := fn.Call(in)
		errv := out[len(out)-1]
		if !errv.IsNil() {
			return nil, errv.Interface().(error)
		}
		if len(out) == 2 {
			return out[0].Interface(), nil
		}
		return nil, nil
	}
	h := func(ctx context.Context, raw json.RawMessage) (any, error) {
		var p reflect.Value
		if pt != nil {
			pp := reflect.New(pt)
			if err := decodeParams(raw, pp.Interface()); err != nil {
				return nil, err
			}
			p = pp.Elem()
		}
		return invoke(ctx, p)
	}
	var bh func(context.Context, *Batch) (any, error)
	switch pt {
	case batchType:
		bh = func(ctx context.Context, b *Batch) (any, error) { return invoke(ctx, reflect.ValueOf(*b)) }
	case reflect.PointerTo(batchType):
		bh = func(ctx context.Context, b *Batch) (any, error) { return invoke(ctx, reflect.ValueOf(b)) }
	}
	return h, bh, nil
}

func lowerFirst(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	return string(unicode.ToLower(r)) + s[n:]
}

// callError turns what a local method returned into a JSON-RPC error.
func callError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: CodeApplication, Message: err.Error()}
}

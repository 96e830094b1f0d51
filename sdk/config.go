package sdk

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
)

// Config is the plugin's `config` block from the host's config file.
type Config struct {
	raw    map[string]any
	dryRun bool
}

// NewConfig wraps a config block given as plain Go values (for tests).
func NewConfig(m map[string]any) Config { return Config{raw: m} }

// NewDryRunConfig is NewConfig for a dry run (for tests of a Configure hook).
func NewDryRunConfig(m map[string]any) Config { return Config{raw: m, dryRun: true} }

// Map returns the block as plain Go values (maps, slices, strings,
// json.Number for numbers, bools).
func (c Config) Map() map[string]any { return c.raw }

// DryRun reports whether the host only checks the config (`herald
// validate`): Configure must then decode and validate it and return, without
// opening a store, creating files or starting work; the host stops the
// plugin right after.
func (c Config) DryRun() bool { return c.dryRun }

// Validator is implemented by config structs that check themselves after
// decoding; its error is reported like a decoding error.
type Validator interface {
	Validate() error
}

// ConfigError is a config block that does not decode: Key is the key path
// inside the block ("max_choice", "store.path"), Message what is wrong.
//
// Its Error form, "config.<key>: <message>", is what the host recognizes
// in a Configure error to report it at the key's position in the config
// file; keep it at the start of the message when wrapping it. Several
// problems are several ConfigErrors joined with errors.Join: one per line,
// each shown at its own key (a Configure error is taken so only when every
// line of it has this form).
type ConfigError struct {
	Key     string
	Message string
}

func (e *ConfigError) Error() string {
	if e.Key == "" {
		return "config: " + e.Message
	}
	return "config." + e.Key + ": " + e.Message
}

// Decode decodes the block into v, a pointer to the plugin's config struct,
// with mapstructure: fields match keys by their `mapstructure` tag (or
// case-insensitive name), "30s" decodes into a time.Duration, numbers into
// any numeric field, and a key the struct does not have is an error that
// suggests the closest valid key. Then v.Validate() runs if v is a
// Validator.
//
// It reports every problem, not the first: each is a *ConfigError naming
// its key path, and several are joined with errors.Join (one per line of
// Error, which is how the host shows each at its own key). Validate may
// return a *ConfigError, several joined, or any other error (a
// ConfigError without a key); what it says of a key that did not decode is
// left out, since the field holds no value of the operator's.
func (c Config) Decode(v any) error {
	raw := c.raw
	if raw == nil {
		raw = map[string]any{}
	}
	var errs []error
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer && !rv.IsNil() {
		errs = unknownKeys(raw, rv.Elem().Type(), "", nil)
	}
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		Result: v,
		// The unknown keys are reported above, each with a suggestion;
		// when there are none, mapstructure's check stays as a backstop.
		ErrorUnused:      len(errs) == 0,
		WeaklyTypedInput: true,
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			blockHook,
			durationHook,
			mapstructure.StringToSliceHookFunc(","),
		),
	})
	if err != nil {
		return &ConfigError{Message: err.Error()}
	}
	var failed []string // keys that did not decode
	if err := dec.Decode(raw); err != nil {
		for _, ce := range decodeErrors(err) {
			errs = append(errs, ce)
			failed = append(failed, ce.Key)
		}
	}
	if val, ok := v.(Validator); ok {
		if err := val.Validate(); err != nil {
			for _, e := range validateErrors(err) {
				var ce *ConfigError
				if errors.As(e, &ce) && ce.Key != "" && slices.ContainsFunc(failed, func(k string) bool { return underKey(ce.Key, k) }) {
					continue
				}
				errs = append(errs, e)
			}
		}
	}
	if len(errs) == 1 {
		return errs[0] // one problem is the ConfigError itself, as it always was
	}
	return errors.Join(errs...)
}

// underKey reports whether key is k or a key inside it ("store.path" and
// "index[1]" are inside "store" and "index").
func underKey(key, k string) bool {
	return key == k || (strings.HasPrefix(key, k) && (key[len(k)] == '.' || key[len(k)] == '['))
}

// validateErrors splits a Validate error into its problems (errors.Join
// of several, nested or not): each stays as it is when it is or wraps a
// *ConfigError, and becomes a ConfigError without a key otherwise.
func validateErrors(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, validateErrors(e)...)
		}
		return out
	}
	var ce *ConfigError
	if errors.As(err, &ce) {
		return []error{err}
	}
	return []error{&ConfigError{Message: err.Error()}}
}

// decodeErrors turns mapstructure's error (every field that failed,
// joined) into one ConfigError per field.
func decodeErrors(err error) []*ConfigError {
	if out := fieldErrors(err); len(out) > 0 {
		return out
	}
	return []*ConfigError{{Message: err.Error()}}
}

// fieldErrors finds the *mapstructure.DecodeError values in err's tree,
// the innermost where one holds others, each as a ConfigError.
func fieldErrors(err error) []*ConfigError {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []*ConfigError
		for _, e := range j.Unwrap() {
			out = append(out, fieldErrors(e)...)
		}
		return out
	}
	if de, ok := err.(*mapstructure.DecodeError); ok {
		if inner := fieldErrors(de.Unwrap()); len(inner) > 0 {
			return inner
		}
		return []*ConfigError{decodeError(de)}
	}
	if u := errors.Unwrap(err); u != nil {
		return fieldErrors(u)
	}
	return nil
}

// decodeError rewrites one of mapstructure's field errors into a
// ConfigError with the key path and no Go type names or parser internals
// where a plain word says it: the message names what the key takes and
// what it was given.
func decodeError(de *mapstructure.DecodeError) *ConfigError {
	msg := de.Unwrap().Error()
	var ut *mapstructure.UnconvertibleTypeError
	var pe *mapstructure.ParseError
	var bd *badDuration
	var nb *notBlock
	switch {
	case errors.As(de, &bd):
		msg = bd.message()
	case errors.As(de, &nb):
		msg = nb.Error()
	case errors.As(de, &ut):
		msg = fmt.Sprintf("expected %s, got %s", describe(ut.Expected.Type()), describeValue(ut.Value))
	case errors.As(de, &pe):
		msg = fmt.Sprintf("expected %s, got %s", describe(pe.Expected.Type()), describeValue(pe.Value))
		if errors.Is(pe.Err, strconv.ErrRange) {
			msg += " (out of range)"
		}
	}
	return &ConfigError{Key: de.Name(), Message: msg}
}

// blockHook refuses a value that is not a block where the struct wants
// one (a struct or map field): mapstructure's own message names Go kinds
// and not the value.
func blockHook(f, t reflect.Type, data any) (any, error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if data == nil || (t.Kind() != reflect.Struct && t.Kind() != reflect.Map) || t == durationType {
		return data, nil
	}
	switch f.Kind() {
	case reflect.Map, reflect.Struct, reflect.Pointer, reflect.Interface:
		return data, nil
	case reflect.Slice:
		// A list of blocks merges into a map (weak decoding); into a
		// struct it cannot.
		if t.Kind() == reflect.Map {
			return data, nil
		}
	}
	return nil, &notBlock{value: data}
}

// notBlock is a value given where a block is expected.
type notBlock struct{ value any }

func (e *notBlock) Error() string {
	if l, ok := e.value.([]any); ok && len(l) > 1 && !slices.ContainsFunc(l, func(v any) bool { _, m := v.(map[string]any); return !m }) {
		return fmt.Sprintf("expected one block, got %d: write it once", len(l))
	}
	return "expected a block, got " + describeValue(e.value)
}

var durationType = reflect.TypeOf(time.Duration(0))

// durationHook decodes "30s" into a time.Duration. Anything else given for
// a duration (a number without a unit, true, a list) is a *badDuration,
// which keeps the value for the message: mapstructure would otherwise take
// a number as nanoseconds.
func durationHook(f, t reflect.Type, data any) (any, error) {
	if t != durationType || f == durationType {
		return data, nil
	}
	if _, isNumber := data.(json.Number); f.Kind() != reflect.String || isNumber {
		return nil, &badDuration{value: data}
	}
	s := reflect.ValueOf(data).String()
	d, err := time.ParseDuration(s)
	if err != nil {
		return nil, &badDuration{value: s, err: err}
	}
	return d, nil
}

// badDuration is a value given for a duration that is not one.
type badDuration struct {
	value any
	err   error
}

func (e *badDuration) Error() string { return e.message() }
func (e *badDuration) Unwrap() error { return e.err }

func (e *badDuration) message() string {
	const units = "(units: ns, us, ms, s, m, h)"
	switch v := e.value.(type) {
	case string:
		return fmt.Sprintf(`expected a duration such as "30s", got %q %s`, v, units)
	case json.Number, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, float32, float64:
		return fmt.Sprintf(`expected a duration such as "%vs", got the number %v: give it as a string with a unit %s`, v, v, units)
	}
	return fmt.Sprintf(`expected a duration such as "30s", got %s`, describeValue(e.value))
}

func describe(t reflect.Type) string {
	if t == durationType {
		return `a duration such as "30s"`
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number, 0 or more"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a block"
	case reflect.Pointer:
		return describe(t.Elem())
	}
	return t.Kind().String()
}

func describeValue(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("%q", v)
	case map[string]any:
		return "a block"
	case []any:
		return "a list"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%v", v)
}

// unknownKeys appends to errs every key of raw (in key order, depth first)
// that the struct type t has no field for, each naming the closest valid
// key.
func unknownKeys(raw map[string]any, t reflect.Type, prefix string, errs []error) []error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return errs
	}
	fields := structKeys(t)
	valid := make([]string, 0, len(fields))
	for k := range fields {
		valid = append(valid, k)
	}
	sort.Strings(valid)
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	_, remain := fields["\x00remain"]
	for _, k := range keys {
		ft, ok := fields[strings.ToLower(k)]
		if !ok && remain {
			continue
		}
		if !ok {
			errs = append(errs, &ConfigError{Key: prefix + k, Message: "unknown key" + suggestKey(k, valid)})
			continue
		}
		errs = nestedKeys(raw[k], ft, prefix+k, errs)
	}
	return errs
}

// nestedKeys appends to errs the unknown keys of a value against its field
// type: a block against a struct, each element of a list or map of blocks
// against the element type.
func nestedKeys(v any, t reflect.Type, path string, errs []error) []error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		if m, ok := v.(map[string]any); ok {
			return unknownKeys(m, t, path+".", errs)
		}
		if l, ok := v.([]any); ok {
			for i, e := range l {
				errs = nestedKeys(e, t, fmt.Sprintf("%s[%d]", path, i), errs)
			}
		}
	case reflect.Slice, reflect.Array:
		if l, ok := v.([]any); ok {
			for i, e := range l {
				errs = nestedKeys(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i), errs)
			}
		} else if m, ok := v.(map[string]any); ok {
			// One block where a list of blocks is expected.
			return nestedKeys(m, t.Elem(), path, errs)
		}
	case reflect.Map:
		if m, ok := v.(map[string]any); ok && t.Key().Kind() == reflect.String {
			labels := make([]string, 0, len(m))
			for k := range m {
				labels = append(labels, k)
			}
			sort.Strings(labels)
			for _, k := range labels {
				errs = nestedKeys(m[k], t.Elem(), path+"."+k, errs)
			}
		}
	}
	return errs
}

// structKeys maps the lower-cased key of each field of t (its mapstructure
// tag, or its name) to the field's type; squashed embedded structs, and
// those tagged ",squash", contribute their own fields; a ",remain" field
// accepts any key (then nothing is unknown, and no entry is made).
func structKeys(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("mapstructure")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		optList := strings.Split(opts, ",")
		if slices.Contains(optList, "remain") {
			out["\x00remain"] = f.Type
			continue
		}
		if f.Anonymous && (slices.Contains(optList, "squash") || name == "") {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && (slices.Contains(optList, "squash")) {
				for k, v := range structKeys(ft) {
					out[k] = v
				}
				continue
			}
		}
		if name == "" {
			name = f.Name
		}
		out[strings.ToLower(name)] = f.Type
	}
	return out
}

// suggestKey says which valid key name is probably meant: the closest by
// edit distance, when it is close enough; otherwise it lists them.
func suggestKey(name string, valid []string) string {
	best, bestDist := "", -1
	for _, v := range valid {
		if strings.HasPrefix(v, "\x00") {
			continue
		}
		d := editDistance(strings.ToLower(name), v)
		if bestDist < 0 || d < bestDist {
			best, bestDist = v, d
		}
	}
	if bestDist >= 0 && (bestDist <= 2 || bestDist <= len(name)/3) && bestDist < len(name) {
		return fmt.Sprintf("; did you mean %q?", best)
	}
	names := slices.DeleteFunc(slices.Clone(valid), func(s string) bool { return strings.HasPrefix(s, "\x00") })
	if len(names) == 0 {
		return "; this block takes no keys"
	}
	return "; valid keys are " + strings.Join(names, ", ")
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

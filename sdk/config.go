package sdk

import (
	"fmt"

	"github.com/go-viper/mapstructure/v2"
)

// Config is the plugin's `config` block from the host's config file.
type Config struct {
	raw map[string]any
}

// NewConfig wraps a config block given as plain Go values (for tests).
func NewConfig(m map[string]any) Config { return Config{raw: m} }

// Map returns the block as plain Go values (maps, slices, strings,
// json.Number for numbers, bools).
func (c Config) Map() map[string]any { return c.raw }

// Validator is implemented by config structs that check themselves after
// decoding; its error is reported like a decoding error.
type Validator interface {
	Validate() error
}

// Decode decodes the block into v, a pointer to the plugin's config struct,
// with mapstructure: fields match keys by their `mapstructure` tag (or
// case-insensitive name), "30s" decodes into a time.Duration, numbers into
// any numeric field, and a key the struct does not have is an error. Every
// error names the bad key. Then v.Validate() runs if v is a Validator.
func (c Config) Decode(v any) error {
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		Result:           v,
		ErrorUnused:      true,
		WeaklyTypedInput: true,
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.StringToSliceHookFunc(","),
		),
	})
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	raw := c.raw
	if raw == nil {
		raw = map[string]any{}
	}
	if err := dec.Decode(raw); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if val, ok := v.(Validator); ok {
		if err := val.Validate(); err != nil {
			return fmt.Errorf("config: %w", err)
		}
	}
	return nil
}

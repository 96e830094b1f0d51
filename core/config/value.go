package config

import (
	"fmt"
	"math"
	"math/big"
	"strconv"
	"time"

	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// value is one evaluated key on its way into a Config field. Its methods
// report a wrong type against the key and leave the field untouched, so the
// default stays in place and decoding goes on to find further problems.
//
// Conversions are HCL's usual ones (the string "128" is a number, the number
// 5 is a string) because env() only ever yields strings:
// max_batch = env("HERALD_MAX_BATCH", "128") has to work.
type value struct {
	d    *decoder
	path string
	attr *hclsyntax.Attribute
	val  cty.Value
}

func (v value) errorf(format string, args ...any) {
	v.d.errorf(v.attr.NameRange.Start, v.path, format, args...)
}

func (v value) to(ty cty.Type, want string) (cty.Value, bool) {
	out, err := convert.Convert(v.val, ty)
	if err != nil {
		v.errorf("must be %s (got %s)", want, describe(v.val))
		return cty.NilVal, false
	}
	return out, true
}

func (v value) str(dst *string) {
	if s, ok := v.to(cty.String, "a string"); ok {
		*dst = s.AsString()
	}
}

func (v value) boolean(dst *bool) {
	if b, ok := v.to(cty.Bool, "true or false"); ok {
		*dst = b.True()
	}
}

// strings decodes a list of strings, recording where each entry was written
// so that validation can point at a bad one.
func (v value) strings(dst *[]string) {
	l, ok := v.to(cty.List(cty.String), "a list of strings")
	if !ok {
		return
	}
	var elems []hclsyntax.Expression
	if tuple, isTuple := v.attr.Expr.(*hclsyntax.TupleConsExpr); isTuple && len(tuple.Exprs) == l.LengthInt() {
		elems = tuple.Exprs
	}
	out := make([]string, 0, l.LengthInt())
	bad := false
	for i, e := range l.AsValueSlice() {
		path := fmt.Sprintf("%s[%d]", v.path, i)
		pos := v.attr.NameRange.Start
		if elems != nil {
			pos = elems[i].Range().Start
		}
		v.d.pos[path] = pos
		if e.IsNull() {
			v.d.errorf(pos, path, "must be a string, not null")
			bad = true
			continue
		}
		out = append(out, e.AsString())
	}
	if bad {
		v.d.failed[v.path] = true
		return
	}
	*dst = out
}

// number returns the key's value as a number, which is never infinite
// (HCL numbers are arbitrary precision).
func (v value) number() (*big.Float, bool) {
	n, ok := v.to(cty.Number, "a number")
	if !ok {
		return nil, false
	}
	return n.AsBigFloat(), true
}

// whole returns the key's value as a whole number that fits in an int64.
func (v value) whole() (int64, bool) {
	n, ok := v.number()
	if !ok {
		return 0, false
	}
	if !n.IsInt() {
		v.errorf("must be a whole number (got %s)", formatNumber(n))
		return 0, false
	}
	i, acc := n.Int64()
	if acc != big.Exact {
		if n.Sign() < 0 {
			v.errorf("is too small (got %s): a whole number here is at least %d", formatNumber(n), int64(math.MinInt64))
		} else {
			v.errorf("is too large (got %s): a whole number here is at most %d", formatNumber(n), int64(math.MaxInt64))
		}
		return 0, false
	}
	return i, true
}

func (v value) int64(dst *int64) {
	if i, ok := v.whole(); ok {
		*dst = i
	}
}

func (v value) integer(dst *int) {
	i, ok := v.whole()
	if !ok {
		return
	}
	if i > math.MaxInt || i < math.MinInt {
		v.errorf("is too large (got %d): a whole number here is within ±%d", i, math.MaxInt)
		return
	}
	*dst = int(i)
}

func (v value) float(dst *float64) {
	n, ok := v.number()
	if !ok {
		return
	}
	f, _ := n.Float64()
	if math.IsInf(f, 0) {
		v.errorf("is too large (got %s): a number here is within ±1.8e308", n.Text('g', 4))
		return
	}
	*dst = f
}

func (v value) duration(dst *time.Duration) {
	const want = `a duration such as "30s", "2ms" or "10m"`
	s, ok := v.to(cty.String, want)
	if !ok {
		return
	}
	dur, err := time.ParseDuration(s.AsString())
	if err != nil {
		v.errorf("must be %s (got %q)", want, s.AsString())
		return
	}
	*dst = dur
}

// describe names a value's type for "got ..." in messages, with the value
// itself when it is short enough to help.
func describe(v cty.Value) string {
	if v.IsNull() {
		return "null"
	}
	ty := v.Type()
	switch {
	case ty == cty.String:
		s := v.AsString()
		if len(s) > 40 {
			s = s[:37] + "..."
		}
		return "string " + strconv.Quote(s)
	case ty == cty.Number:
		return "number " + formatNumber(v.AsBigFloat())
	case ty == cty.Bool:
		return "bool " + strconv.FormatBool(v.True())
	case ty.IsTupleType() || ty.IsListType() || ty.IsSetType():
		return "a list"
	case ty.IsObjectType() || ty.IsMapType():
		return "an object"
	default:
		return ty.FriendlyName()
	}
}

// plain converts an evaluated HCL value into the Go values mapstructure
// decodes: map[string]any, []any, string, bool, int64 for whole numbers
// that fit, float64 for the rest, and nil for null.
func plain(v cty.Value) any {
	if v.IsNull() || !v.IsKnown() {
		return nil
	}
	ty := v.Type()
	switch {
	case ty == cty.String:
		return v.AsString()
	case ty == cty.Bool:
		return v.True()
	case ty == cty.Number:
		n := v.AsBigFloat()
		if n.IsInt() {
			if i, acc := n.Int64(); acc == big.Exact {
				return i
			}
		}
		f, _ := n.Float64()
		return f
	case ty.IsTupleType() || ty.IsListType() || ty.IsSetType():
		out := make([]any, 0, v.LengthInt())
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			out = append(out, plain(e))
		}
		return out
	case ty.IsObjectType() || ty.IsMapType():
		out := make(map[string]any, v.LengthInt())
		for it := v.ElementIterator(); it.Next(); {
			k, e := it.Element()
			out[k.AsString()] = plain(e)
		}
		return out
	default:
		return nil
	}
}

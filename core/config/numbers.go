package config

import (
	"bytes"
	"math"
	"math/big"
	"strconv"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// HCL numbers have arbitrary precision, and turning one into decimal text
// (for a string, a template or a message) costs time that grows with its
// exponent: 1e10000000 takes seconds, 1e400000000 minutes. No config needs
// numbers beyond ±1e1000, so such literals are refused before HCL ever parses
// them, and evaluated values are checked again in case arithmetic got there.
const maxMagnitude = 1000

// hugeLiteral is a literal hugeLiterals found: its problem, where its bytes
// are, and whether a key's evaluation reported it (with the key's path).
type hugeLiteral struct {
	diag       Diagnostic
	start, end int // byte offsets in the source
	reported   bool
}

const outOfRange = "number out of range: keep numbers within ±1e1000"

// hugeLiterals reports number literals (and strings that read as numbers,
// since HCL converts those too) whose decimal magnitude exceeds maxMagnitude.
func hugeLiterals(src []byte, filename string) []*hugeLiteral {
	tokens, _ := hclsyntax.LexConfig(src, filename, hcl.InitialPos)
	var out []*hugeLiteral
	for _, tok := range tokens {
		switch tok.Type {
		case hclsyntax.TokenNumberLit, hclsyntax.TokenQuotedLit, hclsyntax.TokenStringLit:
		default:
			continue
		}
		if mag, ok := decimalMagnitude(tok.Bytes); ok && (mag > maxMagnitude || mag < -maxMagnitude) {
			out = append(out, &hugeLiteral{
				diag: Diagnostic{
					Filename: filename,
					Line:     tok.Range.Start.Line,
					Column:   tok.Range.Start.Column,
					Message:  outOfRange,
				},
				start: tok.Range.Start.Byte,
				end:   tok.Range.End.Byte,
			})
		}
	}
	return out
}

// maskHuge returns a copy of src whose huge literals read "0" (padded with
// spaces, so that every position stays where it was): HCL then parses the
// rest of the file cheaply, and each key that held one reports it with its
// path (decoder.eval), beside the file's other problems.
func maskHuge(src []byte, huge []*hugeLiteral) []byte {
	if len(huge) == 0 {
		return src
	}
	out := bytes.Clone(src)
	for _, h := range huge {
		out[h.start] = '0'
		for i := h.start + 1; i < h.end; i++ {
			out[i] = ' '
		}
	}
	return out
}

// decimalMagnitude returns the exponent the number that s spells would have
// in scientific notation (2 for 420, -3 for 0.0015), reading HCL's syntax (digits, an optional fraction, an optional exponent),
// in time linear in len(s). ok is false when s is not such a number.
func decimalMagnitude(s []byte) (mag int, ok bool) {
	i := 0
	if i < len(s) && (s[i] == '-' || s[i] == '+') {
		i++
	}
	first := -1 // position of the first non-zero digit, counted from the point
	digits, point := 0, 0
	seenPoint := false
	for ; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			digits++
			if !seenPoint {
				point++
			}
			if c != '0' && first < 0 {
				first = digits
			}
			continue
		case c == '.' && !seenPoint:
			seenPoint = true
			continue
		}
		break
	}
	if digits == 0 {
		return 0, false
	}
	exp := 0
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		sign := 1
		if i < len(s) && (s[i] == '-' || s[i] == '+') {
			if s[i] == '-' {
				sign = -1
			}
			i++
		}
		start := i
		for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
			if exp < math.MaxInt32 {
				exp = exp*10 + int(s[i]-'0')
			}
		}
		if i == start {
			return 0, false
		}
		exp *= sign
	}
	if i != len(s) {
		return 0, false
	}
	if first < 0 {
		return 0, true // zero, however it is written
	}
	return point - first + exp, true
}

// hugeNumber finds a number in v whose magnitude exceeds maxMagnitude.
func hugeNumber(v cty.Value) bool {
	if v.IsNull() || !v.IsKnown() {
		return false
	}
	ty := v.Type()
	switch {
	case ty == cty.Number:
		n := v.AsBigFloat()
		if n.IsInf() || n.Sign() == 0 {
			return false
		}
		// 3322 bits is about 1000 decimal digits.
		exp := n.MantExp(nil)
		return exp > 3322 || exp < -3322
	case ty.IsTupleType() || ty.IsListType() || ty.IsSetType() || ty.IsObjectType() || ty.IsMapType():
		for it := v.ElementIterator(); it.Next(); {
			if _, e := it.Element(); hugeNumber(e) {
				return true
			}
		}
	}
	return false
}

// formatNumber renders a number for a message without the cost of exact
// decimal conversion.
func formatNumber(n *big.Float) string {
	if n.IsInf() {
		return n.String()
	}
	f, _ := n.Float64()
	if math.IsInf(f, 0) {
		return "a number beyond ±1.8e308"
	}
	return strconv.FormatFloat(f, 'g', 10, 64)
}

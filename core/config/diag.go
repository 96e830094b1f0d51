package config

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// Diagnostic is one problem found in a config file.
//
// Its String form is what `herald validate` prints:
//
//	config.hcl:12:3: limits.max_batch: must be at least 1 (got 0)
type Diagnostic struct {
	Filename string
	Line     int // 1-based
	Column   int // 1-based, in characters
	// Path names the key or block the problem is about, such as
	// "limits.max_batch", "auth.api_keys[1]" or "plugin.chat.command".
	// It is empty for syntax errors, which belong to no key.
	Path string
	// Message says what is wrong and, where it can, what to write instead.
	Message string
}

func (d Diagnostic) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:%d:%d: ", d.Filename, d.Line, d.Column)
	if d.Path != "" {
		b.WriteString(d.Path)
		b.WriteString(": ")
	}
	b.WriteString(d.Message)
	return b.String()
}

// Diagnostics is every problem found in a config file, in the order they
// appear in it. Parse and Load return it as their error so that a caller can
// print each problem on its own line:
//
//	var diags config.Diagnostics
//	if errors.As(err, &diags) {
//		for _, d := range diags {
//			fmt.Println(d)
//		}
//	}
type Diagnostics []Diagnostic

// Error prints one line per problem.
func (ds Diagnostics) Error() string {
	lines := make([]string, len(ds))
	for i, d := range ds {
		lines[i] = d.String()
	}
	return strings.Join(lines, "\n")
}

// sort orders the problems by position so that the report reads top to
// bottom like the file; problems at the same position keep the order in which
// they were found.
func (ds Diagnostics) sort() {
	slices.SortStableFunc(ds, func(a, b Diagnostic) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
}

// fromHCL turns HCL's own diagnostics (syntax errors, evaluation errors) into
// ours. fallback is the position used when HCL gives none.
func fromHCL(hd hcl.Diagnostics, filename, path string, fallback hcl.Pos) Diagnostics {
	var out Diagnostics
	for _, d := range hd {
		if d.Severity != hcl.DiagError {
			continue
		}
		pos := fallback
		if d.Subject != nil {
			pos = d.Subject.Start
		}
		out = append(out, Diagnostic{
			Filename: filename,
			Line:     pos.Line,
			Column:   pos.Column,
			Path:     path,
			Message:  hclMessage(d),
		})
	}
	return out
}

// hclMessage prefers the error of a function we implement (env) over HCL's
// generic wrapping of it, which would only repeat the message less clearly.
func hclMessage(d *hcl.Diagnostic) string {
	if extra, ok := hcl.DiagnosticExtra[interface{ FunctionCallError() error }](d); ok {
		if err := extra.FunctionCallError(); err != nil {
			return err.Error()
		}
	}
	msg := d.Summary
	if d.Detail != "" {
		msg += ": " + strings.TrimSuffix(d.Detail, ".")
	}
	return msg
}

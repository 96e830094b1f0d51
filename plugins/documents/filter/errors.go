package filter

import (
	"errors"
	"fmt"
)

// ErrTooComplex is wrapped by the errors returned for filters that exceed
// Options.MaxConditions or Options.MaxTerms.
var ErrTooComplex = errors.New("filter too complex")

// ParseError reports an invalid filter. Path names the offending clause,
// with array positions: "and[1].range.age".
type ParseError struct {
	Path string
	Msg  string
	Err  error // wrapped cause, if any
}

func (e *ParseError) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

func (e *ParseError) Unwrap() error { return e.Err }

func perr(path, format string, args ...any) *ParseError {
	return &ParseError{Path: path, Msg: fmt.Sprintf(format, args...)}
}

func joinPath(path, leaf string) string {
	if path == "" {
		return leaf
	}
	return path + "." + leaf
}

func indexPath(path string, i int) string {
	return fmt.Sprintf("%s[%d]", path, i)
}

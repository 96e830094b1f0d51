package server

import (
	"iter"
	"slices"
)

// chanSetFew is how many channels a chanSet holds in a slice before it
// moves them to a map.
const chanSetFew = 8

// chanSet is the set of channels a session is subscribed to. Most
// connections hold one or a few, and an idle connection keeps its set for
// its life: up to chanSetFew channels are a slice searched in order (16
// bytes for one channel, where a map took ~190), more a map. The zero value
// is empty. The session's mutex guards it.
type chanSet struct {
	few  []string
	many map[string]struct{} // non-nil once the set outgrew few; few is nil then
}

func (c *chanSet) has(ch string) bool {
	if c.many != nil {
		_, ok := c.many[ch]
		return ok
	}
	return slices.Contains(c.few, ch)
}

// add puts ch in the set; it does nothing if ch is there already.
func (c *chanSet) add(ch string) {
	switch {
	case c.has(ch):
	case c.many != nil:
		c.many[ch] = struct{}{}
	case len(c.few) < chanSetFew:
		c.few = append(c.few, ch)
	default:
		c.many = make(map[string]struct{}, 2*chanSetFew)
		for _, f := range c.few {
			c.many[f] = struct{}{}
		}
		c.many[ch] = struct{}{}
		c.few = nil
	}
}

// remove takes ch out of the set and reports whether it was there.
func (c *chanSet) remove(ch string) bool {
	if c.many != nil {
		_, ok := c.many[ch]
		delete(c.many, ch)
		return ok
	}
	i := slices.Index(c.few, ch)
	if i < 0 {
		return false
	}
	last := len(c.few) - 1
	c.few[i] = c.few[last]
	c.few[last] = "" // the slice's array must not keep the name alive
	c.few = c.few[:last]
	if last == 0 {
		c.few = nil
	}
	return true
}

func (c *chanSet) len() int {
	if c.many != nil {
		return len(c.many)
	}
	return len(c.few)
}

// all yields the channels in no particular order; the set must not change
// while it runs.
func (c *chanSet) all() iter.Seq[string] {
	return func(yield func(string) bool) {
		if c.many != nil {
			for ch := range c.many {
				if !yield(ch) {
					return
				}
			}
			return
		}
		for _, ch := range c.few {
			if !yield(ch) {
				return
			}
		}
	}
}

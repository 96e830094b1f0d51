// Package filter is the realtime filter engine of the documents plugin:
// Kuzzle's Koncorde 4.x filter language (equals, in, exists, missing,
// range, regexp, ids, geoBoundingBox, geoDistance, geoDistanceRange,
// geoPolygon, match, select, nothing, and, or, not, bool), with the same
// verdict as Koncorde for every filter and document.
//
// It owns: parsing and validating filters (errors name the clause by its
// path), normalizing them to a canonical form so that equivalent filters
// share an ID, storing them with shared terms and conditions, and testing
// documents against all of them through indexes rather than one by one.
//
// It must not know about subscriptions, rooms, channels, scopes or
// notifications: the plugin maps its rooms onto filter IDs. One Engine
// serves one index/collection.
//
// Koncorde's semantics are the specification, including the surprising
// ones (see README.md): its source was read, never copied, and the
// differential test (koncorde_test.go) runs the real Koncorde from npm on
// thousands of generated cases.
package filter

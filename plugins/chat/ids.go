package main

import (
	"encoding/json"
	"regexp"
)

// Ids. Unichat's ids are numbers ("id":87) while Herald's users come from
// token subjects, which are strings. The plugin keeps every user and group
// id in one canonical text form and writes it back in JSON as a number when
// it looks like one (decimal, no leading zero, at most 15 digits so that a
// JavaScript client reads it exactly) and as a string otherwise. So token
// sub "87", backend user_id 87 and backend user_id "87" are one user,
// always written 87.

const maxIDLen = 128

var numericID = regexp.MustCompile(`^(0|[1-9][0-9]{0,14})$`)

// jsonID is an id as it appears in emitted objects.
func jsonID(id string) any {
	if numericID.MatchString(id) {
		return json.Number(id)
	}
	return id
}

// validID says whether s can be an id: printable ASCII without spaces (it
// ends up in channel names), 1 to maxIDLen bytes.
func validID(s string) bool {
	if s == "" || len(s) > maxIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

const idRule = "must be an integer from 0 to 999999999999999 or a string of 1 to 128 printable ASCII characters without spaces"

// parseID reads an id given in JSON as a number or a string.
func parseID(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 {
		return "", false
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil || !validID(s) {
			return "", false
		}
		return s, true
	}
	s := string(raw)
	return s, numericID.MatchString(s)
}

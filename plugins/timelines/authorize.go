package main

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/heraldhq/herald/sdk"
)

// Permission rules, checked at subscribe time only (the source: "the access
// token is only verified at the moment of subscription"), from the token's
// claims as DOMAINS.md fixes them:
//
//	sub       the user's global EID (alerts, messages, news)
//	networks  {"<networkEID>": {"user": "<userEID in that network>",
//	          "permissions": ["view_readers", ...], "admin_of": ["<groupEID>", ...]}}
//
// and the grants the backend recorded (grant / revoke).

// membership is one entry of the networks claim.
type membership struct {
	user        string
	permissions []string
	adminOf     []string
}

// networksClaim reads the networks claim; a malformed one is an error that
// says what is wrong.
func networksClaim(claims map[string]any) (map[string]membership, error) {
	raw, ok := claims["networks"]
	if !ok || raw == nil {
		return nil, nil
	}
	m, ok := raw.(map[string]any)
	if !ok {
		return nil, fmt.Errorf(`the token's "networks" claim must be an object of networkEID -> {user, permissions, admin_of}`)
	}
	out := make(map[string]membership, len(m))
	for n, v := range m {
		e, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf(`the token's networks[%q] must be an object {user, permissions, admin_of}`, n)
		}
		var mb membership
		if mb.user, ok = e["user"].(string); !ok || !validEID(mb.user) {
			return nil, fmt.Errorf(`the token's networks[%q].user must be the user's EID in that network`, n)
		}
		var err error
		if mb.permissions, err = stringList(e["permissions"]); err != nil {
			return nil, fmt.Errorf(`the token's networks[%q].permissions %w`, n, err)
		}
		if mb.adminOf, err = stringList(e["admin_of"]); err != nil {
			return nil, fmt.Errorf(`the token's networks[%q].admin_of %w`, n, err)
		}
		out[n] = mb
	}
	return out, nil
}

// stringList reads an optional array of strings.
func stringList(v any) ([]string, error) {
	if v == nil {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("must be an array of strings")
	}
	out := make([]string, len(list))
	for i, x := range list {
		s, ok := x.(string)
		if !ok {
			return nil, fmt.Errorf("must be an array of strings")
		}
		out[i] = s
	}
	return out, nil
}

// Authorize implements sdk.Authorizer.
func (p *Timelines) Authorize(ctx context.Context, c sdk.Caller, channels []string) ([]sdk.Refusal, error) {
	var refused []sdk.Refusal
	for _, name := range channels {
		if r := p.check(ctx, c.UserID, c.Claims, name); r != nil {
			refused = append(refused, *r)
		}
	}
	return refused, nil
}

// check applies the rules to one channel; nil means allowed. A grant that
// cannot be read is a refusal with unreadable's code.
func (p *Timelines) check(ctx context.Context, user string, claims map[string]any, name string) *sdk.Refusal {
	ch, err := parseChannel(name)
	if err != nil {
		return &sdk.Refusal{Channel: name, Code: sdk.CodeInvalidParams, Reason: err.Error()}
	}
	deny := func(format string, args ...any) *sdk.Refusal {
		r := sdk.Refuse(name, fmt.Sprintf(format, args...))
		return &r
	}
	if user == "" {
		return deny("timelines channels need a signed-in user")
	}
	if ch.network == "" { // alerts, messages, news: the global user EID
		if ch.ids[0] != user {
			return deny("%s channels are the user's own: subscribe to %s:%s", ch.kind.name, ch.kind.name, user)
		}
		return nil
	}
	networks, err := networksClaim(claims)
	if err != nil {
		return deny("%v", err)
	}
	mb, ok := networks[ch.network]
	if !ok {
		return deny("network %s is not in the token's networks claim", ch.network)
	}
	switch ch.kind.name {
	case "my_memberships":
		if ch.ids[0] != mb.user {
			return deny("my_memberships channels are the user's own: subscribe to my_memberships:%s:%s", mb.user, ch.network)
		}
	case "message_readers":
		if slices.Contains(mb.permissions, rightViewReaders) {
			return nil
		}
		ok, err := p.grants.Has(ctx, grant{Network: ch.network, User: mb.user, Right: rightViewReaders, Object: ch.ids[0]})
		if err != nil {
			return unreadable(name, err)
		}
		if !ok {
			return deny("reading who read message %s needs the view_readers permission (network-wide in the token, or granted for the message)", ch.ids[0])
		}
	case "group_admin_memberships":
		if slices.Contains(mb.adminOf, ch.ids[0]) {
			return nil
		}
		ok, err := p.grants.Has(ctx, grant{Network: ch.network, User: mb.user, Right: rightAdmin, Object: ch.ids[0]})
		if err != nil {
			return unreadable(name, err)
		}
		if !ok {
			return deny("group_admin_memberships is for admins of group %s (admin_of in the token, or the admin role granted)", ch.ids[0])
		}
	}
	return nil
}

// unreadable refuses channel because its grant could not be read: -32050,
// retry later, when the state cannot be reached (in a cluster, NATS), else
// an internal error.
func unreadable(channel string, err error) *sdk.Refusal {
	if errors.Is(err, sdk.ErrStateUnavailable) {
		return &sdk.Refusal{Channel: channel, Code: sdk.CodePluginUnavailable, Reason: err.Error() + ": retry later"}
	}
	return &sdk.Refusal{Channel: channel, Code: sdk.CodeInternal, Reason: err.Error()}
}

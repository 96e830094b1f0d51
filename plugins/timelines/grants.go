package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/heraldhq/herald/sdk"
)

// grant is one right the backend recorded for a user of a network:
// view_readers on a message, or the admin role of a group.
type grant struct {
	Network string // networkEID
	User    string // the user's EID in that network
	Right   string // rightViewReaders or rightAdmin
	Object  string // the messageEID (view_readers) or groupEID (admin)
}

const (
	rightViewReaders = "view_readers" // granted per message: `permission`
	rightAdmin       = "admin"        // granted per group: `role`
)

// channel is the channel the grant opens.
func (g grant) channel() string {
	kind := "message_readers"
	if g.Right == rightAdmin {
		kind = "group_admin_memberships"
	}
	return kind + ":" + g.Object + ":" + g.Network
}

// grants is where the plugin keeps the backend's grants: its only state
// that outlives a process, and the only one its processes on several
// nodes share.
type grants interface {
	// Set records g (on) or removes it (off) and says whether that changed
	// anything.
	Set(ctx context.Context, g grant, on bool) (changed bool, err error)
	Has(ctx context.Context, g grant) (bool, error)
}

// stateGrants keeps the grants in the plugin's sdk.State: on one node a
// file under Herald's `state` block (state.dir), in a cluster a JetStream key-value bucket
// shared by the timelines processes of every node. One key per grant,
//
//	grants/<right>/<network>/<user>/<object>
//
// each EID through sdk.KeySegment (escaped, so reversible: grantOfKey;
// an EID too long for a segment is hashed, its key cannot be read back,
// and a revoke of it makes the other nodes check every grant-based
// subscription they hold), the value "1". A grant is a key's
// existence: granting is Create (of two grants through two nodes one says
// granted), revoking is Delete, and every write is durable when it
// returns, so a grant answered to the backend survives a kill -9 and is
// seen at once by the next subscribe on any node.
type stateGrants struct {
	st     sdk.State
	closed atomic.Bool
}

var _ grants = (*stateGrants)(nil)

const grantsRoot = "grants/"

var errClosed = sdk.Errorf(sdk.CodePluginUnavailable, "timelines plugin is stopping: retry later")

func (g grant) key() string {
	return grantsRoot + g.Right + "/" + sdk.KeySegment(g.Network) + "/" + sdk.KeySegment(g.User) + "/" + sdk.KeySegment(g.Object)
}

// grantOfKey reads a grant back from its key; false when it cannot (a
// hashed EID, or a key that is not a grant's).
func grantOfKey(key string) (grant, bool) {
	rest, ok := strings.CutPrefix(key, grantsRoot)
	if !ok {
		return grant{}, false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 4 || (parts[0] != rightViewReaders && parts[0] != rightAdmin) {
		return grant{}, false
	}
	g := grant{Right: parts[0]}
	for _, f := range []struct {
		dst *string
		seg string
	}{{&g.Network, parts[1]}, {&g.User, parts[2]}, {&g.Object, parts[3]}} {
		if *f.dst, ok = sdk.ParseKeySegment(f.seg); !ok {
			return grant{}, false
		}
	}
	return g, true
}

func (s *stateGrants) check() error {
	if s.closed.Load() {
		return errClosed
	}
	return nil
}

func (s *stateGrants) Set(ctx context.Context, g grant, on bool) (bool, error) {
	if err := s.check(); err != nil {
		return false, err
	}
	if on {
		_, err := s.st.Create(ctx, g.key(), []byte("1"))
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, sdk.ErrConflict):
			return false, nil // granted already
		default:
			return false, fmt.Errorf("save %s grant: %w", g.Right, err)
		}
	}
	e, err := s.st.Get(ctx, g.key())
	if errors.Is(err, sdk.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s grant: %w", g.Right, err)
	}
	// At the revision read: two revokes through two nodes at once may both
	// delete it; the grant is gone either way.
	if err := s.st.Delete(ctx, g.key(), e.Revision); err != nil && !errors.Is(err, sdk.ErrConflict) {
		return false, fmt.Errorf("delete %s grant: %w", g.Right, err)
	}
	return true, nil
}

func (s *stateGrants) Has(ctx context.Context, g grant) (bool, error) {
	if err := s.check(); err != nil {
		return false, err
	}
	_, err := s.st.Get(ctx, g.key())
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, sdk.ErrNotFound):
		return false, nil
	default:
		return false, fmt.Errorf("read %s grant: %w", g.Right, err)
	}
}

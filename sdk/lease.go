package sdk

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Lease is a State key that one process at a time holds: the way to have a
// single writer of something among a plugin's processes on several nodes.
// It expires ttl after its last renewal, so a process that dies holding it
// frees it within ttl. Between renewals the holder must allow for its own
// pauses: do not start work that must finish under the lease later than
// ttl/2 after the last successful Renew.
type Lease struct {
	state  State
	key    string
	holder []byte
	ttl    time.Duration
	rev    uint64
}

// ErrLeaseHeld is returned by AcquireLease when another process holds the key.
var ErrLeaseHeld = errors.New("lease held by another process")

// AcquireLease takes key for holder (any name that identifies this process
// in logs) for ttl (at least one second). It fails with ErrLeaseHeld,
// wrapped with the current holder's name, while another holds it.
func AcquireLease(ctx context.Context, st State, key, holder string, ttl time.Duration) (*Lease, error) {
	rev, err := st.Create(ctx, key, []byte(holder), WithTTL(ttl))
	if errors.Is(err, ErrConflict) {
		cur, gerr := st.Get(ctx, key)
		if gerr == nil {
			return nil, fmt.Errorf("lease %q: %w (%s)", key, ErrLeaseHeld, cur.Value)
		}
		return nil, fmt.Errorf("lease %q: %w", key, ErrLeaseHeld)
	}
	if err != nil {
		return nil, fmt.Errorf("lease %q: %w", key, err)
	}
	return &Lease{state: st, key: key, holder: []byte(holder), ttl: ttl, rev: rev}, nil
}

// Renew extends the lease by its ttl. ErrConflict or ErrNotFound (wrapped)
// mean it was lost: it expired and someone else may hold it.
func (l *Lease) Renew(ctx context.Context) error {
	rev, err := l.state.Update(ctx, l.key, l.holder, l.rev, WithTTL(l.ttl))
	if err != nil {
		return fmt.Errorf("renew lease %q: %w", l.key, err)
	}
	l.rev = rev
	return nil
}

// Release gives the lease up at once (if still held).
func (l *Lease) Release(ctx context.Context) error {
	if err := l.state.Delete(ctx, l.key, l.rev); err != nil && !errors.Is(err, ErrConflict) {
		return fmt.Errorf("release lease %q: %w", l.key, err)
	}
	return nil
}

// Keep renews the lease every ttl/3 until ctx ends (then it releases it and
// returns nil) or the lease is lost (it returns the error). A renewal that
// fails for another reason (the store briefly unavailable) is retried at
// the next tick while the lease may still be valid.
func (l *Lease) Keep(ctx context.Context) error {
	t := time.NewTicker(l.ttl / 3)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			rctx, cancel := context.WithTimeout(context.Background(), l.ttl)
			defer cancel()
			return l.Release(rctx)
		case <-t.C:
		}
		err := l.Renew(ctx)
		switch {
		case err == nil:
			last = time.Now()
		case errors.Is(err, ErrConflict), errors.Is(err, ErrNotFound):
			return err
		case time.Since(last) >= l.ttl:
			return fmt.Errorf("lease %q lost: not renewed for %v: %w", l.key, l.ttl, err)
		}
	}
}

package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	pluginpb "github.com/heraldhq/herald/sdk/proto"
)

// stateClient is the State a plugin gets: every call goes to the host,
// which keeps the plugin's store (see State).
type stateClient struct {
	client pluginpb.HostClient
}

func (h *host) State() State { return &stateClient{client: h.client} }

// stateErr turns a reply's status into the State errors.
func stateErr(op, key string, st pluginpb.StateStatus, msg string) error {
	var base error
	switch st {
	case pluginpb.StateStatus_STATE_OK:
		return nil
	case pluginpb.StateStatus_STATE_NOT_FOUND:
		base = ErrNotFound
	case pluginpb.StateStatus_STATE_CONFLICT:
		base = ErrConflict
	case pluginpb.StateStatus_STATE_NO_STATE:
		base = ErrNoState
	case pluginpb.StateStatus_STATE_TOO_LARGE:
		base = ErrStateTooLarge
	case pluginpb.StateStatus_STATE_UNAVAILABLE:
		base = ErrStateUnavailable
	default:
		base = ErrStateInvalid
	}
	return &stateError{text: stateErrText(op, key, base, msg), base: base}
}

// stateErrText says what failed once. Herald's message is already the
// whole error ("state create \"a/b\": state: revision conflict"): it is
// shown as it is, with the operation in front if it lacks it. A message
// that only adds detail ("key exists") follows the error in parentheses.
func stateErrText(op, key string, base error, msg string) string {
	what := fmt.Sprintf("state %s %q", op, key)
	switch {
	case msg == "":
		return what + ": " + base.Error()
	case strings.Contains(msg, base.Error()):
		if strings.HasPrefix(msg, what+":") {
			return msg
		}
		return what + ": " + msg
	}
	return fmt.Sprintf("%s: %s (%s)", what, base, msg)
}

// stateError is a State error: its text, and the sentinel errors.Is finds.
type stateError struct {
	text string
	base error
}

func (e *stateError) Error() string { return e.text }
func (e *stateError) Unwrap() error { return e.base }

var (
	// ErrStateTooLarge: the value is over MaxStateValue, or the plugin's
	// store is full.
	ErrStateTooLarge = errors.New("state: over its size bound")
	// ErrStateUnavailable: the store cannot be reached now (in a cluster,
	// NATS is down); retry later.
	ErrStateUnavailable = errors.New("state: store unavailable")
	// ErrStateInvalid: a bad key or prefix, or a TTL under one second.
	ErrStateInvalid = errors.New("state: invalid request")
)

func (s *stateClient) Get(ctx context.Context, key string) (Entry, error) {
	r, err := s.client.StateGet(ctx, &pluginpb.StateGetRequest{Key: key})
	if err != nil {
		return Entry{}, fmt.Errorf("state get %q: %w", key, err)
	}
	if err := stateErr("get", key, r.GetStatus(), r.GetMessage()); err != nil {
		return Entry{}, err
	}
	e := r.GetEntry()
	return Entry{Key: e.GetKey(), Value: e.GetValue(), Revision: e.GetRevision()}, nil
}

func (s *stateClient) write(ctx context.Context, op string, req *pluginpb.StateWriteRequest, opts []WriteOption) (uint64, error) {
	var o WriteOptions
	for _, f := range opts {
		f(&o)
	}
	if o.TTL > 0 {
		req.TtlMs = o.TTL.Milliseconds()
		if o.TTL < time.Second {
			return 0, fmt.Errorf("state %s %q: %w (ttl %v is under one second)", op, req.Key, ErrStateInvalid, o.TTL)
		}
	}
	r, err := s.client.StateWrite(ctx, req)
	if err != nil {
		return 0, fmt.Errorf("state %s %q: %w", op, req.Key, err)
	}
	if err := stateErr(op, req.Key, r.GetStatus(), r.GetMessage()); err != nil {
		return 0, err
	}
	return r.GetEntry().GetRevision(), nil
}

func (s *stateClient) Put(ctx context.Context, key string, value []byte, opts ...WriteOption) (uint64, error) {
	return s.write(ctx, "put", &pluginpb.StateWriteRequest{Key: key, Value: value}, opts)
}

func (s *stateClient) Create(ctx context.Context, key string, value []byte, opts ...WriteOption) (uint64, error) {
	return s.write(ctx, "create", &pluginpb.StateWriteRequest{Key: key, Value: value, Mode: pluginpb.StateWriteRequest_CREATE}, opts)
}

func (s *stateClient) Update(ctx context.Context, key string, value []byte, rev uint64, opts ...WriteOption) (uint64, error) {
	return s.write(ctx, "update", &pluginpb.StateWriteRequest{Key: key, Value: value, Mode: pluginpb.StateWriteRequest_UPDATE, Revision: rev}, opts)
}

func (s *stateClient) Delete(ctx context.Context, key string, rev uint64) error {
	r, err := s.client.StateDelete(ctx, &pluginpb.StateDeleteRequest{Key: key, Revision: rev})
	if err != nil {
		return fmt.Errorf("state delete %q: %w", key, err)
	}
	return stateErr("delete", key, r.GetStatus(), r.GetMessage())
}

func (s *stateClient) List(ctx context.Context, prefix string) ([]Entry, error) {
	stream, err := s.client.StateList(ctx, &pluginpb.StateListRequest{Prefix: prefix})
	if err != nil {
		return nil, fmt.Errorf("state list %q: %w", prefix, err)
	}
	var out []Entry
	for {
		c, err := stream.Recv()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("state list %q: %w", prefix, err)
		}
		if err := stateErr("list", prefix, c.GetStatus(), c.GetMessage()); err != nil {
			return nil, err
		}
		for _, e := range c.GetEntries() {
			out = append(out, Entry{Key: e.GetKey(), Value: e.GetValue(), Revision: e.GetRevision()})
		}
	}
}

func (s *stateClient) Watch(ctx context.Context, prefix string, f func(Change)) error {
	stream, err := s.client.StateWatch(ctx, &pluginpb.StateWatchRequest{Prefix: prefix})
	if err != nil {
		return fmt.Errorf("state watch %q: %w", prefix, err)
	}
	for {
		c, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err == io.EOF {
				return fmt.Errorf("state watch %q: ended by the host", prefix)
			}
			return fmt.Errorf("state watch %q: %w", prefix, err)
		}
		if err := stateErr("watch", prefix, c.GetStatus(), c.GetMessage()); err != nil {
			return err
		}
		e := c.GetEntry()
		f(Change{Entry: Entry{Key: e.GetKey(), Value: e.GetValue(), Revision: e.GetRevision()}, Deleted: c.GetDeleted(), Reset: c.GetReload()})
	}
}

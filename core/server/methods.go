package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/heraldhq/herald/core/broker"
	"github.com/heraldhq/herald/core/hub"
	"github.com/heraldhq/herald/core/pluginhost"
	"github.com/heraldhq/herald/core/rpc"
)

func invalidParams(format string, args ...any) *rpc.Error {
	return rpc.Errorf(rpc.CodeInvalidParams, "invalid params: "+format, args...)
}

// decodeParams decodes a core method's params, an object, into v, a
// pointer to a struct whose fields' JSON names the params' members must
// spell exactly: encoding/json alone would take "Channels" for "channels".
func decodeParams(params json.RawMessage, v any) *rpc.Error {
	if len(params) == 0 || string(params) == "null" {
		return nil
	}
	if params[0] != '{' {
		return invalidParams("params must be an object")
	}
	if err := checkMembers("", params, membersOf(reflect.TypeOf(v).Elem())); err != nil {
		return err
	}
	if err := json.Unmarshal(params, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			if entryOfArray(reflect.TypeOf(v), te.Field, te.Type) {
				return invalidParams("each entry of %s must be %s, not %s", te.Field, jsonKind(te.Type.Kind().String()), te.Value)
			}
			return invalidParams("%s must be %s, not %s", te.Field, jsonKind(te.Type.Kind().String()), te.Value)
		}
		return invalidParams("%v", err)
	}
	return nil
}

// paramsMembers caches membersOf, per params type.
var paramsMembers sync.Map // reflect.Type -> []string

// membersOf lists the JSON names of the fields of the struct type t, those
// of embedded structs included: the members its params may have.
func membersOf(t reflect.Type) []string {
	if names, ok := paramsMembers.Load(t); ok {
		return names.([]string)
	}
	var names []string
	for _, f := range reflect.VisibleFields(t) {
		if f.Anonymous || !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		names = append(names, name)
	}
	paramsMembers.Store(t, names)
	return names
}

// checkMembers refuses an object (obj, valid JSON) with a member that
// differs only in case from one of names, naming it: encoding/json would
// take it for that member. where names the object in the params
// ("since.news"; "" for the params themselves). Other unknown members are
// ignored, as the envelope's are, so that a client written for a later
// Herald keeps working.
func checkMembers(where string, obj json.RawMessage, names []string) *rpc.Error {
	name, meant, found := rpc.MiscasedMember(obj, names...)
	if !found {
		return nil
	}
	of := ""
	if where != "" {
		of = " of " + where
	}
	return invalidParams("member %q%s is not %q: member names are case-sensitive", name, of, meant)
}

// entryOfArray reports whether a type error at field (its path of JSON
// names, as encoding/json gives it: "client.name") of the params type t,
// which wanted a value of type want, is about an entry of an array: the
// field is an array, and want is not the array's type.
func entryOfArray(t reflect.Type, field string, want reflect.Type) bool {
	deref := func(t reflect.Type) reflect.Type {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Map {
			t = t.Elem() // a map's keys are not in the path
		}
		return t
	}
	for _, name := range strings.Split(field, ".") {
		t = deref(t)
		if t.Kind() != reflect.Struct {
			return false
		}
		found := false
		for _, f := range reflect.VisibleFields(t) {
			tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if tag == name || tag == "" && strings.EqualFold(f.Name, name) {
				t, found = f.Type, true
				break
			}
		}
		if !found {
			return false
		}
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) && t != want
}

func jsonKind(goKind string) string {
	switch goKind {
	case "uint", "uint8", "uint16", "uint32", "uint64":
		return "a non-negative integer"
	case "int", "int8", "int16", "int32", "int64":
		return "an integer"
	case "string":
		return "a string"
	case "slice":
		return "an array"
	case "struct", "map":
		return "an object"
	case "bool":
		return "a boolean"
	case "ptr", "interface":
		return "a different type"
	}
	return "a number"
}

func marshalResult(v any) ([]byte, *rpc.Error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, rpc.Errorf(rpc.CodeInternal, "internal error: encode result: %v", err)
	}
	return b, nil
}

type helloParams struct {
	Token    string          `json:"token"`
	Methods  *[]string       `json:"methods"`
	Client   json.RawMessage `json:"client"`
	Volatile json.RawMessage `json:"volatile"`
}

// check refuses what decoding lets through: a client that is not
// {name, version} (herald keeps nothing of it, but a client that sends
// something else has a bug worth telling), and an empty method name.
func (p *helloParams) check() *rpc.Error {
	if len(p.Client) > 0 && string(p.Client) != "null" {
		var c struct {
			Name    *string `json:"name"`
			Version *string `json:"version"`
		}
		if p.Client[0] == '{' {
			if err := checkMembers("client", p.Client, clientMembers); err != nil {
				return err
			}
		}
		if p.Client[0] != '{' || json.Unmarshal(p.Client, &c) != nil {
			return rpc.Errorf(rpc.CodeInvalidParams, `invalid params: client must be an object {"name": "...", "version": "..."} of strings`)
		}
	}
	if p.Methods != nil && slices.Contains(*p.Methods, "") {
		return rpc.Errorf(rpc.CodeInvalidParams, "invalid params: methods holds an empty name; list the names of the methods the client presents")
	}
	return nil
}

// clientMembers are those of hello's client.
var clientMembers = []string{"name", "version"}

func (s *session) hello(params json.RawMessage) ([]byte, *rpc.Error) {
	var p helloParams
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	if p.Token != "" {
		if err := s.acceptToken(p.Token); err != nil {
			return nil, err
		}
	} else if !s.authenticated() {
		return nil, rpc.Errorf(rpc.CodeUnauthenticated, "authentication required: hello needs a token (anonymous access is off)")
	}
	s.mu.Lock()
	if p.Methods != nil {
		s.methods = make(map[string]bool, len(*p.Methods))
		for _, m := range *p.Methods {
			s.methods[m] = true
		}
		s.wantsNotifications.Store(s.methods["onNotificationReceived"])
	}
	if p.Volatile != nil {
		s.volatile = p.Volatile
	}
	var userID *string
	if s.ident != nil {
		uid := s.ident.UserID
		userID = &uid
	}
	s.mu.Unlock()
	s.announce()
	return marshalResult(map[string]any{
		"session_id": s.id,
		"user_id":    userID,
		"server":     map[string]string{"name": "herald", "version": s.srv.version},
		"limits": map[string]any{
			"max_batch":       s.srv.live().Delivery.MaxBatch,
			"max_frame_bytes": s.srv.live().Limits.MaxFrameBytes,
		},
	})
}

func (s *session) acceptToken(token string) *rpc.Error {
	id, err := s.srv.tokens.Load().Verify(token)
	if err != nil {
		return rpc.Errorf(rpc.CodeUnauthenticated, "authentication failed: %v", err)
	}
	return s.setIdentity(id)
}

func (s *session) authenticate(params json.RawMessage) ([]byte, *rpc.Error) {
	var p struct {
		Token string `json:"token"`
	}
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	if p.Token == "" {
		return nil, invalidParams("token is required")
	}
	if err := s.acceptToken(p.Token); err != nil {
		return nil, err
	}
	s.announce()
	s.mu.Lock()
	id := s.ident
	s.mu.Unlock()
	var exp any
	if !id.ExpiresAt.IsZero() {
		exp = id.ExpiresAt.UTC().Format("2006-01-02T15:04:05Z07:00")
	}
	return marshalResult(map[string]any{"user_id": id.UserID, "expires_at": exp})
}

// channelList is "a b c" or ["a", "b"].
type channelList []string

func (c *channelList) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*c = splitChannels(s)
		return nil
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return errors.New("must be a space-separated string or an array of strings")
	}
	*c = list
	return nil
}

type channelParams struct {
	Channel  *channelList `json:"channel"`
	Channels *channelList `json:"channels"`
}

func (p *channelParams) names() ([]string, *rpc.Error) {
	var out []string
	if p.Channel != nil {
		out = append(out, *p.Channel...)
	}
	if p.Channels != nil {
		out = append(out, *p.Channels...)
	}
	if len(out) == 0 {
		switch {
		case p.Channel == nil && p.Channels == nil:
			return nil, invalidParams(`give "channel" (a space-separated string) or "channels" (an array)`)
		case p.Channels == nil:
			return nil, invalidParams(`"channel" is empty: name at least one channel`)
		case p.Channel == nil:
			return nil, invalidParams(`"channels" is empty: name at least one channel`)
		}
		return nil, invalidParams(`"channel" and "channels" are both empty: name at least one channel`)
	}
	seen := make(map[string]bool, len(out))
	uniq := out[:0]
	for _, ch := range out {
		if !seen[ch] {
			seen[ch] = true
			uniq = append(uniq, ch)
		}
	}
	return uniq, nil
}

func decodeChannelParams(params json.RawMessage, v any) *rpc.Error {
	err := decodeParams(params, v)
	if err != nil && strings.Contains(err.Message, "space-separated") {
		return invalidParams(`"channel"/"channels" must be a space-separated string or an array of strings`)
	}
	return err
}

type subscribeParams struct {
	channelParams
	// RawSince is checked by parseSince, which fills Since: its errors
	// name the channel whose entry is wrong, which encoding/json's
	// cannot (a map's keys are not in its error's path).
	RawSince    json.RawMessage            `json:"since"`
	Since       map[string]broker.Position `json:"-"`
	Volatile    json.RawMessage            `json:"volatile"`
	Token       string                     `json:"token"`
	AccessToken string                     `json:"accessToken"`
}

type refusal struct {
	Channel string `json:"channel"`
	Code    int    `json:"code"`
	Reason  string `json:"reason"`
}

type subscription struct {
	Channel   string `json:"channel"`
	Seq       uint64 `json:"seq"`
	Epoch     string `json:"epoch"`
	Recovered *bool  `json:"recovered,omitempty"`
}

// parseSubscribe decodes and checks subscribe's params: the channels (in
// either form, without duplicates) and a since that names only them.
func parseSubscribe(params json.RawMessage) (*subscribeParams, []string, *rpc.Error) {
	var p subscribeParams
	if err := decodeChannelParams(params, &p); err != nil {
		return nil, nil, err
	}
	names, rerr := p.names()
	if rerr != nil {
		return nil, nil, rerr
	}
	if p.Since, rerr = parseSince(p.RawSince, names); rerr != nil {
		return nil, nil, rerr
	}
	return &p, names, nil
}

// parseSince decodes subscribe's since, {"<channel>": {seq, epoch}}, whose
// channels must be among names. A member left out is no error: a position
// without its epoch (or with an empty one) cannot be checked against the
// channel's, so that resume answers recovered: false with the current
// position (CONTRACT.md section 3: it cannot be done), as for a wrong
// epoch; a missing seq is 0. A member of the wrong type is an error.
// Entries are checked in the order of their names, so the error for a
// since with several bad entries is always the same.
func parseSince(raw json.RawMessage, names []string) (map[string]broker.Position, *rpc.Error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if raw[0] != '{' {
		return nil, invalidParams(`since must be an object {"<channel>": {seq, epoch}}, not %s`, rawKind(raw))
	}
	var entries map[string]json.RawMessage
	if err := json.Unmarshal(raw, &entries); err != nil {
		return nil, invalidParams("since: %v", err)
	}
	chans := make([]string, 0, len(entries))
	for ch := range entries {
		if !contains(names, ch) {
			return nil, invalidParams("since names %q, which is not among the channels to subscribe", ch)
		}
		chans = append(chans, ch)
	}
	slices.Sort(chans)
	since := make(map[string]broker.Position, len(entries))
	for _, ch := range chans {
		pos, rerr := parseSinceEntry(sinceField(ch), entries[ch])
		if rerr != nil {
			return nil, rerr
		}
		since[ch] = pos
	}
	return since, nil
}

// positionMembers are those of an entry of subscribe's since.
var positionMembers = []string{"seq", "epoch"}

// parseSinceEntry decodes one entry of since, {seq, epoch}; field names it
// in errors (since.<channel>).
func parseSinceEntry(field string, raw json.RawMessage) (broker.Position, *rpc.Error) {
	if raw[0] != '{' {
		return broker.Position{}, invalidParams("%s must be an object {seq, epoch} (the position a subscribe result gave), not %s", field, rawKind(raw))
	}
	if err := checkMembers(field, raw, positionMembers); err != nil {
		return broker.Position{}, err
	}
	var e struct {
		Seq   json.RawMessage `json:"seq"`
		Epoch json.RawMessage `json:"epoch"`
	}
	if err := json.Unmarshal(raw, &e); err != nil {
		return broker.Position{}, invalidParams("%s: %v", field, err)
	}
	// A member given as null is there: its type is what is wrong.
	var pos broker.Position
	if e.Seq != nil {
		if err := unmarshalMember(e.Seq, &pos.Seq); err != nil {
			return broker.Position{}, invalidParams("%s.seq must be a non-negative integer, not %s", field, err)
		}
	}
	if e.Epoch != nil {
		if err := unmarshalMember(e.Epoch, &pos.Epoch); err != nil {
			return broker.Position{}, invalidParams("%s.epoch must be a string, not %s", field, err)
		}
	}
	return pos, nil
}

// unmarshalMember decodes one member's value into v, which must not be
// null; its error is what the value was, in JSON terms ("number -1").
func unmarshalMember(raw json.RawMessage, v any) error {
	if string(raw) == "null" {
		return errors.New("null")
	}
	if err := json.Unmarshal(raw, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return errors.New(te.Value)
		}
		return errors.New(rawKind(raw))
	}
	return nil
}

// sinceField names a channel's entry of since in an error: since.<name>,
// or since["<name>"] when the name is not printable ASCII without spaces
// (a client's name is shown, never echoed raw).
func sinceField(ch string) string {
	for i := 0; i < len(ch); i++ {
		if ch[i] <= ' ' || ch[i] > '~' || ch[i] == '"' {
			return "since[" + strconv.Quote(ch) + "]"
		}
	}
	return "since." + ch
}

// rawKind is the JSON type of a valid JSON value, for errors.
func rawKind(raw json.RawMessage) string {
	switch raw[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

func (s *session) subscribe(params json.RawMessage) ([]byte, *rpc.Error) {
	p, names, rerr := parseSubscribe(params)
	if rerr != nil {
		return nil, rerr
	}
	if tok := firstNonEmpty(p.Token, p.AccessToken); tok != "" {
		if err := s.acceptToken(tok); err != nil {
			return nil, err
		}
	}
	if !s.authenticated() {
		return nil, rpc.Errorf(rpc.CodeUnauthenticated, "authentication required: subscribe with a token (accessToken), or send hello or authenticate with a valid token first")
	}

	// Channels already held are answered with their position and not joined again.
	s.mu.Lock()
	var fresh []string
	for _, ch := range names {
		if !s.subs.has(ch) {
			fresh = append(fresh, ch)
		}
	}
	limit := s.srv.live().Limits.MaxSubscriptions
	over := s.subs.len()+len(fresh) > limit
	held := s.subs.len()
	s.mu.Unlock()
	if over {
		return nil, rpc.Errorf(rpc.CodeLimitExceeded, "limit exceeded: this connection holds %d subscriptions and asks for %d more; the limit is %d (limits.max_subscriptions)", held, len(fresh), limit)
	}

	refused, owners := s.authorize(fresh)
	if len(refused) > 0 {
		return nil, refusalError(refused)
	}

	ctx, cancel := context.WithTimeout(context.Background(), s.srv.callTimeout)
	defer cancel()
	result, joins, rerr := s.joinAll(ctx, names, fresh, p.Since)
	if rerr != nil {
		return nil, rerr
	}

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		cancelJoins(joins)
		return nil, rpc.Errorf(rpc.CodeInternal, "connection closed")
	}
	for _, ch := range fresh {
		s.subs.add(ch)
	}
	if p.Volatile != nil {
		s.volatile = p.Volatile
	}
	volatile := s.volatile
	s.mu.Unlock()

	reply, rerr := marshalResult(map[string]any{"subscriptions": result})
	if rerr != nil {
		cancelJoins(joins)
		return nil, rerr
	}
	// The reply goes first; then each channel's missed and live publications.
	s.afterReply = append(s.afterReply, func() {
		for _, j := range joins {
			j.Activate()
		}
	})
	s.announce()
	c := s.caller()
	for _, ch := range fresh {
		s.srv.metrics.subscriptions.Inc()
		s.srv.plugins.Notify(pluginhost.Event{Kind: pluginhost.Subscribed, ConnID: s.id, UserID: c.UserID, Claims: c.Claims, Channel: ch, Volatile: volatile})
	}
	s.dropOrphans(owners)
	return reply, nil
}

// dropOrphans ends, after the reply, the subscriptions just made to
// channels whose authorizing plugin no longer owns them: a reload removed
// it while this subscribe was under way, and its Server.PluginRemoved may
// have looked at this connection before they were added. The plugin host
// releases the prefixes before it calls PluginRemoved, so either that call
// finds the subscriptions or this check finds the prefixes released.
// owners maps each channel a plugin authorized to that plugin.
func (s *session) dropOrphans(owners map[string]string) {
	var byPlugin map[string][]string
	for ch, plugin := range owners {
		if now, ok := s.srv.plugins.Owner(ch); !ok || now != plugin {
			if byPlugin == nil {
				byPlugin = map[string][]string{}
			}
			byPlugin[plugin] = append(byPlugin[plugin], ch)
		}
	}
	for plugin, chs := range byPlugin {
		slices.Sort(chs)
		s.afterReply = append(s.afterReply, func() { s.drop(chs, removedReason(plugin)) })
	}
}

func cancelJoins(joins []*hub.Join) {
	for _, j := range joins {
		j.Cancel()
	}
}

func refusalError(refused []refusal) *rpc.Error {
	parts := make([]string, len(refused))
	for i, r := range refused {
		parts[i] = fmt.Sprintf("%s (%s)", r.Channel, r.Reason)
	}
	e := rpc.Errorf(refused[0].Code, "subscribe refused, nothing was subscribed: %s", strings.Join(parts, "; "))
	return e.WithData(map[string]any{"channels": refused})
}

// authorize checks every channel and returns the refused ones, and the
// plugin that authorized each channel of a plugin's namespace. Channels of
// one plugin are asked of it in one call.
func (s *session) authorize(channels []string) (refused []refusal, owners map[string]string) {
	byPlugin := map[string][]string{}
	anonymous := s.caller().UserID == ""
	for _, ch := range channels {
		if err := validChannel(ch); err != nil {
			refused = append(refused, refusal{ch, rpc.CodeInvalidParams, err.Error()})
			continue
		}
		switch {
		case ch == ServerChannel:
			refused = append(refused, refusal{ch, rpc.CodeInvalidParams, "$server needs no subscription: its notifications reach every connection"})
		case ch == ConfigChannel:
			if anonymous {
				refused = append(refused, refusal{ch, rpc.CodeUnauthenticated, "the config channel is for authenticated connections"})
			}
		case namespace(ch) == "":
			if !s.srv.live().Auth.OpenChannels {
				refused = append(refused, refusal{ch, rpc.CodeUnknownNamespace, "open channels are disabled (auth.open_channels = false); use a channel of a plugin's namespace"})
			}
		default:
			plugin, ok := s.srv.plugins.Owner(ch)
			if !ok {
				refused = append(refused, refusal{ch, rpc.CodeUnknownNamespace, fmt.Sprintf("no plugin owns the namespace %q", namespace(ch))})
				continue
			}
			byPlugin[plugin] = append(byPlugin[plugin], ch)
		}
	}
	if len(byPlugin) == 0 {
		return refused, nil
	}
	owners = map[string]string{}
	caller := s.caller()
	for plugin, chs := range byPlugin {
		ctx, cancel := context.WithTimeout(context.Background(), s.srv.callTimeout)
		rs, err := s.srv.plugins.Authorize(ctx, plugin, caller, chs)
		cancel()
		if err != nil {
			code, msg := rpc.CodePluginUnavailable, err.Error()
			var re *rpc.Error
			if errors.As(err, &re) {
				code, msg = re.Code, re.Message
			}
			for _, ch := range chs {
				refused = append(refused, refusal{ch, code, msg})
			}
			continue
		}
		for _, r := range rs {
			refused = append(refused, refusal{r.Channel, r.Code, r.Reason})
		}
		for _, ch := range chs {
			owners[ch] = plugin
		}
	}
	return refused, owners
}

func (s *session) unsubscribeCall(params json.RawMessage) ([]byte, *rpc.Error) {
	var p channelParams
	if err := decodeChannelParams(params, &p); err != nil {
		return nil, err
	}
	names, rerr := p.names()
	if rerr != nil {
		return nil, rerr
	}
	done := s.unsubscribe(names)
	return marshalResult(map[string]any{"unsubscribed": done})
}

// unsubscribe ends the session's subscriptions to channels and returns those
// it had.
func (s *session) unsubscribe(channels []string) []string {
	done := make([]string, 0, len(channels))
	s.mu.Lock()
	for _, ch := range channels {
		if s.subs.remove(ch) {
			done = append(done, ch)
		}
	}
	s.mu.Unlock()
	if len(done) == 0 {
		return done
	}
	uid, claims := s.eventUser() // the user even after the token expired
	for _, ch := range done {
		if s.srv.hub.Unsubscribe(s, ch) {
			s.srv.metrics.subscriptions.Dec()
		}
		s.srv.plugins.Notify(pluginhost.Event{Kind: pluginhost.Unsubscribed, ConnID: s.id, UserID: uid, Claims: claims, Channel: ch})
	}
	return done
}

func (s *session) presence(params json.RawMessage) ([]byte, *rpc.Error) {
	var p struct {
		Channel string `json:"channel"`
	}
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	if p.Channel == "" {
		return nil, invalidParams("channel is required")
	}
	if p.Channel == ServerChannel {
		return nil, invalidParams("$server has no presence: it needs no subscription and reaches every connection")
	}
	s.mu.Lock()
	ok := s.subs.has(p.Channel)
	s.mu.Unlock()
	if !ok {
		return nil, rpc.Errorf(rpc.CodeForbidden, "forbidden: presence is for channels this connection is subscribed to; subscribe to %q first", p.Channel)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.srv.callTimeout)
	defer cancel()
	count, users, err := s.srv.presence(ctx, p.Channel) // connections only, not plugin follows
	if err != nil {
		return nil, brokerError(err)
	}
	return marshalResult(map[string]any{"count": count, "users": users})
}

// pluginCall routes "<plugin>.<method>" to the plugin.
func (s *session) pluginCall(method string, params json.RawMessage) ([]byte, *rpc.Error) {
	return s.pluginCallWith(method, params, s.srv.plugins.Call)
}

func (s *session) pluginCallWith(method string, params json.RawMessage,
	call func(ctx context.Context, plugin, method string, caller pluginhost.Caller, params json.RawMessage) (json.RawMessage, error)) ([]byte, *rpc.Error) {
	i := strings.IndexByte(method, '.')
	if i <= 0 || i == len(method)-1 || isCoreMethod(method) {
		return nil, rpc.Errorf(rpc.CodeMethodNotFound, "method not found: %q (herald's methods are hello, authenticate, subscribe, unsubscribe, presence, ping; plugin methods are <plugin>.<method>)", method)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.srv.pluginCallTimeout(method[:i], method[i+1:]))
	defer cancel()
	if len(params) == 0 {
		params = json.RawMessage("{}")
	}
	res, err := call(ctx, method[:i], method[i+1:], s.caller(), params)
	if err != nil {
		var re *rpc.Error
		if errors.As(err, &re) {
			return nil, re
		}
		return nil, rpc.Errorf(rpc.CodeInternal, "internal error: %s: %v", method, err)
	}
	if len(res) == 0 {
		res = json.RawMessage("null")
	}
	return res, nil
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// joinAll joins the fresh channels and reads the position of the others,
// in the order of names. With a broker on the network (NATS), each join
// is a round trip: they run side by side rather than one after another,
// so a subscribe with many channels costs about one round trip. On error
// every join made is cancelled.
func (s *session) joinAll(ctx context.Context, names, fresh []string, since map[string]broker.Position) ([]subscription, []*hub.Join, *rpc.Error) {
	result := make([]subscription, len(names))
	joinOf := make([]*hub.Join, len(names))
	errs := make([]error, len(names))
	one := func(i int) {
		ch := names[i]
		var from *broker.Position
		if pos, ok := since[ch]; ok {
			from = &pos
		}
		if contains(fresh, ch) {
			j, err := s.srv.hub.Subscribe(ctx, s, ch, from)
			if err == nil {
				joinOf[i] = j
				sub := subscription{Channel: ch, Seq: j.Position.Seq, Epoch: j.Position.Epoch}
				if from != nil {
					rec := j.Recovered
					sub.Recovered = &rec
				}
				result[i] = sub
				return
			}
			if !errors.Is(err, hub.ErrAlreadySubscribed) {
				errs[i] = err
				return
			}
			// A plugin subscribed the connection meanwhile: answered
			// like a channel already held.
		}
		pos, err := s.srv.broker.Position(ctx, ch)
		result[i], errs[i] = subscription{Channel: ch, Seq: pos.Seq, Epoch: pos.Epoch}, err
		if from != nil {
			// Held already: nothing is replayed. Recovered only when the
			// client is at the channel's position (nothing came after its
			// since); else it cannot be told that it has everything.
			rec := from.Epoch == pos.Epoch && from.Seq == pos.Seq
			result[i].Recovered = &rec
		}
	}
	if _, remote := s.srv.broker.(broker.Interest); remote && len(names) > 1 {
		sem := make(chan struct{}, maxParallelJoins)
		var wg sync.WaitGroup
		for i := range names {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				one(i)
			}()
		}
		wg.Wait()
	} else {
		for i := range names {
			if one(i); errs[i] != nil {
				break
			}
		}
	}
	joins := make([]*hub.Join, 0, len(fresh))
	for _, j := range joinOf {
		if j != nil {
			joins = append(joins, j)
		}
	}
	for _, err := range errs {
		if err != nil {
			cancelJoins(joins)
			return nil, nil, brokerError(err)
		}
	}
	return result, joins, nil
}

// maxParallelJoins bounds the joins of one subscribe in flight at once.
const maxParallelJoins = 32

// brokerError is the client's error for a broker failure: a broker that
// cannot be reached now (NATS down) is -32050, retry later.
func brokerError(err error) *rpc.Error {
	if errors.Is(err, broker.ErrUnavailable) {
		return rpc.Errorf(rpc.CodePluginUnavailable, "unavailable: the cluster's message store cannot serve this now (%v); retry later", err)
	}
	return rpc.Errorf(rpc.CodeInternal, "internal error: %v", err)
}

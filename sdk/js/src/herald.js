// Herald's JavaScript client: the Unichat local-interface model for the
// browser and Node. No dependencies: it uses the platform's WebSocket
// (browsers, Node >= 22, Node 20 with --experimental-websocket) or the one
// given as options.WebSocket (e.g. the `ws` package).
//
//   const herald = new Herald(url, { token, localInterface: {
//     onNotificationReceived({ notifications }) { ... },
//   }});
//   await herald.subscribe(['news']);
//
// Wire protocol: docs/protocol.md. Semantics: docs/clients.md.

export const ServerChannel = '$server';

/** JSON-RPC error codes herald uses. */
export const Codes = Object.freeze({
  parseError: -32700,
  invalidRequest: -32600,
  methodNotFound: -32601,
  invalidParams: -32602,
  internal: -32603,
  application: -32000, // what a local-interface method threw
  unauthenticated: -32001,
  forbidden: -32003,
  unknownNamespace: -32004,
  limitExceeded: -32005,
  rateLimited: -32029,
  pluginUnavailable: -32050,
});

/** A JSON-RPC error: herald's answer to a call, or one a local method throws. */
export class HeraldError extends Error {
  constructor(code, message, data) {
    super(message);
    this.name = 'HeraldError';
    this.code = code;
    if (data !== undefined) this.data = data;
  }
  /** The channels of a refused subscribe: [{channel, code, reason}]. */
  get refused() {
    return (this.data && Array.isArray(this.data.channels)) ? this.data.channels : [];
  }
}

/** The reply to a call did not come within its timeout. */
export class TimeoutError extends Error {
  constructor(method, ms) {
    super(`herald: no answer to ${method} within ${ms} ms`);
    this.name = 'TimeoutError';
  }
}

/** The connection ended before the answer came (the call may have run). */
export class ConnectionLostError extends Error {
  constructor(method) {
    super(`herald: connection lost before the answer to ${method}`);
    this.name = 'ConnectionLostError';
  }
}

const defaults = {
  // Longer than herald's default limits.call_timeout (10 s), so that its
  // -32050 for a plugin that does not answer arrives before we give up.
  callTimeout: 15000,
  minBackoff: 250,
  maxBackoff: 15000,
  pingInterval: 25000,
};

/** Names of the methods an object offers, own and inherited (not Object's). */
function methodNames(obj) {
  const names = new Set();
  for (let o = obj; o && o !== Object.prototype; o = Object.getPrototypeOf(o)) {
    for (const k of Object.getOwnPropertyNames(o)) {
      if (k !== 'constructor' && typeof obj[k] === 'function') names.add(k);
    }
  }
  return [...names].sort();
}

/** A JWT's exp (ms since epoch), read without verifying: only herald can. */
export function tokenExpiry(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = JSON.parse(atob(part + '='.repeat((4 - part.length % 4) % 4)));
    return typeof json.exp === 'number' ? json.exp * 1000 : null;
  } catch {
    return null;
  }
}

/** The delay before reconnect attempt n: doubling from min, capped at max,
 * drawn at random from its upper half so clients cut at once do not all come
 * back at once. */
export function backoff(min, max, n) {
  const d = Math.min(max, min * 2 ** Math.min(n, 30));
  return d / 2 + Math.random() * (d / 2);
}

export class Herald {
  /**
   * @param {string} url herald's WebSocket URL, e.g. ws://127.0.0.1:7512/ws
   * @param {object} options see herald.d.ts
   */
  constructor(url, options = {}) {
    this.url = url;
    this.options = { ...defaults, ...options };
    this.local = options.localInterface || {};
    this.methods = methodNames(this.local);
    this._presented = new Set(this.methods);
    this.WebSocket = options.WebSocket || globalThis.WebSocket;
    if (typeof this.WebSocket !== 'function') {
      throw new TypeError('herald: no WebSocket in this runtime: pass options.WebSocket (e.g. the "ws" package), or on Node 20-21 run node with --experimental-websocket');
    }
    this.token = options.token || '';
    this.state = 'idle'; // until connect()
    this.hello = null;
    this._channels = new Map(); // channel -> {seq, epoch} or null until known
    // Channels whose re-subscribe was refused with -32050 (their plugin is
    // restarting): kept, and asked again on the same connection (_retry).
    this._waiting = new Set();
    this._retryTimer = null;
    this._retryAttempt = 0;
    this._listeners = new Map();
    this._ws = null;
    this._pending = new Map();
    this._nextId = 0;
    this._attempt = 0;
    this._timer = null;
    this._pingTimer = null;
    this._queue = Promise.resolve(); // local-interface calls, one at a time
    this._waiters = []; // calls waiting for the connection
    this._refreshing = null;
    this._closed = false;
    if (options.autoConnect !== false) this.connect();
  }

  /**
   * Start connecting (the constructor does, unless autoConnect is false);
   * a client already connecting, connected or closed is left as it is.
   */
  connect() {
    if (this._closed || this.state !== 'idle') return;
    this.state = 'connecting';
    // Told after the current task, so that listeners added right after the
    // constructor hear it; 'connected' can only come later still.
    queueMicrotask(() => {
      if (this.state === 'connecting') this._emit('state', { state: 'connecting' });
    });
    this._connect();
  }

  // ---- events -------------------------------------------------------------

  /**
   * Listen to 'state' ({state, error}), 'unrecovered' ({channels}: reload
   * them), 'unsubscribed' ({channels: [{channel, reason}]}: herald ended
   * them, or refused them on a re-subscribe; they are forgotten. A channel
   * refused there with -32050, plugin unavailable, is kept instead and
   * asked again with backoff on the same connection) or 'error' (an Error
   * no call returns, each such attempt among them). Returns a function
   * that removes the listener.
   */
  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(fn);
    return () => this.off(event, fn);
  }

  off(event, fn) {
    this._listeners.get(event)?.delete(fn);
  }

  _emit(event, arg) {
    for (const fn of [...(this._listeners.get(event) || [])]) {
      try {
        fn(arg);
      } catch (err) {
        if (event !== 'error') this._emit('error', err);
      }
    }
  }

  _setState(state, error) {
    if (this.state === state) return;
    this.state = state;
    this._emit('state', { state, error });
    if (state === 'connected') {
      const ws = this._waiters.splice(0);
      for (const w of ws) w.resolve();
    }
  }

  // ---- connection ---------------------------------------------------------

  async _usableToken() {
    const exp = this.token ? tokenExpiry(this.token) : null;
    const stale = !this.token || (exp !== null && exp - Date.now() < 1000);
    if (stale && this.options.getToken) await this._freshToken();
    return this.token;
  }

  async _freshToken() {
    const tok = await this.options.getToken();
    if (!tok) throw new Error('herald: getToken returned no token');
    this.token = tok;
    return tok;
  }

  async _connect() {
    if (this._closed) return;
    let ws;
    try {
      await this._usableToken();
      if (this._closed) return;
      ws = new this.WebSocket(this.url);
    } catch (err) {
      this._lost(null, err);
      return;
    }
    this._ws = ws;
    let ended = false;
    const end = (err) => {
      if (ended) return;
      ended = true;
      this._lost(ws, err);
    };
    ws.onopen = () => this._ready(ws).catch((err) => {
      end(err);
      try { ws.close(); } catch { /* already closed */ }
    });
    ws.onmessage = (ev) => this._frame(ws, typeof ev.data === 'string' ? ev.data : String(ev.data));
    ws.onerror = () => end(new Error('herald: WebSocket error'));
    ws.onclose = (ev) => end(new Error(`herald: connection closed (${ev.code}${ev.reason ? ' ' + ev.reason : ''})`));
  }

  // _ready says hello and re-subscribes on a new connection.
  async _ready(ws) {
    const helloParams = () => {
      const p = { methods: this.methods };
      if (this.token) p.token = this.token;
      if (this.options.client) p.client = this.options.client;
      return p;
    };
    let hello;
    try {
      hello = await this._send(ws, 'hello', helloParams());
    } catch (err) {
      if (!(err instanceof HeraldError) || err.code !== Codes.unauthenticated || !this.options.getToken) throw err;
      await this._freshToken();
      hello = await this._send(ws, 'hello', helloParams());
    }
    await this._resubscribe(ws);
    if (ws !== this._ws) return;
    this.hello = hello;
    this._attempt = 0;
    this._startPing(ws);
    this._setState('connected');
    this._retryAttempt = 0;
    this._scheduleRetry(ws);
  }

  // _resubscribe subscribes ws to every channel held, resuming those with a
  // position. Subscribe is all or nothing: the channels herald refuses are
  // dropped and reported ('unsubscribed', 'error'), except those refused
  // with -32050 (their plugin is restarting), which are kept, set aside as
  // waiting and reported ('error'); the others are asked again until herald
  // takes them all. Each round drops or sets aside at least one channel, so
  // it ends. The waiting channels are asked again later: _retry.
  async _resubscribe(ws) {
    this._waiting.clear(); // a new connection asks for every channel again
    for (;;) {
      const channels = [...this._channels.keys()].filter((ch) => !this._waiting.has(ch));
      if (channels.length === 0) return;
      const { dropped, waiting } = await this._askAgain(ws, channels, 're-subscribe');
      if (dropped + waiting === 0) return;
    }
  }

  // _askAgain subscribes ws to channels held, resuming them from their
  // positions. On success they are live (_subscribed handles recovered
  // true/false). When herald refuses some, those refused with -32050 are
  // set aside as waiting and the others dropped; both are reported and
  // counted, and the caller asks again for the rest. A refusal of none of
  // the channels asked, or another failure, is thrown.
  async _askAgain(ws, channels, what) {
    const since = {};
    for (const ch of channels) {
      const pos = this._channels.get(ch);
      if (pos) since[ch] = pos;
    }
    const params = { channels };
    if (Object.keys(since).length) params.since = since;
    try {
      await this._send(ws, 'subscribe', params, (res) => this._subscribed(res, true));
      return { dropped: 0, waiting: 0 };
    } catch (err) {
      if (!(err instanceof HeraldError) || err.refused.length === 0) throw err;
      const dropped = [];
      const kept = [];
      for (const r of err.refused) {
        if (!channels.includes(r.channel) || !this._channels.has(r.channel)) continue;
        if (r.code === Codes.pluginUnavailable) {
          this._waiting.add(r.channel);
          kept.push(r.channel);
          continue;
        }
        this._channels.delete(r.channel);
        this._waiting.delete(r.channel);
        dropped.push({ channel: r.channel, reason: `re-subscribe after a reconnect refused (${r.code}): ${r.reason}` });
      }
      // A refusal of none of the channels asked would come again.
      if (dropped.length === 0 && kept.length === 0) throw err;
      if (kept.length) {
        this._emit('error', new HeraldError(err.code, `${what}: plugin unavailable for ${kept.join(', ')}, kept and asked again later: ${err.message}`, err.data));
      }
      if (dropped.length) {
        this._emit('error', new HeraldError(err.code, `${what} refused, channels dropped: ${err.message}`, err.data));
        this._enqueue(() => this._emit('unsubscribed', { channels: dropped }));
      }
      return { dropped: dropped.length, waiting: kept.length };
    }
  }

  // _scheduleRetry arms the next attempt for the waiting channels on ws,
  // after the reconnect backoff. The attempts belong to ws: _lost and
  // close clear the timer, and an attempt for a connection that is no
  // longer the current one does nothing (the next connection's
  // re-subscribe asks for the channels again).
  _scheduleRetry(ws) {
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    if (this._closed || ws !== this._ws || this._waiting.size === 0) return;
    const delay = backoff(this.options.minBackoff, this.options.maxBackoff, this._retryAttempt++);
    this._retryTimer = setTimeout(() => {
      this._retryTimer = null;
      this._retry(ws);
    }, delay);
  }

  // _retry asks herald again for the waiting channels, until it has answered
  // for them: taken (live), still unavailable (next attempt), or refused
  // otherwise (dropped; the others are then asked again at once).
  async _retry(ws) {
    for (;;) {
      if (this._closed || ws !== this._ws) return;
      for (const ch of this._waiting) if (!this._channels.has(ch)) this._waiting.delete(ch);
      const channels = [...this._waiting];
      if (channels.length === 0) return;
      let dropped;
      try {
        ({ dropped } = await this._askAgain(ws, channels, 're-subscribe of channels whose plugin was unavailable'));
      } catch (err) {
        if (this._closed || ws !== this._ws || err instanceof ConnectionLostError) return;
        this._emit('error', err); // still waiting: asked again next time
        break;
      }
      if (dropped === 0) break;
    }
    this._scheduleRetry(ws);
  }

  _lost(ws, err) {
    if (ws && ws !== this._ws) return;
    this._ws = null;
    clearInterval(this._pingTimer);
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    for (const [, p] of this._pending) p.reject(new ConnectionLostError(p.method));
    this._pending.clear();
    if (this._closed) return;
    this._setState('reconnecting', err);
    const delay = backoff(this.options.minBackoff, this.options.maxBackoff, this._attempt++);
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this._connect(), delay);
  }

  _startPing(ws) {
    clearInterval(this._pingTimer);
    if (!(this.options.pingInterval > 0)) return;
    this._pingTimer = setInterval(() => {
      this._send(ws, 'ping', undefined).catch((err) => {
        if (!(err instanceof HeraldError) && ws === this._ws) ws.close(4000, 'ping unanswered');
      });
    }, this.options.pingInterval);
  }

  /** Close the connection for good. Pending calls fail. */
  close() {
    if (this._closed) return;
    this._closed = true;
    clearTimeout(this._timer);
    clearInterval(this._pingTimer);
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    const ws = this._ws;
    this._ws = null;
    for (const [, p] of this._pending) p.reject(new ConnectionLostError(p.method));
    this._pending.clear();
    for (const w of this._waiters.splice(0)) w.reject(new Error('herald: client closed'));
    if (ws) {
      ws.onclose = ws.onerror = ws.onmessage = null;
      try { ws.close(1000, 'client closed'); } catch { /* not open yet */ }
    }
    this._setState('closed');
  }

  /** Resolves once connected (at once if already). */
  connected() {
    if (this._closed) return Promise.reject(new Error('herald: client closed'));
    if (this.state === 'connected') return Promise.resolve();
    return new Promise((resolve, reject) => this._waiters.push({ resolve, reject }));
  }

  // ---- frames -------------------------------------------------------------

  _frame(ws, text) {
    let msgs;
    try {
      msgs = JSON.parse(text);
    } catch (err) {
      this._emit('error', new Error('herald sent a frame that is not JSON: ' + err.message));
      return;
    }
    if (!Array.isArray(msgs)) msgs = [msgs];
    for (const m of msgs) {
      if (!m || typeof m !== 'object') continue;
      const hasId = m.id !== undefined && m.id !== null;
      if (!m.method && hasId) this._resolve(m);
      else if (m.method) this._incoming(ws, m, hasId);
      else if (m.error) this._emit('error', new HeraldError(m.error.code, 'herald could not read a frame of ours: ' + m.error.message, m.error.data));
    }
  }

  _resolve(m) {
    const p = this._pending.get(String(m.id));
    if (!p) return;
    this._pending.delete(String(m.id));
    clearTimeout(p.timer);
    if (m.error) {
      p.reject(new HeraldError(m.error.code, m.error.message, m.error.data));
    } else {
      // Runs before anything later in the stream: subscribe records the
      // positions the following notifications continue.
      if (p.onReply) p.onReply(m.result);
      p.resolve(m.result);
    }
  }

  _incoming(ws, m, hasId) {
    const reply = hasId ? (msg) => {
      if (ws === this._ws) ws.send(JSON.stringify({ jsonrpc: '2.0', id: m.id, ...msg }));
    } : null;
    // Only what hello presented: never Object.prototype's toString & co.
    const fn = this._presented.has(m.method) ? this.local[m.method] : undefined;
    if (typeof fn !== 'function') {
      // Herald calls only what hello presented; answer all the same.
      if (reply) reply({ error: { code: Codes.methodNotFound, message: `the local interface has no method "${m.method}"` } });
      return;
    }
    if (m.method !== 'onNotificationReceived') {
      this._call(fn, m.params, reply);
      return;
    }
    let parts = this._accept((m.params && m.params.notifications) || []);
    if (reply) {
      // One call, one answer: its signals follow it (herald sends
      // onNotificationReceived as a notification; this is for a server
      // that calls it).
      parts = [{
        ns: parts.flatMap((p) => p.ns),
        unrecovered: parts.flatMap((p) => p.unrecovered || []),
        unsubscribed: parts.flatMap((p) => p.unsubscribed || []),
      }];
    }
    for (const p of parts) {
      if (p.ns.length > 0 || reply) this._call(fn, { ...m.params, notifications: p.ns }, reply);
      this._signal(p);
    }
  }

  // _signal queues what a part of a batch ends with, after its
  // notifications and before the rest: the channels to reload (resync) or
  // that ended (unsubscribed).
  _signal(p) {
    if (p.unrecovered && p.unrecovered.length) {
      const channels = p.unrecovered;
      this._enqueue(() => this._emit('unrecovered', { channels }));
    }
    if (p.unsubscribed && p.unsubscribed.length) {
      const channels = p.unsubscribed;
      this._enqueue(() => this._emit('unsubscribed', { channels }));
    }
  }

  // _call queues a call of a local-interface method, answered through reply
  // (null for a notification).
  _call(fn, params, reply) {
    this._enqueue(async () => {
      try {
        const result = await fn.call(this.local, params);
        if (reply) reply({ result: result === undefined ? null : result });
      } catch (err) {
        if (reply) {
          const code = Number.isInteger(err && err.code) ? err.code : Codes.application;
          const error = { code, message: String((err && err.message) || err) };
          if (err && err.data !== undefined) error.data = err.data;
          reply({ error });
        } else {
          this._emit('error', err);
        }
      }
    });
  }

  _enqueue(task) {
    this._queue = this._queue.then(task, task);
  }

  // _accept keeps the notifications the app has not seen and advances each
  // channel's position; it starts a token refresh on token_expired. A
  // resync moves its channels to the positions it gives (reported as
  // unrecovered); an unsubscribed forgets its channels (reported as
  // unsubscribed). Either ends a part: [{ns, unrecovered?, unsubscribed?}],
  // so that the app hears of it after what came before it and before what
  // comes after.
  _accept(ns) {
    const parts = [];
    let out = [];
    const cut = (signal) => {
      parts.push({ ns: out, ...signal });
      out = [];
    };
    for (const n of ns) {
      if (n.channel === ServerChannel) {
        out.push(n);
        const listed = (n.object && Array.isArray(n.object.channels)) ? n.object.channels : [];
        if (n.event === 'token_expired') {
          this._refresh();
        } else if (n.event === 'resync' && listed.length) {
          for (const c of listed) {
            if (this._channels.has(c.channel)) this._channels.set(c.channel, { seq: c.seq, epoch: c.epoch });
          }
          cut({ unrecovered: listed.map((c) => c.channel) });
        } else if (n.event === 'unsubscribed' && listed.length) {
          for (const c of listed) this._channels.delete(c.channel);
          cut({ unsubscribed: listed.map((c) => ({ channel: c.channel, reason: c.reason })) });
        }
        continue;
      }
      const pos = this._channels.get(n.channel);
      if (!pos) {
        out.push(n); // a channel a plugin subscribed us to, or not known yet
        continue;
      }
      if (n.seq <= pos.seq) continue; // seen already
      if (n.seq !== pos.seq + 1) {
        this._emit('error', new Error(`herald: channel ${n.channel}: seq ${n.seq} follows ${pos.seq}: notifications are missing`));
      }
      pos.seq = n.seq;
      out.push(n);
    }
    cut({});
    return parts;
  }

  _subscribed(result, resume) {
    const lost = [];
    for (const s of (result && result.subscriptions) || []) {
      if (!this._channels.has(s.channel) && resume) continue; // unsubscribed meanwhile
      this._waiting.delete(s.channel);
      const pos = this._channels.get(s.channel);
      if (s.recovered === true && pos) {
        pos.epoch = s.epoch; // the replay continues from pos.seq
      } else if (s.recovered === false) {
        lost.push(s.channel);
        this._channels.set(s.channel, { seq: s.seq, epoch: s.epoch });
      } else if (!pos) {
        this._channels.set(s.channel, { seq: s.seq, epoch: s.epoch });
      }
    }
    if (lost.length) {
      // In line with the local interface: before these channels' new notifications.
      this._enqueue(() => this._emit('unrecovered', { channels: lost }));
    }
  }

  _refresh() {
    if (this._refreshing) return;
    if (!this.options.getToken) {
      this._emit('error', new Error('herald: token expired and no getToken option: private subscriptions end after the grace period'));
      return;
    }
    this._refreshing = (async () => {
      try {
        await this.authenticate(await this._freshToken());
      } catch (err) {
        this._emit('error', err);
      } finally {
        this._refreshing = null;
      }
    })();
  }

  // ---- calls --------------------------------------------------------------

  _send(ws, method, params, onReply, timeout = this.options.callTimeout) {
    return new Promise((resolve, reject) => {
      if (!ws || ws !== this._ws) {
        reject(new ConnectionLostError(method));
        return;
      }
      const id = ++this._nextId;
      const p = { method, resolve, reject, onReply };
      p.timer = setTimeout(() => {
        this._pending.delete(String(id));
        reject(new TimeoutError(method, timeout));
      }, timeout);
      this._pending.set(String(id), p);
      const msg = { jsonrpc: '2.0', id, method };
      if (params !== undefined) msg.params = params;
      try {
        ws.send(JSON.stringify(msg));
      } catch (err) {
        clearTimeout(p.timer);
        this._pending.delete(String(id));
        reject(err);
      }
    });
  }

  async _whenConnected(method, timeout) {
    if (this.state === 'connected' && this._ws) return;
    let timer;
    await Promise.race([
      this.connected(),
      new Promise((_, reject) => { timer = setTimeout(() => reject(new TimeoutError(method, timeout)), timeout); }),
    ]).finally(() => clearTimeout(timer));
  }

  /**
   * Call a method on herald ("<plugin>.<method>" or herald's own). Waits for
   * the connection while reconnecting; rejects with a HeraldError, a
   * TimeoutError (options.timeout, default callTimeout) or a
   * ConnectionLostError.
   */
  async call(method, params, { timeout = this.options.callTimeout } = {}) {
    const start = Date.now();
    await this._whenConnected(method, timeout);
    return this._send(this._ws, method, params, undefined, Math.max(1, timeout - (Date.now() - start)));
  }

  /**
   * Subscribe to channels (an array, or a space-separated string). All or
   * nothing: a refusal rejects with a HeraldError whose `refused` lists why.
   * Subscribed channels are kept across reconnects and resumed.
   */
  async subscribe(channels, { timeout = this.options.callTimeout } = {}) {
    const list = typeof channels === 'string' ? channels.split(/\s+/).filter(Boolean) : [...channels];
    if (list.length === 0) throw new TypeError('herald: subscribe needs at least one channel');
    await this._whenConnected('subscribe', timeout);
    const known = [];
    const fresh = [];
    for (const ch of list) {
      const pos = this._channels.get(ch);
      if (pos) known.push({ channel: ch, seq: pos.seq, epoch: pos.epoch });
      else if (!fresh.includes(ch)) fresh.push(ch);
    }
    if (fresh.length === 0) return known;
    const res = await this._send(this._ws, 'subscribe', { channels: fresh }, (r) => this._subscribed(r, false), timeout);
    return known.concat(res.subscriptions);
  }

  /** End subscriptions; they are not resumed after a reconnect. */
  async unsubscribe(channels) {
    const list = typeof channels === 'string' ? channels.split(/\s+/).filter(Boolean) : [...channels];
    for (const ch of list) {
      this._channels.delete(ch);
      this._waiting.delete(ch);
    }
    if (this.state !== 'connected' || !this._ws) return { unsubscribed: [] };
    try {
      return await this._send(this._ws, 'unsubscribe', { channels: list });
    } catch (err) {
      if (err instanceof ConnectionLostError) return { unsubscribed: [] };
      throw err;
    }
  }

  /** Who is subscribed to a channel this client holds: {count, users}. */
  presence(channel) {
    return this.call('presence', { channel });
  }

  /** Replace the connection's token (and the one used to reconnect). */
  authenticate(token) {
    this.token = token;
    return this.call('authenticate', { token });
  }

  /** Where the client stands in a channel: {seq, epoch}, or null. */
  position(channel) {
    const pos = this._channels.get(channel);
    return pos ? { ...pos } : null;
  }

  /** The channels the client holds. */
  channels() {
    return [...this._channels.keys()];
  }
}

export default Herald;

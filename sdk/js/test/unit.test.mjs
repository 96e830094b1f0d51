// The client's side of the protocol against a scripted fake WebSocket: no
// server needed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Herald, Codes, backoff, tokenExpiry } from '../src/herald.js';

function fakeSocket() {
  // refuse: channels a re-subscribe (one with since) is refused for, the
  // first one still asked for, one per subscribe.
  // script(conn, channels, since), when set, answers each subscribe with
  // since first: the refusals it returns ({channel, code, reason}) refuse
  // it, none lets it through; conn counts the sockets from 1. recovered:
  // resumes answer recovered: true from since (else recovered: false).
  const server = { sockets: [], sent: [], subSeq: 5, refuse: [], script: null, recovered: false };
  class FakeWS {
    constructor(url) {
      this.url = url;
      server.sockets.push(this);
      setTimeout(() => this.onopen && this.onopen(), 0);
    }
    send(text) {
      const m = JSON.parse(text);
      server.sent.push(m);
      if (m.method === 'hello') this.push({ jsonrpc: '2.0', id: m.id, result: { session_id: 's', user_id: 'u' } });
      const refusals = m.method === 'subscribe' && m.params.since && server.script ? server.script(server.sockets.indexOf(this) + 1, m.params.channels, m.params.since) : [];
      if (refusals.length) {
        this.push({ jsonrpc: '2.0', id: m.id, error: { code: refusals[0].code, message: 'subscribe refused, nothing was subscribed', data: { channels: refusals } } });
      } else if (m.method === 'subscribe' && m.params.since && m.params.channels.includes(server.refuse[0])) {
        const channel = server.refuse.shift();
        this.push({ jsonrpc: '2.0', id: m.id, error: { code: Codes.forbidden, message: 'subscribe refused, nothing was subscribed', data: { channels: [{ channel, code: Codes.forbidden, reason: 'not any more' }] } } });
      } else if (m.method === 'subscribe') {
        this.push({ jsonrpc: '2.0', id: m.id, result: { subscriptions: m.params.channels.map((channel) => {
          const pos = m.params.since && m.params.since[channel];
          if (pos && server.recovered) return { channel, seq: pos.seq, epoch: pos.epoch, recovered: true };
          return { channel, seq: server.subSeq, epoch: 'e1', ...(m.params.since ? { recovered: false } : {}) };
        }) } });
      }
    }
    push(msg) { setTimeout(() => this.onmessage && this.onmessage({ data: JSON.stringify(msg) }), 0); }
    close() { setTimeout(() => this.onclose && this.onclose({ code: 1006, reason: '' }), 0); }
  }
  server.WebSocket = FakeWS;
  server.last = () => server.sockets[server.sockets.length - 1];
  server.reply = (id) => new Promise((resolve) => {
    const t = setInterval(() => {
      const r = server.sent.find((m) => m.id === id && !m.method);
      if (r) { clearInterval(t); resolve(r); }
    }, 2);
  });
  return server;
}

const until = async (pred) => { while (!pred()) await new Promise((r) => setTimeout(r, 2)); };

test('hello presents the local interface, and only its methods are called', async () => {
  const server = fakeSocket();
  let confirmed = 0;
  const herald = new Herald('ws://x/ws', {
    WebSocket: server.WebSocket,
    localInterface: {
      onNotificationReceived() {},
      confirm({ room }) { confirmed++; return { room }; },
      async fail() { throw Object.assign(new Error('no such room'), { code: 4242, data: { room: 'x' } }); },
      oops() { throw new Error('plain'); },
    },
  });
  await herald.connected();
  const hello = server.sent.find((m) => m.method === 'hello');
  assert.deepEqual(hello.params.methods, ['confirm', 'fail', 'onNotificationReceived', 'oops']);

  const ws = server.last();
  ws.push({ jsonrpc: '2.0', id: 's1', method: 'confirm', params: { room: 'x' } });
  assert.deepEqual((await server.reply('s1')).result, { room: 'x' });
  ws.push({ jsonrpc: '2.0', id: 's2', method: 'fail', params: {} });
  assert.deepEqual((await server.reply('s2')).error, { code: 4242, message: 'no such room', data: { room: 'x' } });
  ws.push({ jsonrpc: '2.0', id: 's3', method: 'oops' });
  assert.equal((await server.reply('s3')).error.code, Codes.application);
  ws.push({ jsonrpc: '2.0', id: 's4', method: 'launchMissiles' });
  assert.equal((await server.reply('s4')).error.code, Codes.methodNotFound);
  ws.push({ jsonrpc: '2.0', id: 's5', method: 'toString' });
  assert.equal((await server.reply('s5')).error.code, Codes.methodNotFound, "Object.prototype's methods are not the app's");
  assert.equal(confirmed, 1);
  herald.close();
});

test('duplicates at or below the position are dropped; batches keep their shape', async () => {
  const server = fakeSocket();
  const batches = [];
  const herald = new Herald('ws://x/ws', { WebSocket: server.WebSocket, localInterface: { onNotificationReceived: ({ notifications }) => { batches.push(notifications); } } });
  await herald.subscribe('news');
  const n = (seq) => ({ channel: 'news', seq, event: 'new', object_type: 'm', object: {} });
  server.last().push({ jsonrpc: '2.0', method: 'onNotificationReceived', params: { notifications: [n(4), n(5), n(6), n(6), n(7)] } });
  await until(() => batches.length === 1);
  assert.deepEqual(batches[0].map((x) => x.seq), [6, 7]);
  assert.deepEqual(herald.position('news'), { seq: 7, epoch: 'e1' });
  herald.close();
});

test('after a lost connection: re-subscribe with since, unrecovered before new notifications', async () => {
  const server = fakeSocket();
  const order = [];
  const herald = new Herald('ws://x/ws', {
    WebSocket: server.WebSocket, minBackoff: 5, maxBackoff: 10,
    localInterface: { onNotificationReceived: ({ notifications }) => { order.push(...notifications.map((x) => x.seq)); } },
  });
  herald.on('unrecovered', ({ channels }) => order.push(channels));
  await herald.subscribe(['news']);
  server.subSeq = 1;
  const first = server.last();
  first.close();
  await until(() => server.sockets.length === 2 && herald.state === 'connected');
  const resub = server.sent.filter((m) => m.method === 'subscribe').pop();
  assert.deepEqual(resub.params, { channels: ['news'], since: { news: { seq: 5, epoch: 'e1' } } });
  server.last().push({ jsonrpc: '2.0', method: 'onNotificationReceived', params: { notifications: [{ channel: 'news', seq: 2 }] } });
  await until(() => order.length === 2);
  assert.deepEqual(order, [['news'], 2]);
  herald.close();
  assert.equal(herald.state, 'closed');
});

test('backoff doubles, is capped, and is jittered within its upper half', () => {
  for (let n = 0; n < 20; n++) {
    const ceil = Math.min(2000, 100 * 2 ** n);
    const d = backoff(100, 2000, n);
    assert.ok(d >= ceil / 2 && d <= ceil, `attempt ${n}: ${d}`);
  }
});

test('tokenExpiry reads exp without verifying', () => {
  const body = Buffer.from(JSON.stringify({ sub: 'a', exp: 1700000000 })).toString('base64url');
  assert.equal(tokenExpiry(`h.${body}.s`), 1700000000 * 1000);
  assert.equal(tokenExpiry('garbage'), null);
});

test('no WebSocket in the runtime is a clear error', () => {
  assert.throws(() => new Herald('ws://x/ws', { WebSocket: null, autoConnect: false, ...(globalThis.WebSocket ? { WebSocket: 42 } : {}) }), /WebSocket/);
});

test('state listeners see connecting then connected; autoConnect false waits in idle for connect()', async () => {
  const server = fakeSocket();
  const herald = new Herald('ws://x/ws', { WebSocket: server.WebSocket });
  const seen = [];
  herald.on('state', (e) => seen.push(e.state));
  await herald.connected();
  herald.close();
  assert.deepEqual(seen, ['connecting', 'connected', 'closed']);

  const idle = new Herald('ws://x/ws', { WebSocket: server.WebSocket, autoConnect: false });
  const seenIdle = [];
  idle.on('state', (e) => seenIdle.push(e.state));
  assert.equal(idle.state, 'idle');
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(server.sockets.length, 1, 'nothing connects before connect()');
  assert.deepEqual(seenIdle, []);
  idle.connect();
  assert.equal(idle.state, 'connecting');
  await idle.connected();
  idle.connect(); // connected already: nothing happens
  idle.close();
  assert.deepEqual(seenIdle, ['connecting', 'connected', 'closed']);
  assert.equal(server.sockets.length, 2);
});

test('resync takes the position given and is unrecovered; unsubscribed forgets the channel; both in stream order', async () => {
  const server = fakeSocket();
  const order = [];
  const errors = [];
  const herald = new Herald('ws://x/ws', {
    WebSocket: server.WebSocket, minBackoff: 5, maxBackoff: 10,
    localInterface: { onNotificationReceived: ({ notifications }) => { order.push(notifications.map((x) => `${x.channel} ${x.event} ${x.seq}`).join(', ')); } },
  });
  herald.on('unrecovered', ({ channels }) => order.push('unrecovered ' + channels.join(' ')));
  herald.on('unsubscribed', ({ channels }) => order.push('unsubscribed ' + channels.map((c) => `${c.channel}: ${c.reason}`).join('; ')));
  herald.on('error', (e) => errors.push(e));
  await herald.subscribe(['news', 'other']);
  const n = (channel, event, seq, object = {}) => ({ channel, seq, event, object_type: 'm', object });
  server.last().push({ jsonrpc: '2.0', method: 'onNotificationReceived', params: { notifications: [
    n('news', 'new', 6),
    n('$server', 'resync', 1, { channels: [{ channel: 'news', seq: 10, epoch: 'e2' }] }),
    n('news', 'new', 11),
    n('other', 'new', 6),
    n('$server', 'unsubscribed', 2, { channels: [{ channel: 'other', reason: 'ended by plugin x' }] }),
  ] } });
  await until(() => order.length === 4);
  assert.deepEqual(order, [
    'news new 6, $server resync 1',
    'unrecovered news',
    'news new 11, other new 6, $server unsubscribed 2',
    'unsubscribed other: ended by plugin x',
  ]);
  assert.deepEqual(herald.position('news'), { seq: 11, epoch: 'e2' });
  assert.deepEqual(herald.channels(), ['news']);
  assert.deepEqual(errors, []);

  server.last().close();
  await until(() => server.sockets.length === 2 && herald.state === 'connected');
  const resub = server.sent.filter((m) => m.method === 'subscribe').pop();
  assert.deepEqual(resub.params, { channels: ['news'], since: { news: { seq: 11, epoch: 'e2' } } });
  herald.close();
});

test('a re-subscribe refused for some channels drops them, reports them, and subscribes the rest', async () => {
  const server = fakeSocket();
  const dropped = [];
  const errors = [];
  const herald = new Herald('ws://x/ws', { WebSocket: server.WebSocket, minBackoff: 5, maxBackoff: 10, localInterface: { onNotificationReceived() {} } });
  herald.on('unsubscribed', ({ channels }) => dropped.push(...channels));
  herald.on('error', (e) => errors.push(e));
  await herald.subscribe(['a', 'b', 'c']);
  server.refuse = ['a', 'b']; // refused one after the other: three rounds
  server.last().close();
  await until(() => server.sockets.length === 2 && herald.state === 'connected');
  await until(() => dropped.length === 2);
  const subs = server.sent.filter((m) => m.method === 'subscribe').slice(1).map((m) => m.params.channels);
  assert.deepEqual(subs, [['a', 'b', 'c'], ['b', 'c'], ['c']]);
  assert.deepEqual(dropped, [
    { channel: 'a', reason: 're-subscribe after a reconnect refused (-32003): not any more' },
    { channel: 'b', reason: 're-subscribe after a reconnect refused (-32003): not any more' },
  ]);
  assert.deepEqual(herald.channels(), ['c']);
  assert.equal(errors.length, 2);
  herald.close();
});

const refusal = (channel, code) => ({ channel, code, reason: 'scripted' });

test('a re-subscribe refused with -32050 keeps the channel and asks again on the same connection until herald takes it', { timeout: 20000 }, async () => {
  const server = fakeSocket();
  server.recovered = true;
  const asked = [];
  let xRefusals = 0;
  server.script = (conn, channels, since) => {
    asked.push({ conn, channels: [...channels].sort().join(' '), since });
    const out = [];
    if (channels.includes('x') && ++xRefusals <= 2) out.push(refusal('x', Codes.pluginUnavailable)); // the re-subscribe, then the first retry
    if (channels.includes('y')) out.push(refusal('y', Codes.forbidden));
    return out;
  };
  const order = [];
  const errors = [];
  const herald = new Herald('ws://x/ws', {
    WebSocket: server.WebSocket, minBackoff: 5, maxBackoff: 10,
    localInterface: { onNotificationReceived: ({ notifications }) => { order.push(notifications.map((x) => `${x.channel} ${x.seq}`).join(', ')); } },
  });
  herald.on('unsubscribed', ({ channels }) => order.push('unsubscribed ' + channels.map((c) => `${c.channel}: ${c.reason}`).join('; ')));
  herald.on('unrecovered', ({ channels }) => order.push('unrecovered ' + channels.join(' ')));
  herald.on('error', (e) => errors.push(e));
  await herald.subscribe(['x', 'y', 'z']);
  server.last().push({ jsonrpc: '2.0', method: 'onNotificationReceived', params: { notifications: [{ channel: 'x', seq: 6 }] } });
  await until(() => order.length === 1);

  server.last().close();
  await until(() => asked.length === 4);
  const pos = (seq) => ({ seq, epoch: 'e1' });
  assert.deepEqual(asked, [
    { conn: 2, channels: 'x y z', since: { x: pos(6), y: pos(5), z: pos(5) } },
    { conn: 2, channels: 'z', since: { z: pos(5) } }, // z at once
    { conn: 2, channels: 'x', since: { x: pos(6) } }, // x again, on the same connection
    { conn: 2, channels: 'x', since: { x: pos(6) } }, // and again, until taken
  ]);
  server.last().push({ jsonrpc: '2.0', method: 'onNotificationReceived', params: { notifications: [{ channel: 'x', seq: 7 }] } });
  await until(() => order.length === 3);
  assert.deepEqual(order, ['x 6', 'unsubscribed y: re-subscribe after a reconnect refused (-32003): scripted', 'x 7']);
  assert.deepEqual(herald.position('x'), pos(7));
  assert.deepEqual(herald.channels().sort(), ['x', 'z']);
  assert.equal(herald.state, 'connected');
  assert.equal(errors.filter((e) => /plugin unavailable for x/.test(e.message)).length, 2, 'one error per attempt herald answered -32050');
  assert.equal(errors.filter((e) => /channels dropped/.test(e.message)).length, 1);
  assert.equal(errors.length, 3);
  herald.close();
});

test('the attempts for a channel whose plugin is unavailable end with their connection and with close', { timeout: 20000 }, async () => {
  const server = fakeSocket();
  const asked = [];
  server.script = (conn, channels) => {
    asked.push(`${conn}: ${[...channels].sort().join(' ')}`);
    return channels.includes('x') ? [refusal('x', Codes.pluginUnavailable)] : [];
  };
  const dropped = [];
  const herald = new Herald('ws://x/ws', { WebSocket: server.WebSocket, minBackoff: 5, maxBackoff: 10, localInterface: { onNotificationReceived() {} } });
  herald.on('unsubscribed', ({ channels }) => dropped.push(...channels));
  herald.on('error', () => {});
  await herald.subscribe(['x', 'z']);
  server.last().close();
  await until(() => asked.length === 3);
  assert.deepEqual(asked, ['2: x z', '2: z', '2: x']);

  server.last().close(); // the connection ends while x waits
  await until(() => asked.filter((a) => a.startsWith('3:')).length === 3);
  const onThird = asked.filter((a) => a.startsWith('3:'));
  assert.deepEqual(onThird, ['3: x z', '3: z', '3: x'], 'the reconnect asks for x again, and the attempts go on on the new connection');
  assert.ok(asked.slice(0, asked.indexOf('3: x z')).every((a) => a === '2: x z' || a === '2: z' || a === '2: x'));
  assert.ok(asked.slice(asked.indexOf('3: x z')).every((a) => a.startsWith('3:')), 'no attempt on the old connection after the new one began');

  herald.close();
  assert.equal(herald._retryTimer, null, 'close clears the retry timer');
  assert.deepEqual(dropped, []);
});

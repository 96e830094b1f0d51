import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Herald, HeraldError, Codes } from '../src/herald.js';
import { env, noServer, mintToken, publish, Recorder, seqs, range, sleep } from './helpers.mjs';

const clients = [];
function connect(url, opts) {
  const h = new Herald(url, { minBackoff: 20, maxBackoff: 300, ...opts });
  clients.push(h);
  return h;
}
after(() => clients.forEach((c) => c.close()));

test('batches reach the local interface, oldest first', { skip: noServer }, async () => {
  const app = new Recorder();
  const herald = connect(env.ws, { token: mintToken('alice'), localInterface: app, client: { name: 'js test', version: '1' } });
  const states = [];
  herald.on('state', (e) => states.push(e.state));
  await herald.connected();
  assert.equal(herald.hello.user_id, 'alice');
  assert.deepEqual(herald.methods, ['of', 'onNotificationReceived', 'take']);

  const subs = await herald.subscribe(['js-news']);
  assert.equal(subs[0].channel, 'js-news');
  await publish('js-news', [{ i: 0 }, { i: 1 }, { i: 2 }]);
  const ns = await app.take('js-news', 3);
  assert.deepEqual(seqs(ns), range(1, 3));
  assert.deepEqual(ns[0].object, { i: 0 });
  assert.equal(app.batches.length, 1, 'one publish within max_delay is one call');
  assert.deepEqual(herald.position('js-news').seq, 3);
  assert.deepEqual(states, ['connecting', 'connected']);

  const p = await herald.presence('js-news');
  assert.equal(p.count, 1);
  assert.deepEqual(p.users, ['alice']);

  await herald.unsubscribe('js-news');
  await publish('js-news', [{ i: 3 }]);
  await sleep(200);
  assert.equal(app.of('js-news').length, 3);
});

test('a refused subscribe is all or nothing, with the reasons', { skip: noServer }, async () => {
  const herald = connect(env.ws, { token: mintToken('alice'), localInterface: new Recorder() });
  await assert.rejects(herald.subscribe('js-ok nobody:owns-this'), (err) => {
    assert.ok(err instanceof HeraldError);
    assert.equal(err.code, Codes.unknownNamespace);
    assert.equal(err.refused[0].channel, 'nobody:owns-this');
    return true;
  });
  assert.deepEqual(herald.channels(), []);
});

test('a client without onNotificationReceived is never called with notifications', { skip: noServer }, async () => {
  let called = 0;
  const herald = connect(env.ws, { token: mintToken('alice'), localInterface: { confirm() { called++; } } });
  await herald.subscribe('js-quiet');
  await publish('js-quiet', [{ i: 1 }]);
  await sleep(200);
  assert.equal(called, 0);
  assert.deepEqual(herald.methods, ['confirm']);
});

test('call() times out and reports herald errors', { skip: noServer }, async () => {
  const herald = connect(env.ws, { token: mintToken('alice') });
  assert.equal(await herald.call('ping'), 'pong');
  await assert.rejects(herald.call('nope'), (err) => err instanceof HeraldError && err.code === Codes.methodNotFound);
});

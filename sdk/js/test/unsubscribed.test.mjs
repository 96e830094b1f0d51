import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Herald } from '../src/herald.js';
import { env, noServer, mintToken, publish, control, Recorder, waitFor } from './helpers.mjs';

const clients = [];
after(() => clients.forEach((c) => c.close()));

// A token that lapses without getToken: after auth.expiry_grace herald drops
// the private subscription and says so; the client forgets it (a reconnect
// resumes only the others) and tells the app.
test('unsubscribed after the grace: the channel is forgotten and reported', { skip: noServer || (!env.echo && 'needs examples/echo-plugin') }, async () => {
  const app = new Recorder();
  const herald = new Herald(env.proxyWs, { token: mintToken('alice', 2000), localInterface: app, minBackoff: 20, maxBackoff: 300 });
  clients.push(herald);
  const ended = [];
  herald.on('unsubscribed', ({ channels }) => ended.push(...channels));
  herald.on('error', () => {}); // token expired and no getToken: expected
  await herald.subscribe(['echo:alice', 'js-unsub']);

  await waitFor('unsubscribed', () => ended.length > 0, 20000);
  assert.deepEqual(ended, [{ channel: 'echo:alice', reason: 'the token expired and no new one came within auth.expiry_grace' }]);
  assert.deepEqual(herald.channels(), ['js-unsub']);
  const [server] = app.of('$server').filter((n) => n.event === 'unsubscribed');
  assert.deepEqual(server.object, { channels: ended });

  // A new token, a cut: the re-subscribe asks for js-unsub alone.
  await herald.authenticate(mintToken('alice'));
  const unrecovered = [];
  herald.on('unrecovered', ({ channels }) => unrecovered.push(...channels));
  const states = [];
  herald.on('state', ({ state }) => states.push(state));
  assert.equal(await control('cut'), '1');
  await waitFor('reconnected', () => states.includes('reconnecting') && herald.state === 'connected');
  await publish('js-unsub', [{ i: 1 }]);
  await app.take('js-unsub', 1);
  assert.deepEqual(herald.channels(), ['js-unsub']);
  assert.deepEqual(unrecovered, []);
});

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Herald } from '../src/herald.js';
import { env, noServer, mintToken, publish, Recorder, sleep, waitFor } from './helpers.mjs';

const clients = [];
after(() => clients.forEach((c) => c.close()));

test('token_expired: getToken, authenticate, and the subscription outlives the grace', { skip: noServer }, async () => {
  const app = new Recorder();
  let fetched = 0;
  const errors = [];
  const herald = new Herald(env.ws, {
    token: mintToken('alice', 3000),
    localInterface: app,
    getToken: async () => { fetched++; return mintToken('alice'); },
  });
  clients.push(herald);
  herald.on('error', (e) => errors.push(e));
  await herald.subscribe('js-token');
  const [expired] = await app.take('$server', 1, 10000);
  assert.equal(expired.event, 'token_expired');
  await waitFor('getToken', () => fetched === 1);
  await sleep(1500); // past auth.expiry_grace
  await publish('js-token', [{ i: 1 }]);
  await app.take('js-token', 1);
  assert.deepEqual(errors, []);
});

test('an expired token is replaced before connecting', { skip: noServer }, async () => {
  let fetched = 0;
  const herald = new Herald(env.ws, {
    token: mintToken('alice', -60000),
    getToken: () => { fetched++; return mintToken('alice'); },
  });
  clients.push(herald);
  await herald.connected();
  assert.equal(fetched, 1);
  assert.equal(herald.hello.user_id, 'alice');
});

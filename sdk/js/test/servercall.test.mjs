import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Herald, HeraldError } from '../src/herald.js';
import { env, noServer, mintToken } from './helpers.mjs';

const skip = noServer || (!env.echo && 'needs the plugin host: examples/echo-plugin (echo.ask calls a client\'s local interface) is not in this tree yet');
const clients = [];
after(() => clients.forEach((c) => c.close()));

test('a plugin calls the local interface and gets its answer', { skip }, async () => {
  let called = 0;
  const herald = new Herald(env.ws, {
    token: mintToken('alice'),
    localInterface: {
      onNotificationReceived() {},
      async confirm({ room }) { called++; return { ok: true, room }; },
      fail() { called++; throw Object.assign(new Error('not today'), { code: 4242 }); },
    },
  });
  clients.push(herald);
  // A plugin may call only connections subscribed to one of its channels.
  await herald.subscribe(['echo:alice']);
  const res = await herald.call('echo.ask', { method: 'confirm', params: { room: 'x' } });
  assert.deepEqual(res.result, { ok: true, room: 'x' });
  await assert.rejects(herald.call('echo.ask', { method: 'fail' }), (err) => err instanceof HeraldError && /not today/.test(err.message));
  await assert.rejects(herald.call('echo.ask', { method: 'launchMissiles' }), HeraldError);
  assert.equal(called, 2, 'only presented methods are called');
});

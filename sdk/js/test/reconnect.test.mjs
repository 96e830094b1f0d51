import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Herald } from '../src/herald.js';
import { env, noServer, mintToken, publish, control, Recorder, seqs, range, sleep, waitFor } from './helpers.mjs';

const clients = [];
function connect(url, opts) {
  const h = new Herald(url, { minBackoff: 20, maxBackoff: 300, ...opts });
  clients.push(h);
  return h;
}
after(() => clients.forEach((c) => c.close()));

test('cut twice mid-stream: every seq once, in order', { skip: noServer }, async () => {
  const app = new Recorder();
  const herald = connect(env.proxyWs, { token: mintToken('alice'), localInterface: app });
  const states = [];
  herald.on('state', (e) => states.push(e.state));
  herald.on('unrecovered', (e) => app.unrecovered.push(e.channels));
  await herald.subscribe('js-storm');

  const total = 600;
  const publisher = (async () => {
    for (let i = 0; i < total; i += 10) {
      await publish('js-storm', range(i, i + 9).map((i) => ({ i })));
    }
  })();
  await app.take('js-storm', 100);
  assert.equal(await control('cut'), '1');
  await app.take('js-storm', 300);
  assert.equal(await control('cut'), '1');
  await publisher;
  const ns = await app.take('js-storm', total);
  await sleep(200);
  assert.deepEqual(seqs(app.of('js-storm')), range(1, total));
  assert.ok(states.includes('reconnecting'));
  assert.equal(herald.state, 'connected');
  assert.deepEqual(app.unrecovered, []);
  assert.equal(ns.length, total);
});

test('away past the history window: told, and nothing of the gap arrives', { skip: noServer }, async () => {
  const app = new Recorder();
  const herald = connect(env.proxyWs, { token: mintToken('alice'), localInterface: app });
  herald.on('unrecovered', (e) => app.unrecovered.push(e.channels));
  await herald.subscribe('js-window');
  await publish('js-window', [{ i: 0 }]);
  await app.take('js-window', 1);

  await control('down?on=1');
  await control('cut');
  await publish('js-window', range(1, 250).map((i) => ({ i }))); // history.size is 200
  await control('down?on=0');
  await waitFor('the unrecovered event', () => app.unrecovered.length > 0);
  assert.deepEqual(app.unrecovered, [['js-window']]);
  await publish('js-window', [{ i: 251 }]);
  await app.take('js-window', 2);
  assert.deepEqual(seqs(app.of('js-window')), [1, 252]);
});

test('a server restart: recovered false, then the new epoch from seq 1', { skip: noServer }, async () => {
  const app = new Recorder();
  const herald = connect(env.ws, { token: mintToken('alice'), localInterface: app });
  herald.on('unrecovered', (e) => app.unrecovered.push(e.channels));
  await herald.subscribe(['js-restart']);
  await publish('js-restart', [{ i: 0 }, { i: 1 }]);
  await app.take('js-restart', 2);
  const before = herald.position('js-restart');

  await control('restart');
  await waitFor('the unrecovered event', () => app.unrecovered.length > 0);
  assert.deepEqual(app.unrecovered, [['js-restart']]);
  await publish('js-restart', [{ i: 2 }]);
  await app.take('js-restart', 3);
  assert.deepEqual(seqs(app.of('js-restart')), [1, 2, 1]);
  assert.notEqual(herald.position('js-restart').epoch, before.epoch);
});

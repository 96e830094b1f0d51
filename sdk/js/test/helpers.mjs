// Shared by the tests that run against a real herald: the Go harness
// (sdk/js/js_test.go) starts it and sets these variables.
import { createHmac } from 'node:crypto';

export const env = {
  ws: process.env.HERALD_WS_URL,
  proxyWs: process.env.HERALD_PROXY_WS_URL,
  http: process.env.HERALD_HTTP_URL,
  apiKey: process.env.HERALD_API_KEY,
  secret: process.env.HERALD_TOKEN_SECRET,
  control: process.env.HERALD_CONTROL_URL,
  echo: process.env.HERALD_ECHO === '1',
};

/** Skip reason when not run by the Go harness. */
export const noServer = env.ws ? false : 'needs a herald: run `go test ./sdk/js/`';

const b64url = (s) => Buffer.from(s).toString('base64url');

/** An HS256 token for sub, valid ttlMs. */
export function mintToken(sub, ttlMs = 3600_000) {
  const now = Math.floor(Date.now() / 1000);
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify({ sub, iat: now, exp: Math.floor((Date.now() + ttlMs) / 1000) }));
  const sig = createHmac('sha256', env.secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

/** Publish through the HTTP API; objects become notifications of channel. */
export async function publish(channel, objects) {
  const res = await fetch(`${env.http}/v1/publish`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${env.apiKey}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ notifications: objects.map((object) => ({ channel, event: 'new', object_type: 'message', object })) }),
  });
  if (!res.ok) throw new Error(`publish: ${res.status} ${await res.text()}`);
  return (await res.json()).results;
}

/** Drive the harness: cut, down?on=1, down?on=0, restart. */
export async function control(what) {
  const res = await fetch(`${env.control}/${what}`, { method: 'POST' });
  if (!res.ok) throw new Error(`control ${what}: ${res.status}`);
  return res.text();
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function waitFor(what, pred, timeout = 15000) {
  const end = Date.now() + timeout;
  while (!(await pred())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** A local interface that records what herald calls. */
export class Recorder {
  constructor() {
    this.batches = [];
    this.unrecovered = [];
  }

  onNotificationReceived({ notifications }) {
    this.batches.push(notifications);
  }

  of(channel) {
    return this.batches.flat().filter((n) => n.channel === channel);
  }

  async take(channel, n, timeout) {
    await waitFor(`${n} notifications of ${channel} (have ${this.of(channel).length})`, () => this.of(channel).length >= n, timeout);
    return this.of(channel);
  }
}

/** Asserts seqs are from, from+1, ... */
export function seqs(ns) {
  return ns.map((n) => n.seq);
}

export function range(from, to) {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

// The demo page: the JavaScript client (served from sdk/js/src) in three
// steps, connect, subscribe, watch. Its local interface is a plain object
// with one method, onNotificationReceived, which herald calls with batches.
import { Herald } from '/sdk/herald.js';

const $ = (id) => document.getElementById(id);
let herald = null;
let batches = 0;
let notifications = 0;
let everConnected = false;

async function devToken(user) {
  const res = await fetch(`/demo/token?sub=${encodeURIComponent(user)}`);
  if (!res.ok) throw new Error(`dev token: ${res.status}`);
  return (await res.json()).token;
}

function showState(state, error) {
  $('state').textContent = error ? `${state}: ${error.message}` : state;
  $('state').dataset.state = state;
  const connected = state === 'connected';
  $('subscribe-btn').disabled = !herald;
  $('call-btn').disabled = !connected;
  // A connection that never opened is, most often, refused for its
  // origin: the browser reports only "WebSocket error", herald's log says
  // more.
  if (error && !everConnected) {
    $('state').textContent += ` — could not connect. Is herald running at ${$('url').value}? If it is, this page's origin (${location.origin}) must be in server.allowed_origins of its config; herald's log names a refused origin.`;
  }
  if (connected) everConnected = true;
  $('connect-btn').disabled = !!herald && state !== 'closed';
  $('disconnect-btn').disabled = !herald || state === 'closed';
  if (connected) $('subscribe-btn').disabled = false;
}

function el(tag, { dataset = {}, ...props } = {}, ...children) {
  const e = document.createElement(tag);
  Object.assign(e, props);
  for (const [k, v] of Object.entries(dataset)) e.dataset[k] = v;
  e.append(...children);
  return e;
}

// The local interface: the methods herald may call on this page.
const localInterface = {
  onNotificationReceived({ notifications: ns }) {
    batches++;
    notifications += ns.length;
    $('batch-count').textContent = batches;
    $('notification-count').textContent = notifications;
    const list = el('ul');
    for (const n of ns) {
      const text = `${n.channel} #${n.seq}  ${n.event} ${n.object_type}  ${JSON.stringify(n.object)}`;
      list.append(el('li', {
        className: n.channel === '$server' ? 'notification server' : 'notification',
        textContent: text,
        dataset: { channel: n.channel, seq: String(n.seq), event: n.event },
      }));
    }
    const time = new Date().toLocaleTimeString();
    const item = el('li', { className: 'batch', dataset: { size: String(ns.length) } },
      el('span', { className: 'batch-head', textContent: `${time} — one call carried ${ns.length} notification${ns.length === 1 ? '' : 's'}` }),
      list);
    $('feed').prepend(item);
  },
};

$('connect').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const user = $('user').value.trim() || 'alice';
  let token = $('token').value.trim();
  try {
    if (!token) token = await devToken(user);
    everConnected = false;
    herald = new Herald($('url').value.trim(), {
      token,
      // A real app asks its backend; herald's token_expired ends up here.
      getToken: () => devToken(user),
      localInterface,
      client: { name: 'herald demo page', version: '1' },
      minBackoff: 100,
      maxBackoff: 2000,
    });
    window.herald = herald; // for the console
    herald.on('state', ({ state, error }) => showState(state, error));
    herald.on('unrecovered', ({ channels }) => {
      const box = $('unrecovered');
      box.hidden = false;
      box.dataset.channels = [box.dataset.channels, ...channels].filter(Boolean).join(' ');
      box.textContent = `recovered: false for ${box.dataset.channels} — notifications were missed (server restart or history window passed): reload their state from your API.`;
    });
    herald.on('error', (err) => console.warn('herald:', err));
    showState(herald.state);
  } catch (err) {
    showState('closed', err);
  }
});

$('disconnect-btn').addEventListener('click', () => {
  herald?.close();
  showState('closed');
  herald = null;
  showState('closed');
});

$('subscribe').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  if (!herald) return;
  try {
    const subs = await herald.subscribe($('channels').value);
    for (const s of subs) {
      if (document.querySelector(`#subscriptions li[data-channel="${CSS.escape(s.channel)}"]`)) continue;
      const drop = el('button', { type: 'button', className: 'unsubscribe', textContent: 'Unsubscribe' });
      const item = el('li', { textContent: `${s.channel} (at seq ${s.seq}, epoch ${s.epoch}) `, dataset: { channel: s.channel } }, drop);
      drop.addEventListener('click', async () => {
        try {
          await herald.unsubscribe([s.channel]);
          item.remove();
        } catch (err) {
          item.append(el('span', { className: 'error', textContent: ` unsubscribe failed: ${err.message}` }));
        }
      });
      $('subscriptions').append(item);
    }
  } catch (err) {
    const why = err.refused?.length ? err.refused.map((r) => `${r.channel}: ${r.reason}`).join('; ') : err.message;
    $('subscriptions').append(el('li', { className: 'error', textContent: `refused: ${why}` }));
  }
});

$('publish').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  let object;
  try {
    object = JSON.parse($('pub-object').value);
  } catch (err) {
    $('publish-result').textContent = `object is not JSON: ${err.message}`;
    return;
  }
  const count = Math.max(1, Math.min(500, Number($('pub-count').value) || 1));
  const n = { channel: $('pub-channel').value.trim(), event: $('pub-event').value.trim(), object_type: 'message', object };
  const res = await fetch('/demo/publish', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ notifications: Array.from({ length: count }, () => n) }),
  });
  const body = await res.text();
  $('publish-result').textContent = res.ok ? `published: ${body}` : `refused (${res.status}): ${body}`;
});

// A plugin method, called as this connection's user: the result or the
// error (code and message) as herald answered it.
$('call').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  if (!herald) return;
  let params;
  try {
    params = JSON.parse($('call-params').value || '{}');
  } catch (err) {
    $('call-result').textContent = `params are not JSON: ${err.message}`;
    return;
  }
  const method = $('call-method').value.trim();
  try {
    const result = await herald.call(method, params);
    $('call-result').textContent = `${method} → ${JSON.stringify(result)}`;
    $('call-result').dataset.outcome = 'result';
  } catch (err) {
    $('call-result').textContent = `${method} failed${err.code ? ` (${err.code})` : ''}: ${err.message}`;
    $('call-result').dataset.outcome = 'error';
  }
});

// Where herald is, and whether it lets this page in, from the demo server.
fetch('/demo/config').then((r) => r.json()).then((c) => {
  $('url').value = c.ws_url;
  if (!c.origin_allowed) {
    const box = $('origin-warning');
    box.hidden = false;
    box.textContent = `Herald will refuse this page: its origin ${c.origin} is not in server.allowed_origins of herald's config. Add "${c.origin}" there and send herald SIGHUP (or restart it), or serve the page on an allowed origin (make demo DEMO_LISTEN=host:port).`;
  }
});
showState('idle');

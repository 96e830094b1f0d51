// Herald's admin page: reads /admin/api/* every few seconds and publishes
// from its form. No external assets; the browser sends the admin login
// (HTTP basic authentication) with every request to this origin.
'use strict';

const refreshMs = 2000;
const $ = (id) => document.getElementById(id);

async function getJSON(path) {
  const res = await fetch(path, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    throw new Error(`${path}: ${res.status} ${(body.error && body.error.message) || res.statusText}`);
  }
  return body;
}

function cell(row, text, cls) {
  const td = document.createElement('td');
  td.textContent = text === undefined || text === null ? '' : String(text);
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function fill(tbody, items, build) {
  const rows = items.map((item) => {
    const tr = document.createElement('tr');
    build(tr, item);
    return tr;
  });
  tbody.replaceChildren(...rows);
}

function when(t) {
  if (!t || t.startsWith('0001-')) return '';
  return new Date(t).toLocaleString();
}

async function refresh() {
  try {
    const [overview, conns, chans, plugins, errors] = await Promise.all([
      getJSON('api/overview'), getJSON('api/connections'), getJSON('api/channels'),
      getJSON('api/plugins'), getJSON('api/errors'),
    ]);
    $('version').textContent = overview.version || '?';
    $('started').textContent = when(overview.started);
    $('ready').dataset.ready = String(overview.ready);
    $('ready').textContent = overview.draining ? 'draining' : (overview.ready ? 'ready' : 'not ready: ' + (overview.not_ready || []).join('; '));

    $('conn-count').textContent = conns.count;
    $('conn-shown').textContent = conns.shown;
    fill($('connections'), conns.connections, (tr, c) => {
      tr.dataset.id = c.id;
      tr.dataset.user = c.user;
      cell(tr, c.id); cell(tr, c.user || '(anonymous)'); cell(tr, c.remote); cell(tr, when(c.since));
      cell(tr, c.subscriptions, 'num'); cell(tr, c.queued_bytes, 'num');
    });

    $('channel-count').textContent = chans.count;
    $('channel-shown').textContent = chans.shown;
    fill($('channels'), chans.channels, (tr, ch) => {
      tr.dataset.channel = ch.channel;
      tr.dataset.subscribers = ch.subscribers;
      cell(tr, ch.channel); cell(tr, ch.subscribers, 'num');
    });

    $('plugin-count').textContent = plugins.plugins.length;
    fill($('plugins'), plugins.plugins, (tr, p) => {
      tr.dataset.plugin = p.name;
      tr.dataset.state = p.state;
      cell(tr, p.name); cell(tr, p.state, 'state-' + p.state); cell(tr, p.version);
      cell(tr, p.restarts, 'num'); cell(tr, when(p.since)); cell(tr, p.last_error, 'error'); cell(tr, p.last_exit);
    });

    $('error-count').textContent = errors.errors.length;
    $('errors').replaceChildren(...errors.errors.map((e) => {
      const li = document.createElement('li');
      li.className = 'level-' + e.level;
      li.textContent = `${when(e.time)} ${e.level} ${e.logger}: ${e.message}`;
      return li;
    }));

    $('updated').textContent = new Date().toLocaleTimeString();
    $('fetch-error').hidden = true;
    document.body.dataset.loaded = 'true';
  } catch (err) {
    $('fetch-error').textContent = err.message;
    $('fetch-error').hidden = false;
  }
}

$('publish-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const out = $('publish-result');
  out.dataset.state = 'sending';
  out.textContent = 'publishing…';
  let object;
  try {
    object = JSON.parse($('pub-object').value || 'null');
  } catch (err) {
    out.dataset.state = 'error';
    out.textContent = 'object: not valid JSON: ' + err.message;
    return;
  }
  const body = {
    channel: $('pub-channel').value.trim(), event: $('pub-event').value.trim(),
    object_type: $('pub-type').value.trim(), object,
  };
  try {
    const res = await fetch('api/publish', {
      method: 'POST', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
    });
    const reply = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error((reply.error && reply.error.message) || res.statusText);
    const r = reply.results[0];
    out.dataset.state = 'ok';
    out.textContent = `published to ${r.channel}: seq ${r.seq}, id ${r.id}`;
    refresh();
  } catch (err) {
    out.dataset.state = 'error';
    out.textContent = 'publish failed: ' + err.message;
  }
});

refresh();
setInterval(refresh, refreshMs);

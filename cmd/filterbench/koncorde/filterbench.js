#!/usr/bin/env node
// Koncorde side of cmd/filterbench: same flags, same JSON line.
//   node filterbench.js -filters F.json -docs D.json [-seconds 5]
"use strict";
const fs = require("fs");
const path = require("path");
// The same loader as the differential test: native re2 when built, else the js engine.
const koncorde = require(path.join(__dirname, "../../../plugins/documents/filter/testdata/koncorde_load.js"));

function flag(name, def) {
  const i = process.argv.indexOf("-" + name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}

const filters = JSON.parse(fs.readFileSync(flag("filters"), "utf8"));
const docs = JSON.parse(fs.readFileSync(flag("docs"), "utf8"));
const seconds = Number(flag("seconds", "5"));

const k = koncorde.create();
let t0 = process.hrtime.bigint();
let registered = 0;
// Filters that normalize alike share an ID; matches are counted per
// registered filter so that engines with different ID schemes agree.
const perId = new Map();
for (const f of filters) {
  try {
    const id = k.register(f);
    perId.set(id, (perId.get(id) || 0) + 1);
    registered++;
  } catch (e) {
    // counted out, as cmd/filterbench does
  }
}
const registerMs = Number(process.hrtime.bigint() - t0) / 1e6;
if (global.gc) global.gc();
const rssMib = process.memoryUsage().rss / (1 << 20);

let total = 0;
for (const d of docs) for (const id of k.test(d)) total += perId.get(id);

let n = 0;
const deadline = process.hrtime.bigint() + BigInt(Math.round(seconds * 1e9));
t0 = process.hrtime.bigint();
for (;;) {
  for (let i = 0; i < 64; i++) {
    k.test(docs[n % docs.length]);
    n++;
  }
  if (process.hrtime.bigint() >= deadline) break;
}
const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;

process.stdout.write(
  JSON.stringify({
    engine: "koncorde",
    regexp_engine: koncorde.engine,
    filters: registered,
    register_ms: Math.round(registerMs),
    rss_mib: Math.round(rssMib),
    docs_per_s: Math.round(n / elapsed),
    matches_per_doc: Math.round((total / docs.length) * 1000) / 1000,
    total_matches: total,
    docs: docs.length,
  }) + "\n",
);

// Reads {"filters": [...], "docs": [...]} on stdin and prints, as JSON,
// which filters Koncorde accepts and which documents each one matches:
// {"errors": [msg|null per filter], "matches": [[filter index...] per doc]}
// A document for which Koncorde throws gets null instead of a list.
"use strict";
const koncorde = require("./koncorde_load.js");

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (c) => (input += c));
process.stdin.on("end", () => {
  const { filters, docs } = JSON.parse(input);
  const k = koncorde.create();
  const errors = [];
  const byId = new Map();
  filters.forEach((f, i) => {
    let n;
    try {
      n = k.normalize(f);
    } catch (e) {
      errors.push(String(e.message));
      return;
    }
    // A failed store leaves a half-registered filter behind that cannot
    // be removed either: try it on a throwaway instance first.
    try {
      koncorde.create().store(n);
    } catch (e) {
      errors.push(String(e.message));
      return;
    }
    k.store(n);
    errors.push(null);
    if (!byId.has(n.id)) byId.set(n.id, []);
    byId.get(n.id).push(i);
  });
  const matches = docs.map((d) => {
    try {
      const out = [];
      for (const id of k.test(d)) out.push(...(byId.get(id) || []));
      return out.sort((a, b) => a - b);
    } catch (e) {
      return null;
    }
  });
  process.stdout.write(JSON.stringify({ errors, matches }));
});

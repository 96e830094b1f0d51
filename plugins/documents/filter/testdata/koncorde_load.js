// Loads the real Koncorde 4.x from NODE_PATH.
//
// Koncorde requires its native "re2" module when it loads, but uses it only
// with its default regExpEngine "re2". npm builds re2 from C++ source when no
// prebuilt binary can be downloaded (about 25 minutes on 2 cores), so CI
// installs Koncorde with --ignore-scripts: re2 is then present but unbuilt.
// In that case, and only then, "re2" resolves to a stub that Koncorde never
// calls, and Koncorde runs with its documented regExpEngine "js". The
// generated filters use regexps on which both engines agree.
"use strict";
const Module = require("module");

function nativeRe2() {
  try {
    new (require("re2"))("a").test("a");
    return true;
  } catch (e) {
    return false;
  }
}

function load() {
  let engine = "re2";
  if (process.env.KONCORDE_REGEXP_ENGINE === "js" || !nativeRe2()) {
    engine = "js";
    const original = Module._load;
    Module._load = function (request, ...rest) {
      if (request === "re2") {
        return class RE2NotBuilt {
          constructor() {
            throw new Error("re2 is not built; Koncorde runs with regExpEngine js");
          }
        };
      }
      return original.call(this, request, ...rest);
    };
  }
  const { Koncorde } = require("koncorde");
  return {
    engine,
    create: () => new Koncorde({ regExpEngine: engine }),
  };
}

module.exports = load();

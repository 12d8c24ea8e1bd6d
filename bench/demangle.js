"use strict";
// Shared by bench/v8_compile.js and bench/wasm_cost.js, which name a module's functions.

// Rust's legacy mangling (`_ZN` length-prefixed parts `E`), readable enough to find the code.
function demangle(name) {
  const m = /^_ZN(.*)E$/.exec(name);
  if (!m) return name;
  const parts = [];
  for (let rest = m[1]; rest.length > 0;) {
    const len = /^(\d+)/.exec(rest);
    if (!len) return name;
    parts.push(rest.substr(len[1].length, +len[1]));
    rest = rest.substr(len[1].length + +len[1]);
  }
  if (/^h[0-9a-f]{16}$/.test(parts[parts.length - 1])) parts.pop();
  const escapes = { "$LT$": "<", "$GT$": ">", "$u20$": " ", "$RF$": "&", "$C$": ",", "$u7b$": "{", "$u7d$": "}", "$BP$": "*" };
  return parts.join("::").replace(/\$[A-Za-z0-9]+\$/g, (e) => escapes[e] || e).replace(/\.\./g, "::");
}

module.exports = { demangle };

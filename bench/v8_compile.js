#!/usr/bin/env node
// What compiling a module costs V8, function by function, as Envoy compiles it when it loads
// the filter (TurboFan for every function, no Liftoff, no lazy compilation): the zone memory
// each function needed, its wasm body and machine code sizes, and the process's peak RSS.
// The memory V8 takes to compile the largest functions is what Envoy's allocator keeps after
// load (docs/performance.md, "Memory"); Node runs the same engine, so this finds them in a
// second without an Envoy. Names come from the module's name section when it has one (a
// build with `CARGO_PROFILE_RELEASE_STRIP=false`, and `wasm-opt -g`).
//
//   node bench/v8_compile.js dist/bearer_guard.wasm [top N]
//
// It re-runs itself under the V8 flags it needs.
"use strict";
const { execFileSync } = require("child_process");
const fs = require("fs");
const { demangle } = require("./demangle");

const FLAGS = ["--no-liftoff", "--no-wasm-lazy-compilation"];
const [file, top = "15"] = process.argv.slice(2);
if (!file) {
  console.error("usage: node bench/v8_compile.js MODULE.wasm [top N]");
  process.exit(2);
}

if (process.env.V8_COMPILE_CHILD) {
  new WebAssembly.Module(fs.readFileSync(file));
  const status = fs.readFileSync("/proc/self/status", "utf8");
  console.log("peak", status.match(/VmHWM:\s+(\d+)/)[1]);
  return;
}

// Function names from the name section (subsection 1), by function index.
function names(bytes) {
  const out = new Map();
  let i = 8;
  const leb = () => {
    let result = 0, shift = 0, byte;
    do { byte = bytes[i++]; result += (byte & 0x7f) * 2 ** shift; shift += 7; } while (byte & 0x80);
    return result;
  };
  while (i < bytes.length) {
    const id = bytes[i++], size = leb(), end = i + size;
    if (id === 0) {
      const length = leb();
      if (bytes.toString("utf8", i, i + length) === "name") {
        i += length;
        while (i < end) {
          const sub = bytes[i++], subSize = leb(), subEnd = i + subSize;
          if (sub === 1) {
            for (let n = leb(); n > 0; n--) {
              const index = leb(), nameLength = leb();
              out.set(index, bytes.toString("utf8", i, i + nameLength));
              i += nameLength;
            }
          }
          i = subEnd;
        }
      }
    }
    i = end;
  }
  return out;
}

const run = (extra) => execFileSync(process.execPath, [...FLAGS, ...extra, __filename, file],
  { env: { ...process.env, V8_COMPILE_CHILD: "1" }, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
const trace = run(["--single-threaded", "--trace-wasm-compilation-times"]);
const parallel = run([]);
const byName = names(fs.readFileSync(file));
const rows = [...trace.matchAll(/took (\d+) ms and (\d+) \/ (\d+) max\/total bytes; bodysize (\d+) codesize (\d+) name wasm-function#(\d+)/g)]
  .map(([, ms, max, total, body, code, index]) => ({ ms: +ms, max: +max, total: +total, body: +body, code: +code, index: +index }));
const sum = (key) => rows.reduce((s, r) => s + r[key], 0);
const kb = (n) => Math.round(n / 1000).toLocaleString("en-US");
console.log(`${file}: ${rows.length} functions, ${kb(sum("body"))} KB of wasm bodies -> ${kb(sum("code"))} KB of machine code`);
console.log(`peak RSS compiling in parallel (as Envoy): ${kb(+parallel.match(/peak (\d+)/)[1] * 1024)} KB; one thread: ${kb(+trace.match(/peak (\d+)/)[1] * 1024)} KB`);
console.log("zone KB (max)  body KB  code KB  ms  function");
for (const r of rows.sort((a, b) => b.max - a.max).slice(0, +top)) {
  const name = demangle(byName.get(r.index) || `#${r.index}`).slice(0, 100);
  console.log(`${kb(r.max).padStart(13)}  ${kb(r.body).padStart(7)}  ${kb(r.code).padStart(7)}  ${String(r.ms).padStart(3)}  ${name}`);
}

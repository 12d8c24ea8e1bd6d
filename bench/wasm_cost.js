#!/usr/bin/env node
// The filter's own time per request inside V8, by request path (`make wasm-cost`): the built
// module (SDK, shell and core, as Envoy loads it) runs requests against a scripted proxy-wasm
// host in Node, whose V8 compiles it as Envoy does (TurboFan, no Liftoff, no lazy
// compilation). A CPU profile of each path gives the time spent in the module's own functions
// per request, and which functions take it. The host's side (here JavaScript; in Envoy, C++
// and BoringSSL) is not counted: `verify_signature` is answered by Node's crypto so that the
// module's start-up self-test passes and requests take Envoy's host-crypto path.
//
// Why: `make cost` counts the core's instructions natively (no SDK, no shell, another
// compiler backend) and `make bench` measures whole requests in Envoy, where the filter's own
// work is a few microseconds of 40-130 and the machine's noise is larger than that. Envoy
// under `perf` (2026-12-07, one run) put 2.9 us of V8-generated code (the module and its
// host-call wrappers) per cache hit; this tool gave 1.5-2.8 us for the module alone on that
// path, and names the functions.
//
//   node bench/wasm_cost.js MODULE.wasm POOLS_DIR [requests per path]
//
// MODULE.wasm needs its name section (`make wasm-cost` builds one). It re-runs itself once per
// path under the V8 flags and the profiler it needs. For a closer look at a change:
// WASM_COST_PATHS=hit,miss_rs256 runs only those paths, WASM_COST_TOP=30 names more functions
// a path (8 by default).
"use strict";
const { execFileSync } = require("child_process");
const crypto = require("crypto");
const fs = require("fs");
const os = require("os");
const path = require("path");
const { demangle } = require("./demangle");

const FLAGS = ["--no-liftoff", "--no-wasm-lazy-compilation"];
// name -> [token file, jwt_cache_size, what it is, the error_description of every denial
// (null: every request goes on), the signatures checked through the host: "each" request,
// "none", or at most the "logged" denials (an expired token is refused on its times; only a
// denial its decision line names has its signature checked)]
const PATHS = {
  hit: ["rs256-repeat.txt", 1000, "cache hit (one RS256 token, repeated)", null, "none"],
  // As make bench's misuse variant: every request counted into the token's shared window.
  misuse: ["rs256-repeat.txt", 1000, "cache hit, misuse detection on", null, "none"],
  miss_rs256: ["rs256-distinct.txt", 0, "no cache (distinct RS256)", null, "each"],
  miss_es256: ["es256-distinct.txt", 0, "no cache (distinct ES256)", null, "each"],
  bad_signature: ["rs256-invalid.txt", 0, "bad signature (distinct RS256)", "signature verification failed", "each"],
  expired: ["rs256-expired.txt", 0, "expired (distinct RS256, signature valid)", "token expired", "logged"],
};
const WARM_UP = 500;
const keys = new Map(); // the host's imported keys, by their DER (Node's crypto, not counted)

const [file, pools, count = "40000"] = process.argv.slice(2);
if (!file || !pools) {
  console.error("usage: node bench/wasm_cost.js MODULE.wasm POOLS_DIR [requests per path]");
  process.exit(2);
}

if (process.env.WASM_COST_PATH) {
  runPath(PATHS[process.env.WASM_COST_PATH], +count);
  return;
}

// The parent: children per path, each profiled; the module's self time per request from it.
// Time on a shared machine only adds (another process, a steal, a collection in the
// profile's wall-clock samples), so each path runs REPEATS times and the least is reported,
// with the spread.
const REPEATS = 3;
const rows = [];
const only = process.env.WASM_COST_PATHS ? process.env.WASM_COST_PATHS.split(",") : Object.keys(PATHS);
const TOP = process.env.WASM_COST_TOP === undefined ? 8 : Number(process.env.WASM_COST_TOP);
if (!Number.isInteger(TOP) || TOP < 0) throw new Error(`WASM_COST_TOP: not a count: ${process.env.WASM_COST_TOP}`);
for (const name of only) {
  if (!Object.hasOwn(PATHS, name)) throw new Error(`WASM_COST_PATHS: no path ${name} (${Object.keys(PATHS).join(", ")})`);
  const [tokens, cache, what, denial, verified] = PATHS[name];
  const runs = [];
  for (let repeat = 0; repeat < REPEATS; repeat++) runs.push(profiledRun(name, what, denial, verified));
  runs.sort((a, b) => a.us_per_request - b.us_per_request);
  const spread = [runs[0].us_per_request, runs[runs.length - 1].us_per_request];
  rows.push({ name, what, tokens, cache, ...runs[0], spread });
}
for (const row of rows) {
  console.log(`${row.what}: ${row.us_per_request.toFixed(2)} us per request in the module ` +
    `(least of ${REPEATS} runs, up to ${row.spread[1].toFixed(2)}; ${row.requests} requests each, ${row.decided}; ` +
    `host calls per request: ${JSON.stringify(row.calls)})`);
  for (const [fn, us] of row.top) console.log(`  ${us.toFixed(3).padStart(7)} us  ${fn}`);
}
console.log(JSON.stringify(rows.map(({ name, what, us_per_request, spread, calls, decided }) =>
  ({ name, what, us_per_request: +us_per_request.toFixed(3), spread: spread.map((us) => +us.toFixed(3)), decided, calls }))));

function profiledRun(name, what, denial, verified) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "wasm-cost-"));
  try {
    const out = execFileSync(process.execPath, [...FLAGS, "--cpu-prof", `--cpu-prof-dir=${dir}`,
      "--cpu-prof-interval", "50", __filename, file, pools, count],
      { env: { ...process.env, WASM_COST_PATH: name }, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
    const result = JSON.parse(out);
    // A path decided otherwise (the pools expired, say, or a denial for another reason), or
    // signatures checked in wasm (a failed self-test), or a cache that did not hit: each
    // measured something else.
    const expected = denial === null ? `${result.requests} continued` : `${result.requests} denied 401 "${denial}"`;
    const got = denial === null ? `${result.continued} continued` : `${result.denied[`401 ${denial}`] || 0} denied 401 "${denial}"`;
    if (got !== expected) {
      throw new Error(`${what}: ${result.decided}, expected ${expected}`);
    }
    const verifies = result.exact_calls.proxy_call_foreign_function || 0;
    const logged = result.exact_calls.proxy_log || 0;
    const [asExpected, expectedCalls] = {
      each: [verifies === result.requests, `${result.requests}`],
      none: [verifies === 0, "0"],
      logged: [verifies <= logged && verifies < result.requests / 10, `at most ${logged} (the logged denials), under a tenth`],
    }[verified];
    if (!asExpected) {
      throw new Error(`${what}: ${verifies} verify_signature calls in ${result.requests} requests, expected ${expectedCalls}`);
    }
    const profile = JSON.parse(fs.readFileSync(path.join(dir, fs.readdirSync(dir)[0]), "utf8"));
    return { ...result, ...moduleTime(profile, result.requests) };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// Self time of the module's functions (frames whose url is the module), per request; the
// warm-up requests are in the profile too.
function moduleTime(profile, requests) {
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  profile.samples.forEach((id, i) => {
    const frame = nodes.get(id).callFrame;
    if (frame.url.startsWith("wasm://")) {
      self.set(frame.functionName, (self.get(frame.functionName) || 0) + profile.timeDeltas[i]);
    }
  });
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const per = requests + WARM_UP;
  const top = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, TOP)
    .map(([fn, us]) => [demangle(fn).slice(0, 110), us / per]);
  return { us_per_request: total / per, top };
}

// The child: the module, a scripted host, and requests through it as Envoy makes them.
function runPath([tokensFile, cache], requests) {
  const tokens = fs.readFileSync(path.join(pools, tokensFile), "utf8").split("\n").filter(Boolean);
  const jwks = JSON.parse(fs.readFileSync(path.join(pools, "jwks.json"), "utf8"));
  // The bench's provider (bench/run.py): forward on.
  const misuse = process.env.WASM_COST_PATH === "misuse";
  const config = Buffer.from(JSON.stringify({
    providers: { bench: { issuer: "https://bench.bearer-guard.local", audiences: ["bench-api"], local_jwks: jwks, forward: true } },
    jwt_cache_size: cache,
    ...(misuse ? { anomaly: { max_requests: 4000000000, window_seconds: 86400 } } : {}),
  }));
  // Envoy's shared data: a value and its CAS per key (the host's copies are not counted).
  const shared = new Map();
  const module = new WebAssembly.Module(fs.readFileSync(file));
  let instance, requestHeaders = [], calls = {}, denied = {};
  const bytes = () => new Uint8Array(instance.exports.memory.buffer);
  const view = () => new DataView(instance.exports.memory.buffer);
  const text = (at, length) => Buffer.from(instance.exports.memory.buffer, at, length).toString();
  // Bytes handed to the module: allocated by it, as Envoy does.
  const give = (data, retData, retSize) => {
    const at = instance.exports.proxy_on_memory_allocate(data.length);
    bytes().set(data, at);
    view().setUint32(retData, at, true);
    view().setUint32(retSize, data.length, true);
    return 0;
  };
  const OK = 0, NOT_FOUND = 1, CAS_MISMATCH = 8;
  const host = {
    proxy_log: () => OK,
    proxy_get_current_time_nanoseconds: (ret) => { view().setBigUint64(ret, BigInt(Date.now()) * 1000000n, true); return OK; },
    // 7: the plugin configuration; 6: the VM configuration (none).
    proxy_get_buffer_bytes: (type, start, max, retData, retSize) =>
      type === 7 ? give(config, retData, retSize) : type === 6 ? give(Buffer.alloc(0), retData, retSize) : NOT_FOUND,
    proxy_get_header_map_pairs: (map, retData, retSize) =>
      give(serializePairs(map === 0 ? requestHeaders : [[":status", "200"]]), retData, retSize),
    proxy_get_header_map_value: (map, key, keyLength, retData, retSize) => {
      const name = text(key, keyLength);
      const found = (map === 0 ? requestHeaders : []).find(([n]) => n === name);
      return found ? give(Buffer.from(found[1]), retData, retSize) : NOT_FOUND;
    },
    proxy_call_foreign_function: (name, nameLength, args, argsLength, retData, retSize) => {
      if (text(name, nameLength) !== "verify_signature") return NOT_FOUND;
      const ok = verifySignature(Buffer.from(instance.exports.memory.buffer, args, argsLength));
      return give(Buffer.from([8, ok ? 1 : 0]), retData, retSize); // VerifySignatureResult.result
    },
    proxy_send_local_response: (status, details, detailsLength, body, bodyLength) => {
      const description = JSON.parse(text(body, bodyLength)).error_description;
      denied[`${status} ${description}`] = (denied[`${status} ${description}`] || 0) + 1;
      return OK;
    },
    proxy_define_metric: (type, name, nameLength, ret) => { view().setUint32(ret, 1, true); return OK; },
    proxy_get_shared_data: (key, keyLength, retData, retSize, retCas) => {
      const found = shared.get(text(key, keyLength));
      if (!found) return NOT_FOUND;
      view().setUint32(retCas, found.cas, true);
      return give(found.value, retData, retSize);
    },
    proxy_set_shared_data: (key, keyLength, value, valueLength, cas) => {
      const name = text(key, keyLength);
      const found = shared.get(name);
      if (cas !== 0 && found && found.cas !== cas) return CAS_MISMATCH;
      shared.set(name, { value: Buffer.from(bytes().slice(value, value + valueLength)), cas: (found ? found.cas : 0) + 1 });
      return OK;
    },
    proxy_get_property: (at, length, retData, retSize) =>
      text(at, length) === "source\0address" ? give(Buffer.from("127.0.0.1:40000"), retData, retSize) : NOT_FOUND,
  };
  const env = {};
  for (const { module: from, name } of WebAssembly.Module.imports(module)) {
    if (from !== "env") continue;
    const call = host[name] || (() => OK);
    env[name] = (...args) => { calls[name] = (calls[name] || 0) + 1; return call(...args); };
  }
  const wasi = {
    random_get: (at, length) => { crypto.randomFillSync(bytes(), at, length); return 0; },
    environ_get: () => 0,
    environ_sizes_get: (count, size) => { view().setUint32(count, 0, true); view().setUint32(size, 0, true); return 0; },
    fd_write: () => 0,
    proc_exit: (code) => { throw new Error(`the module exited (${code})`); },
  };
  instance = new WebAssembly.Instance(module, { env, wasi_snapshot_preview1: wasi });
  const x = instance.exports;
  x._initialize();
  x.proxy_on_context_create(1, 0);
  x.proxy_on_vm_start(1, 0);
  if (x.proxy_on_configure(1, config.length) !== 1) throw new Error("the module refused its configuration");
  let context = 2, continued = 0;
  const request = (token) => {
    requestHeaders = [[":authority", "127.0.0.1"], [":path", "/"], [":method", "GET"], [":scheme", "http"],
      ["authorization", `Bearer ${token}`], ["user-agent", "wrk"], ["x-forwarded-proto", "http"],
      ["x-request-id", "0".repeat(36)]];
    const id = context++;
    x.proxy_on_context_create(id, 1);
    if (x.proxy_on_request_headers(id, requestHeaders.length, 1) === 0) continued++;
    // As Envoy does: a callback the module does not export is not called.
    x.proxy_on_response_headers?.(id, 1, 0);
    x.proxy_on_response_body?.(id, 2, 1);
    x.proxy_on_log?.(id);
    x.proxy_on_done?.(id);
    x.proxy_on_delete?.(id);
  };
  for (let i = 0; i < WARM_UP; i++) request(tokens[i % tokens.length]);
  calls = {};
  denied = {};
  continued = 0;
  for (let i = 0; i < requests; i++) request(tokens[i % tokens.length]);
  const perRequest = Object.fromEntries(Object.entries(calls).map(([k, v]) => [k.replace(/^proxy_/, ""), +(v / requests).toPrecision(3)]));
  console.log(JSON.stringify({ requests, continued, denied, exact_calls: calls,
    decided: `${continued} continued, ${requests - continued} denied (${JSON.stringify(denied)})`, calls: perRequest }));
}

// The header map as the host serializes it: count, (name length, value length) pairs, then
// each name and value NUL-terminated.
function serializePairs(pairs) {
  const head = Buffer.alloc(4 + 8 * pairs.length);
  head.writeUInt32LE(pairs.length, 0);
  pairs.forEach(([n, v], i) => {
    head.writeUInt32LE(Buffer.byteLength(n), 4 + 8 * i);
    head.writeUInt32LE(Buffer.byteLength(v), 8 + 8 * i);
  });
  return Buffer.concat([head, ...pairs.map(([n, v]) => Buffer.from(`${n}\0${v}\0`))]);
}

// VerifySignatureArguments (protobuf): 1 hash name, 2 public key (DER SPKI), 3 signature, 4 text.
function verifySignature(message) {
  const fields = {};
  let i = 0;
  const varint = () => {
    let value = 0, shift = 0, byte;
    do { byte = message[i++]; value += (byte & 0x7f) * 2 ** shift; shift += 7; } while (byte & 0x80);
    return value;
  };
  while (i < message.length) {
    const tag = varint(), length = varint();
    fields[tag >> 3] = Buffer.from(message.subarray(i, i + length));
    i += length;
  }
  const der = fields[2].toString("base64");
  if (!keys.has(der)) keys.set(der, crypto.createPublicKey({ key: fields[2], format: "der", type: "spki" }));
  try {
    return crypto.verify(fields[1].toString(), fields[4], { key: keys.get(der), dsaEncoding: "der" }, fields[3]);
  } catch {
    return false;
  }
}

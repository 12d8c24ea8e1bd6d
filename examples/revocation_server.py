#!/usr/bin/env python3
"""Reference revocation list service for bearer-guard (standard library only, in memory).

Envoy proxies running bearer-guard poll this service for the list of revoked tokens; operators
(or tests) POST revocations to it. Usage:

    python3 examples/revocation_server.py [--host 127.0.0.1] [--port 0] [--path /v1/list]
                                          [--bulk-jti N] [--bulk-seed S] [--no-deltas]
                                          [--verbose]

After binding it prints one line, ``listening on http://<host>:<port><path>``, then serves until
SIGTERM/SIGINT. ``--port 0`` lets the OS pick a free port. ``--bulk-jti N`` preloads N revoked
jti values ``bulk-<S>-<i>`` (i = 0..N-1, S = ``--bulk-seed``, default 0) for benchmarks.
``--no-deltas`` (benchmarks: the worst case for clients) ignores ``since=``: every changed list
is answered with the full document (``If-None-Match`` still gets a 304 while nothing changed).
Requests are logged to stderr only with ``--verbose``.

Document (JSON; the same shape for GET responses and POST bodies; every key optional)::

    {"version": "3f2a9c01-17",          GET only: current version
     "delta_since": "3f2a9c01-12",      GET only, present only when the response is a delta
     "jti": ["id1", {"jti": "id2", "exp": 1764400000}],
     "token_sha256": ["<64 hex>", {"token_sha256": "<64 hex>", "exp": 1764400000}],
     "subjects": {"alice": 1764400000, "bob": {"issued_before": 1764400000, "exp": 1764403600}},
     "issued_before": 1764400000,
     "providers": {"corp": {"jti": [...], "token_sha256": [...], "subjects": {...},
                            "issued_before": 1764400000}}}

- ``jti`` / ``token_sha256``: revoked token ids / SHA-256 of the whole compact token (lowercase
  hex). An entry is a bare string or an object with an optional ``exp`` (Unix seconds): after
  ``exp`` the token is expired anyway and the entry is dropped from the list.
- ``subjects``: subject -> cutoff; tokens of that subject with ``iat <= cutoff`` are revoked.
  Either a bare integer or ``{"issued_before": N, "exp": M}``.
- ``issued_before``: global cutoff; every token with ``iat <= cutoff`` is revoked.
- ``providers``: the same four fields, scoped to one provider name (one level, no nesting).

Merging (POST) is monotone: jti/token_sha256 are set-unioned per scope (the same value again
keeps the larger ``exp``; an entry without ``exp`` beats one with ``exp``); subject cutoffs and
``issued_before`` keep the maximum (subject ``exp`` as for entries). Nothing is ever un-revoked
except by expiry, so a client applies a delta with the same rules (a delta never removes an
entry; clients drop entries past their ``exp`` themselves). ``version`` and ``delta_since`` in
a POST body are ignored, so a GET body can be POSTed to another instance.

Endpoints (``<path>`` is ``--path``, default ``/v1/list``):

- ``POST <path>``: merge a document. 400 ``{"error": "..."}`` on bad JSON, wrong types or unknown
  keys (nothing is merged then); 413 for bodies over 1 MiB; 411 without Content-Length. Replies
  200 ``{"version": "<v>"}``. The version is ``<instance>-<counter>``: ``<instance>`` is a random
  8-hex id chosen at startup (a restarted server never matches an old version), ``<counter>``
  grows by one per POST that changed something.
- ``GET <path>[?since=<v>]``: always ``Content-Type: application/json``, ``ETag: "<version>"``,
  ``Cache-Control: no-cache`` and Content-Length; HTTP/1.1 keep-alive.
  * ``If-None-Match`` equal to the current ETag -> 304 without body.
  * ``since=<v>``, where v is a version of this instance still covered by the change log (the
    last 100,000 changed entries), and the server was not started with ``--no-deltas`` -> 200
    delta: the current value of every entry added or changed after v, plus ``version`` and
    ``delta_since``.
  * otherwise (no/unknown/foreign/too old ``since``) -> 200 full document, without
    ``delta_since``: the client must replace its whole list. Entries with ``exp`` more than 600 s
    (``EXPIRY_GRACE_SECONDS``, room for the proxies' clock skew) in the past are
    left out; the full body is cached and re-rendered when the store changes, or at most once a
    second when an entry has expired (the ETag stays the same then: the dropped entries were
    dead anyway).
- ``GET /healthz`` -> 200 ``ok``.

Test helpers (integration tests):

- ``POST /admin/fail`` with ``{"status": 503}`` makes every later ``GET <path>`` answer that
  status (400-599) with a JSON error body; ``{"status": 0}`` clears it.
- ``GET /admin/stats`` -> ``{"gets": n, "not_modified": n, "full": n, "deltas": n, "posts": n,
  "version": "..."}``, counters since start (``gets`` counts every GET of the list, including
  304s and injected failures; ``posts`` every POST to the list).
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import signal
import socket
import sys
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import takewhile
from typing import Any
from urllib.parse import parse_qs, urlsplit

MAX_BODY = 1 << 20
LOG_CAP = 100_000
HEX64 = re.compile(r"[0-9a-f]{64}")
Exp = int | None
Scope = str | None  # None: the global scope, otherwise a provider name
Parsed = dict[Scope, dict[str, Any]]
Selection = dict[Scope, dict[str, dict[Any, None]]]  # delta: scope -> field -> changed keys


class BadDoc(ValueError):
    pass


def _dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadDoc(f"{what} must be a non-negative integer")
    return value


def _entries(value: Any, field: str) -> list[tuple[str, Exp]]:
    if not isinstance(value, list):
        raise BadDoc(f"{field} must be an array")
    out = []
    for item in value:
        exp = None
        if isinstance(item, dict):
            if set(item) - {field, "exp"}:
                raise BadDoc(f"{field} entry objects take only {field!r} and 'exp'")
            exp = _int(item["exp"], f"{field} exp") if "exp" in item else None
            item = item.get(field)
        if not isinstance(item, str) or not item:
            raise BadDoc(f"{field} entries must be non-empty strings")
        if field == "token_sha256" and not HEX64.fullmatch(item := item.lower()):
            raise BadDoc("token_sha256 entries must be 64 hex digits")
        out.append((item, exp))
    return out


def _subjects(value: Any) -> list[tuple[str, tuple[int, Exp]]]:
    if not isinstance(value, dict):
        raise BadDoc("subjects must be an object")
    out = []
    for sub, cut in value.items():
        if not sub:
            raise BadDoc("subjects must be non-empty strings")
        if not isinstance(cut, dict):
            cut = {"issued_before": cut}
        if set(cut) - {"issued_before", "exp"} or "issued_before" not in cut:
            raise BadDoc("subject objects take 'issued_before' and an optional 'exp'")
        exp = _int(cut["exp"], "subject exp") if "exp" in cut else None
        out.append((sub, (_int(cut["issued_before"], "subject cutoff"), exp)))
    return out


def _scope(doc: dict[str, Any], top: bool) -> dict[str, Any]:
    allowed = {"jti", "token_sha256", "subjects", "issued_before"}
    if top:
        allowed |= {"providers", "version", "delta_since"}  # a GET body may be POSTed back
    if unknown := set(doc) - allowed:
        raise BadDoc(f"unknown key(s): {', '.join(sorted(unknown))}")
    out: dict[str, Any] = {f: _entries(doc[f], f) for f in ("jti", "token_sha256") if f in doc}
    if "subjects" in doc:
        out["subjects"] = _subjects(doc["subjects"])
    if "issued_before" in doc:
        out["issued_before"] = _int(doc["issued_before"], "issued_before")
    return out


def parse_doc(doc: Any) -> Parsed:
    """Validate a POSTed document completely (raising BadDoc) before anything is merged."""
    if not isinstance(doc, dict):
        raise BadDoc("document must be a JSON object")
    out: Parsed = {None: _scope(doc, top=True)}
    if not isinstance(providers := doc.get("providers", {}), dict):
        raise BadDoc("providers must be an object")
    for name, scoped in providers.items():
        if not name or not isinstance(scoped, dict):
            raise BadDoc("providers must map non-empty names to objects")
        out[name] = _scope(scoped, top=False)
    return out


def _later(a: Exp, b: Exp) -> Exp:
    return None if a is None or b is None else max(a, b)


# Entries stay this long past their exp: a proxy accepts a token until exp + its clock skew,
# so dropping an entry at exp would un-revoke the token for that long.
EXPIRY_GRACE_SECONDS = 600


def _live(exp: Exp, now: int) -> bool:
    return exp is None or exp + EXPIRY_GRACE_SECONDS >= now


def _exp_of(value: Exp | tuple[int, Exp]) -> Exp:
    return value[1] if isinstance(value, tuple) else value


class ScopeData:
    __slots__ = ("jti", "token_sha256", "subjects", "issued_before")

    def __init__(self) -> None:
        self.jti: dict[str, Exp] = {}
        self.token_sha256: dict[str, Exp] = {}
        self.subjects: dict[str, tuple[int, Exp]] = {}
        self.issued_before: int | None = None

    def prune(self, now: int) -> int | None:
        """Drop expired entries; return the earliest remaining exp (None if there is none)."""
        exps: list[int] = []
        for table in (self.jti, self.token_sha256, self.subjects):
            for key in [k for k, v in table.items() if not _live(_exp_of(v), now)]:
                del table[key]
            exps += [e for v in table.values() if (e := _exp_of(v)) is not None]
        return min(exps, default=None)

    def render(self, now: int, sel: dict[str, dict[Any, None]] | None,
               bulk: bytes = b"") -> list[list[bytes]]:
        """JSON members of this scope as byte pieces; sel limits them to changed keys (delta)."""
        members = []
        for field in ("jti", "token_sha256"):
            table: dict[str, Exp] = getattr(self, field)
            keys = table if sel is None else [k for k in sel.get(field, ()) if k in table]
            items = _dump([k if table[k] is None else {field: k, "exp": table[k]}
                           for k in keys if _live(table[k], now)])[1:-1]
            pieces = [x for x in (bulk if field == "jti" else b"", items) if x]
            if pieces:  # the bulk fragment is never copied here: one join renders the body
                members.append([b'"%s":[' % field.encode(), *_sep(pieces, b","), b"]"])
        subs = self.subjects
        keys = subs if sel is None else [k for k in sel.get("subjects", ()) if k in subs]
        rendered = {k: c if e is None else {"issued_before": c, "exp": e}
                    for k in keys for c, e in [subs[k]] if _live(e, now)}
        if rendered:
            members.append([b'"subjects":', _dump(rendered)])
        if self.issued_before is not None and (sel is None or "issued_before" in sel):
            members.append([b'"issued_before":%d' % self.issued_before])
        return members


def _sep(items: list[bytes], sep: bytes) -> list[bytes]:
    return [piece for i, item in enumerate(items) for piece in ((sep, item) if i else (item,))]


def _obj(members: list[list[bytes]]) -> list[bytes]:
    """'{' member ',' member ... '}' as a list of byte pieces."""
    return [b"{", *(p for i, m in enumerate(members) for p in ([b","] if i else []) + m), b"}"]


class Store:
    """All revocations, the change log for deltas and the cached full body, under one lock."""

    def __init__(self, bulk_n: int, bulk_seed: str) -> None:
        self.lock = threading.Lock()
        self.instance = secrets.token_hex(4)
        self.counter = 0
        self.scopes: dict[Scope, ScopeData] = {None: ScopeData()}
        self.log: deque[tuple[int, list[tuple[Scope, str, Any]]]] = deque()
        self.log_size = 0
        self.log_start = 0  # the log holds every change with counter > log_start
        self.cache: tuple[int, bytes, int, int | None] | None = None  # counter, body, time, exp
        self.bulk_n, self.bulk_prefix = bulk_n, f"bulk-{bulk_seed}-"
        quoted = json.dumps(self.bulk_prefix)[:-1]  # opening quote + escaped prefix
        self.bulk_json = ",".join([f'{quoted}{i}"' for i in range(bulk_n)]).encode()

    @property
    def version(self) -> str:
        return f"{self.instance}-{self.counter}"

    def _is_bulk(self, jti: str) -> bool:
        rest = jti[len(self.bulk_prefix):]
        return (jti.startswith(self.bulk_prefix) and rest.isascii() and rest.isdigit()
                and len(rest) <= len(str(self.bulk_n)) and (rest == "0" or rest[0] != "0")
                and int(rest) < self.bulk_n)

    def merge(self, doc: Parsed) -> str:
        with self.lock:
            changes: list[tuple[Scope, str, Any]] = []
            for scope, fields in doc.items():
                sd = self.scopes.setdefault(scope, ScopeData())
                for field in ("jti", "token_sha256"):
                    table: dict[str, Exp] = getattr(sd, field)
                    for key, exp in fields.get(field, ()):
                        if field == "jti" and scope is None and self._is_bulk(key):
                            continue  # already revoked, without exp
                        new = _later(table[key], exp) if key in table else exp
                        if key not in table or new != table[key]:
                            table[key] = new
                            changes.append((scope, field, key))
                for sub, (cut, exp) in fields.get("subjects", ()):
                    old = sd.subjects.get(sub)
                    merged = (cut, exp) if old is None else (max(old[0], cut), _later(old[1], exp))
                    if merged != old:
                        sd.subjects[sub] = merged
                        changes.append((scope, "subjects", sub))
                cutoff = fields.get("issued_before")
                if cutoff is not None and (sd.issued_before is None or cutoff > sd.issued_before):
                    sd.issued_before = cutoff
                    changes.append((scope, "issued_before", None))
            if changes:
                self.counter += 1
                self.log.append((self.counter, changes))
                self.log_size += len(changes)
                while self.log_size > LOG_CAP:
                    self.log_start, dropped = self.log.popleft()
                    self.log_size -= len(dropped)
            return self.version

    def _document(self, now: int, sel: Selection | None, since: str | None) -> bytes:
        members = [[b'"version":', _dump(self.version)]]
        if since is not None:
            members.append([b'"delta_since":', _dump(since)])
        members += self.scopes[None].render(now, None if sel is None else sel.get(None, {}),
                                            self.bulk_json if sel is None else b"")
        providers = [[_dump(name), b":", *_obj(inner)] for name, sd in self.scopes.items()
                     if name is not None and (sel is None or name in sel)
                     if (inner := sd.render(now, None if sel is None else sel[name]))]
        if providers:
            members.append([b'"providers":', *_obj(providers)])
        return b"".join(_obj(members))

    def full(self) -> tuple[str, bytes]:
        with self.lock:
            now, c = int(time.time()), self.cache
            if (c is None or c[0] != self.counter
                    or (c[3] is not None and c[3] + EXPIRY_GRACE_SECONDS < now and now - c[2] >= 1)):
                exps = [e for sd in self.scopes.values() if (e := sd.prune(now)) is not None]
                body = self._document(now, None, None)
                self.cache = (self.counter, body, now, min(exps, default=None))
            return self.version, self.cache[1]

    def delta(self, since: str) -> tuple[str, bytes] | None:
        """The delta since `since`, or None when only a full document can answer."""
        with self.lock:
            instance, _, num = since.rpartition("-")
            if instance != self.instance or not (num.isascii() and num.isdigit()):
                return None
            base = int(num)
            if base > self.counter or base < self.log_start:
                return None
            sel: Selection = {}
            newer = list(takewhile(lambda entry: entry[0] > base, reversed(self.log)))
            for _, changes in reversed(newer):
                for scope, field, key in changes:
                    sel.setdefault(scope, {}).setdefault(field, {})[key] = None
            return self.version, self._document(int(time.time()), sel, since)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], store: Store, path: str, verbose: bool) -> None:
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        super().__init__(addr, Handler)
        self.store, self.list_path, self.verbose = store, path, verbose
        self.fail_status = 0
        self.no_deltas = False  # --no-deltas: ignore since=, always answer full documents
        self.stats = dict.fromkeys(("gets", "not_modified", "full", "deltas", "posts"), 0)
        self.stats_lock = threading.Lock()

    def count(self, name: str) -> None:
        with self.stats_lock:
            self.stats[name] += 1


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "bearer-guard-revocation/1"
    disable_nagle_algorithm = True  # headers and body are two writes: avoid delayed-ACK stalls
    server: Server

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        if self.server.verbose:
            sys.stderr.write(f"{self.command} {self.path} {getattr(code, 'value', code)}\n")

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            sys.stderr.write(format % args + "\n")

    def _send(self, status: int, body: bytes = b"", ctype: str = "application/json",
              headers: tuple[tuple[str, str], ...] = ()) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if status != 304:
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if status != 304:
            self.wfile.write(body)

    def _error(self, status: int, message: str, close: bool = False) -> None:
        headers = (("Connection", "close"),) if close else ()  # also sets close_connection
        self._send(status, _dump({"error": message}), headers=headers)

    def do_GET(self) -> None:
        srv, url = self.server, urlsplit(self.path)
        if url.path == "/healthz":
            return self._send(200, b"ok", "text/plain")
        if url.path == "/admin/stats":
            with srv.stats_lock:
                stats = _dump({**srv.stats, "version": srv.store.version})
            return self._send(200, stats)
        if url.path != srv.list_path:
            return self._error(404, "not found")
        srv.count("gets")
        if srv.fail_status:
            return self._error(srv.fail_status, "failure injected by /admin/fail")
        etag = f'"{srv.store.version}"'
        inm = self.headers.get("If-None-Match", "")
        if inm.strip() == "*" or etag in (t.strip().removeprefix("W/") for t in inm.split(",")):
            srv.count("not_modified")
            return self._send(304, headers=(("ETag", etag), ("Cache-Control", "no-cache")))
        since = "" if srv.no_deltas else parse_qs(url.query).get("since", [""])[0]
        result = srv.store.delta(since) if since else None
        srv.count("deltas" if result else "full")
        version, body = result or srv.store.full()
        self._send(200, body, headers=(("ETag", f'"{version}"'), ("Cache-Control", "no-cache")))

    def _read_json(self) -> tuple[bool, Any]:
        """(True, document) or (False, None) once an error reply has been sent."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return False, self._error(411, "send a Content-Length (no chunked bodies)", True)
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0:
            return False, self._error(400, "bad Content-Length", True)
        if length > MAX_BODY:
            return False, self._error(413, f"body larger than {MAX_BODY} bytes", True)
        try:
            return True, json.loads(self.rfile.read(length))
        except (ValueError, RecursionError):
            return False, self._error(400, "invalid JSON")

    def do_POST(self) -> None:
        srv, path = self.server, urlsplit(self.path).path
        if path not in (srv.list_path, "/admin/fail"):
            return self._error(404, "not found", close=True)  # the body is left unread
        ok, doc = self._read_json()
        if not ok:
            return
        if path == "/admin/fail":
            status = doc.get("status") if isinstance(doc, dict) else None
            if (isinstance(status, bool) or not isinstance(status, int)
                    or not (status == 0 or 400 <= status <= 599)):
                return self._error(400, "status must be 0 or 400-599")
            srv.fail_status = status
            return self._send(200, _dump({"status": status}))
        srv.count("posts")
        try:
            parsed = parse_doc(doc)
        except BadDoc as err:
            return self._error(400, str(err))
        self._send(200, _dump({"version": srv.store.merge(parsed)}))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="bearer-guard reference revocation list service")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0: the OS picks a free port")
    ap.add_argument("--path", default="/v1/list")
    ap.add_argument("--bulk-jti", type=int, default=0, metavar="N", help="preload N revoked jti")
    ap.add_argument("--bulk-seed", default="0", metavar="S", help="bulk jti are bulk-<S>-<i>")
    ap.add_argument("--no-deltas", action="store_true",
                    help="ignore since=: always answer the full document (benchmarks)")
    ap.add_argument("--verbose", action="store_true", help="log each request to stderr")
    args = ap.parse_args(argv)
    if not args.path.startswith("/") or args.bulk_jti < 0:
        ap.error("--path must start with '/' and --bulk-jti must be >= 0")
    store = Store(args.bulk_jti, args.bulk_seed)
    store.full()  # render the (bulk) full body before the first poll
    srv = Server((args.host, args.port), store, args.path, args.verbose)
    srv.no_deltas = args.no_deltas
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    host, port = srv.server_address[:2]
    print(f"listening on http://{f'[{host}]' if ':' in host else host}:{port}{args.path}",
          flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""etcd revocation store benchmark: how fast `revocation.etcd` enforces, what it loses (nothing,
we hope) and what a 1,000,000-entry prefix costs.

Real processes on 127.0.0.1 (free ports): etcd 3.4 members (data dirs in a temp dir), Envoys
with bearer-guard (jwt_cache_size 1000, crypto auto) in front of a direct_response route, and
`revocation.etcd` = {"cluster": "etcd", "prefix": ..., "timeout_ms": 5000,
"max_stale_seconds": 300, "on_stale": "deny"} unless said otherwise; the Envoy cluster `etcd`
is STATIC, HTTP/2, one endpoint per member (as envoy/test.yaml.tmpl's). Every process started
here is stopped by pid, also on failure. Revocations are written as etcd keys
`<prefix>jti/<jti>` = `{"exp": <the token's exp>}` through etcd's JSON gateway
(`POST /v3/kv/put`, base64 key and value: the same put `etcdctl put` sends over gRPC, without
spawning a process per write, so the clock starts when the write is sent).

Per-worker evidence: each Envoy's workers are reached over "pinned" keep-alive connections, one
per worker, each known to be served by that worker because Envoy's per-worker listener gauge
(`listener.127.0.0.1_<port>.worker_<i>.downstream_cx_active`) went up on that worker when the
connection was accepted (Linux spreads connections over the workers' SO_REUSEPORT sockets).
"Enforced everywhere" = a 401 `token revoked` on every pinned connection of every Envoy.

1. Propagation: a 3-member cluster (--heartbeat-interval 250 --election-timeout 2500, as
   tests/support/etcd.rs), two Envoys (--concurrency 2 each). For each of 100 revocations (a
   pool token, allowed on all 4 workers first; writes round-robin over the members; a random
   0-250 ms pause between them), the time from sending the put until all 4 workers refuse it.
   p50/p99; target p99 <= 200 ms. Also through `etcd grpc-proxy` (part 4).
2. Nothing lost: (a) an Envoy restarted: from before its listener is up, requests carrying
   every revoked token (new connections, as fast as they go) until a valid token is served:
   never a 200. (b) the etcd leader (etcdctl endpoint status -w json) killed (SIGKILL) while wrk
   drives both Envoys: revocations written through the other members, each enforced
   everywhere, none lost. (c)+(d) etcd entirely down (every member SIGKILLed): a revocation
   written just before; held revocations stay refused; valid tokens are served (max_stale 300)
   and, on a third Envoy with max_stale_seconds 5, 503 after 5 s; members restarted, a
   revocation written as soon as a put succeeds: both enforced everywhere, timed from that put
   (the filter re-watches on a backoff of 1 s doubling to 30 s: target <= 30 s, the cap).
3. 1,000,000 entries (a single member, --max-txn-ops 10000, written by /v3/kv/txn with 5,000
   puts per transaction): Envoy start to the whole prefix read, RSS above an Envoy reading an
   empty prefix per entry (--concurrency 1 and 2), and wrk throughput (repeated valid token,
   as bench/revocation.py, 5 interleaved rounds) with the watch live and 1M held vs no
   revocation store (target ratio >= 0.95), vs an empty prefix and vs an empty HTTP list
   (bench/revocation.py's config); revoked tokens in the prefix probed from before Envoy
   listens until the read is held; the propagation time with 1M held; what one Range page
   costs etcd at the start and near the end of the prefix; and what a prefix over the filter's
   MAX_READ_KEYS (2M) does to a new Envoy.
4. grpc-proxy: an Envoy whose `etcd` cluster is `etcd grpc-proxy start` in front of part 1's
   members; puts through the members, propagation to its workers.

`--smoke`: the same flow, tiny (one member with etcd's default timing for everything, 10,000
bulk entries, a handful of revocations, no leader kill, no MAX_READ_KEYS check), under a
minute. Targets are reported, never enforced: the exit status is non-zero only when the harness
itself breaks (a process does not start, etcd refuses writes for long, a wasm panic). Usage:

    python3 bench/etcd.py --pools bench/tmp/pools --out bench [--smoke]
    python3 bench/etcd.py --render bench/etcd_results.json --out DIR   (no measurement)

Writes etcd_results.md / etcd_results.json to --out and prints the table (bench/chart.py draws
etcd.png from the JSON). --entries, --revocations and --outage-seconds shorten a trial run.
"""

import argparse
import base64
import collections
import datetime
import http.client
import json
import os
import pathlib
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.dont_write_bytecode = True  # no bench/__pycache__ from the imports below
import run as base  # noqa: E402  (bench/run.py: Envoy config helpers, wrk, medians)
import revocation as listbench  # noqa: E402  (bench/revocation.py: its Envoy, log scan, wrk check)

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"
PREFIX = "/bearer-guard/revoked/"
BULK_PREFIX = "/bearer-guard/bulk/"
EMPTY_PREFIX = "/bearer-guard/empty/"
TIMEOUT_MS = 5000
MAX_STALE = 300
MULTI_MEMBER_FLAGS = ["--heartbeat-interval", "250", "--election-timeout", "2500"]
MAX_TXN_OPS = 10000
PUTS_PER_TXN = 5000
MAX_READ_KEYS = 2_000_000  # src/remote/watch.rs
PAGE_LIMIT = 10_000  # src/remote/watch.rs: keys the filter asks for per Range page
REPEAT_POOL = "rs256-repeat.txt"
DISTINCT_POOL = "rs256-distinct.txt"
REVOKED = "token revoked"
REQUEST_TIMEOUT = 20
HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

PROPAGATION_TARGET_MS = 200
BACKOFF_CAP_SECONDS = 30
THROUGHPUT_TARGET = 0.95


# ---- etcd ------------------------------------------------------------------------------------

class EtcdError(Exception):
    """etcd did not take a request (no leader, a member down, a timeout)."""


HANDED_OUT = set()


def ephemeral_low():
    """The low end of the kernel's ephemeral port range (32768 if unreadable)."""
    try:
        return int(pathlib.Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(n):
    """`n` distinct free loopback ports, all bound at once (so none repeats), then released.

    Chosen below the kernel's ephemeral range: a port picked from it (bind to 0, release) can
    become an outgoing connection's source port before the server binds it (an Envoy
    listener's port was taken so while probes connected every 20 ms). This process never
    hands a port out twice."""
    low, high = 10000, ephemeral_low()
    if high <= low + 1000:
        low, high = 1024, 65536  # no room below it: any port, still bound to check it is free
    span = high - low
    at = random.randrange(span)
    sockets = []
    try:
        for _ in range(span):
            if len(sockets) == n:
                break
            port = low + at
            at = (at + 1) % span
            if port in HANDED_OUT:
                continue
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            sockets.append(s)
        if len(sockets) != n:
            raise RuntimeError(f"no {n} free loopback ports in {low}-{high}")
        ports = [s.getsockname()[1] for s in sockets]
        HANDED_OUT.update(ports)
        return ports
    finally:
        for s in sockets:
            s.close()


def b64(text):
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


class EtcdCluster:
    """`size` etcd members on free loopback ports, data in `datadir`; each stopped by pid."""

    def __init__(self, datadir, logdir, name, size, flags=(), timeout=60):
        self.name, self.flags = name, list(flags)
        ports = free_ports(2 * size)
        self.members = [{"name": f"{name}{i + 1}", "client": ports[2 * i], "peer": ports[2 * i + 1],
                         "data": datadir / f"{name}{i + 1}.etcd", "log": logdir / f"etcd-{name}{i + 1}.log",
                         "process": None} for i in range(size)]
        self.initial = ",".join(f"{m['name']}=http://127.0.0.1:{m['peer']}" for m in self.members)
        self.token = f"bench-{name}-{os.getpid()}"
        try:
            for i in range(size):
                self.start_member(i)
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise

    @property
    def ports(self):
        return [m["client"] for m in self.members]

    def running(self):
        return [i for i, m in enumerate(self.members)
                if m["process"] is not None and m["process"].poll() is None]

    def start_member(self, i):
        """A new member, or the same one again from its data (etcd then ignores --initial-*)."""
        m = self.members[i]
        client, peer = f"http://127.0.0.1:{m['client']}", f"http://127.0.0.1:{m['peer']}"
        m["process"] = subprocess.Popen(
            [ETCD, "--name", m["name"], "--data-dir", str(m["data"]),
             "--listen-client-urls", client, "--advertise-client-urls", client,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", self.initial, "--initial-cluster-state", "new",
             "--initial-cluster-token", self.token, "--logger", "zap", "--log-outputs", "stderr",
             *self.flags],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(m["log"], "a"),
            start_new_session=True)

    def start_all(self):
        for i, m in enumerate(self.members):
            if m["process"] is None or m["process"].poll() is not None:
                self.start_member(i)

    def kill_member(self, i):
        """SIGKILL by pid: a crash. Its data stays."""
        process = self.members[i]["process"]
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()

    def kill_all(self):
        for i in range(len(self.members)):
            self.kill_member(i)

    def stop(self):
        for m in self.members:
            if m["process"] is not None:
                base.stop_process(m["process"])

    def wait_healthy(self, timeout):
        """Until every running member answers /health true (it has a leader)."""
        deadline = time.monotonic() + timeout
        while True:
            unhealthy = []
            for i, m in enumerate(self.members):
                if m["process"] is None:
                    continue
                if m["process"].poll() is not None:
                    raise RuntimeError(f"etcd {m['name']} exited: {self.log_tail(i)}")
                try:
                    status, body = base.http_get(m["client"], "/health", timeout=2)
                    if status != 200 or json.loads(body).get("health") != "true":
                        unhealthy.append(m["name"])
                except (OSError, ValueError, http.client.HTTPException):
                    unhealthy.append(m["name"])
            if not unhealthy:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"etcd {', '.join(unhealthy)} not healthy after {timeout} s: "
                                   + " ".join(self.log_tail(i) for i in range(len(self.members))))
            time.sleep(0.1)

    def log_tail(self, i, chars=1500):
        try:
            return f"[{self.members[i]['name']}] " + self.members[i]["log"].read_text()[-chars:]
        except OSError:
            return ""

    def gateway(self, i, path, body, timeout=10):
        """POST to member i's JSON gateway; the decoded answer, or EtcdError."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.members[i]['client']}{path}",
                                         data=body if isinstance(body, bytes) else json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise EtcdError(f"{self.members[i]['name']}: HTTP {error.code} "
                            f"{error.read()[:200].decode(errors='replace')}") from None
        except (OSError, ValueError, http.client.HTTPException) as error:
            raise EtcdError(f"{self.members[i]['name']}: {error}") from None
        if "error" in answer:
            raise EtcdError(f"{self.members[i]['name']}: {answer['error']}")
        return answer

    def put(self, i, key, value, timeout=10):
        answer = self.gateway(i, "/v3/kv/put", {"key": b64(key), "value": b64(value)}, timeout)
        return int(answer["header"]["revision"])

    def put_retry(self, key, value, members=None, timeout=90, attempt_timeout=10.0):
        """Tries the members in turn until one takes the put; (member, attempts, acked at)."""
        deadline = time.monotonic() + timeout
        attempts, errors = 0, []
        while True:
            for i in (members if members is not None else range(len(self.members))):
                attempts += 1
                try:
                    self.put(i, key, value,
                             timeout=max(1.0, min(attempt_timeout, deadline - time.monotonic())))
                    return i, attempts, time.monotonic()
                except EtcdError as error:
                    errors.append(str(error))
                if time.monotonic() > deadline:
                    raise RuntimeError(f"etcd {self.name} refused a put {attempts} times in "
                                       f"{timeout} s: {errors[-3:]}")
                time.sleep(0.1)

    def leader(self):
        """The index of the leader, as `etcdctl endpoint status -w json` reports it."""
        endpoints = ",".join(f"http://127.0.0.1:{self.members[i]['client']}" for i in self.running())
        for _ in range(50):
            out = subprocess.run([ETCDCTL, f"--endpoints={endpoints}", "--dial-timeout=2s",
                                  "--command-timeout=3s", "endpoint", "status", "-w", "json"],
                                 env={**os.environ, "ETCDCTL_API": "3"}, capture_output=True,
                                 text=True, timeout=30)
            try:
                statuses = json.loads(out.stdout)
                leaders = {s["Status"]["leader"] for s in statuses}
                for s in statuses:
                    if s["Status"]["header"]["member_id"] in leaders and len(leaders) == 1:
                        port = int(s["Endpoint"].rsplit(":", 1)[1])
                        return self.ports.index(port)
            except (ValueError, KeyError, TypeError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"etcd {self.name}: no leader found ({out.stdout} {out.stderr})")


def pct(name):
    """The key layout's percent-encoding: all but RFC 3986's unreserved characters as %XX."""
    return "".join(chr(b) if chr(b).isalnum() and b < 128 or chr(b) in "-._~" else f"%{b:02X}"
                   for b in name.encode())


def jti_key(prefix, jti):
    return f"{prefix}jti/{pct(jti)}"


def exp_value(exp):
    return json.dumps({"exp": exp}, separators=(",", ":"))


def claims(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def bulk_write(etcd, member, count, prefix, victims, exp, threads=2):
    """`count` keys under `prefix`: the victims' jti, then `jti/bulk-<i>`; seconds taken."""
    value = b64(exp_value(exp))
    special = [(b64(jti_key(prefix, claims(t)["jti"])), b64(exp_value(claims(t)["exp"]))) for t in victims]

    def op(i):
        key, val = special[i] if i < len(special) else (b64(f"{prefix}jti/bulk-{i}"), value)
        return '{"requestPut":{"key":"%s","value":"%s"}}' % (key, val)

    chunks = [(start, min(count, start + PUTS_PER_TXN)) for start in range(0, count, PUTS_PER_TXN)]
    errors = []

    def work(mine):
        try:
            for start, end in mine:
                body = ('{"success":[' + ",".join(op(i) for i in range(start, end)) + "]}").encode()
                for attempt in range(5):
                    try:
                        answer = etcd.gateway(member, "/v3/kv/txn", body, timeout=60)
                        if not answer.get("succeeded"):
                            raise EtcdError(f"txn not succeeded: {str(answer)[:200]}")
                        break
                    except EtcdError:
                        if attempt == 4:
                            raise
                        time.sleep(1)
        except (EtcdError, RuntimeError) as error:
            errors.append(error)

    started = time.monotonic()
    workers = [threading.Thread(target=work, args=(chunks[i::threads],)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        raise RuntimeError(f"bulk write to etcd failed: {errors[0]}")
    return time.monotonic() - started


class GrpcProxy:
    """`etcd grpc-proxy start` in front of `endpoints`; stopped by pid."""

    def __init__(self, logdir, endpoints, timeout=30):
        self.port = free_ports(1)[0]
        self.log = logdir / "etcd-grpc-proxy.log"
        self.process = subprocess.Popen(
            [ETCD, "grpc-proxy", "start", "--endpoints=" + ",".join(
                f"127.0.0.1:{p}" for p in endpoints), f"--listen-addr=127.0.0.1:{self.port}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(self.log, "w"),
            start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"grpc-proxy exited: {self.log.read_text()[-1500:]}")
            try:
                if json.loads(base.http_get(self.port, "/health", timeout=2)[1]).get("health") == "true":
                    return
            except (OSError, ValueError, http.client.HTTPException):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"grpc-proxy not healthy: {self.log.read_text()[-1500:]}")
            time.sleep(0.1)

    def stop(self):
        base.stop_process(self.process)


# ---- Envoy -----------------------------------------------------------------------------------

def filter_config(jwks, prefix, max_stale=MAX_STALE):
    config = {"providers": {"bench": {"issuer": base.ISSUER, "audiences": [base.AUDIENCE],
                                      "local_jwks": jwks, "forward": True}},
              "jwt_cache_size": 1000, "crypto": "auto"}
    if prefix is not None:
        config["revocation"] = {"etcd": {"cluster": "etcd", "prefix": prefix, "timeout_ms": TIMEOUT_MS,
                                         "max_stale_seconds": max_stale, "on_stale": "deny"}}
    return config


def envoy_config(jwks, etcd_ports, prefix, max_stale=MAX_STALE, port=0):
    """One listener `guarded` (bearer-guard, direct_response); the `etcd` cluster (HTTP/2, one
    endpoint per member) when `prefix` is set, else no revocation store at all."""
    filters = [base.wasm_filter("bearer_guard", base.BEARER_GUARD,
                                json.dumps(filter_config(jwks, prefix, max_stale)))]
    listener = base.listener("guarded", filters)
    listener["address"]["socket_address"]["port_value"] = port
    clusters = []
    if prefix is not None:
        clusters.append({
            "name": "etcd", "type": "STATIC", "connect_timeout": "1s",
            "typed_extension_protocol_options": {HTTP_OPTIONS: {
                "@type": "type.googleapis.com/" + HTTP_OPTIONS,
                "explicit_http_config": {"http2_protocol_options": {}}}},
            "load_assignment": {"cluster_name": "etcd", "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}}}
                for p in etcd_ports]}]},
        })
    return {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
            "static_resources": {"listeners": [listener], "clusters": clusters}}


class Envoy(listbench.Envoy):
    """bench/revocation.py's Envoy (stats, memory), started without waiting (`ready` waits), plus
    per-worker connection counts and log times; stopped by pid in `stop`."""

    def __init__(self, workdir, name, config, concurrency):
        self.name, self.concurrency = name, concurrency
        workdir = workdir / name
        workdir.mkdir(parents=True, exist_ok=True)
        config_path = workdir / "envoy-etcd.json"
        config_path.write_text(json.dumps(config, indent=1))
        self.admin_file = workdir / "admin-address"
        self.admin_file.unlink(missing_ok=True)
        self.log_path = workdir / "envoy.log"
        self.wall_started, self.started = time.time(), time.monotonic()
        self.process = subprocess.Popen(
            [str(base.ENVOY), "-c", str(config_path), "--concurrency", str(concurrency),
             "--disable-hot-restart", "--admin-address-path", str(self.admin_file),
             "--log-level", "warn", "--component-log-level", "wasm:info"],
            stdout=subprocess.DEVNULL, stderr=open(self.log_path, "w"), start_new_session=True)

    def ready(self):
        self.port = self._wait_for_listeners({"guarded"}, timeout=90)["guarded"]
        return self

    def worker_connections(self):
        text = base.http_get(self.admin_port, "/stats?filter=downstream_cx_active")[1]
        return {int(w): int(v) for w, v in re.findall(
            r"^listener\.127\.0\.0\.1_\d+\.worker_(\d+)\.downstream_cx_active: (\d+)$", text, re.M)}

    def log_seconds(self, needle):
        """Seconds from Popen to the first log line holding `needle` (Envoy logs local time, ms)."""
        for line in self.log_path.read_text(errors="replace").splitlines():
            if needle in line:
                match = re.match(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})\]", line)
                if match:
                    at = datetime.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
                    return at - self.wall_started
        return None

    def alive(self):
        if self.process.poll() is not None:
            raise RuntimeError(f"envoy {self.name} exited: {self.log_path.read_text()[-3000:]}")

    def wait_for_etcd(self, entries, timeout):
        """Until the etcd_entries gauge shows `entries` after a completed read; seconds since
        the start."""
        deadline = time.monotonic() + timeout
        stats = {}
        while time.monotonic() < deadline:
            self.alive()
            stats = self.stats()
            if stats.get("revocation.etcd_read_success", 0) >= 1 and stats.get("revocation.etcd_entries") == entries:
                return time.monotonic() - self.started
            time.sleep(0.05)
        raise RuntimeError(f"envoy {self.name}: etcd never held {entries} entries in {timeout} s "
                           f"(stats {stats}); log:\n{self.log_path.read_text()[-3000:]}")


class Pinned:
    """One keep-alive HTTP/1.1 connection per worker of an Envoy, each known to be that worker's
    (its per-worker downstream_cx_active went up when the connection was accepted). Pin while no
    other client opens connections to that Envoy."""

    def __init__(self, envoy):
        self.envoy, self.conns = envoy, {}
        self.pin()

    def pin(self):
        extras = []
        try:
            for _ in range(200):
                if len(self.conns) == self.envoy.concurrency:
                    return
                self.envoy.alive()
                before = self.envoy.worker_connections()
                conn = http.client.HTTPConnection("127.0.0.1", self.envoy.port, timeout=REQUEST_TIMEOUT)
                conn.connect()
                landed = None
                for _ in range(100):
                    after = self.envoy.worker_connections()
                    moved = [w for w in after if after[w] > before.get(w, 0)]
                    if moved:
                        landed = moved[0] if len(moved) == 1 else None
                        break
                    time.sleep(0.005)
                if landed is not None and landed not in self.conns:
                    self.conns[landed] = conn
                else:
                    extras.append(conn)
            raise RuntimeError(f"envoy {self.envoy.name}: could not reach all "
                               f"{self.envoy.concurrency} workers")
        finally:
            for conn in extras:
                conn.close()

    def ask(self, worker, token):
        """(status, WWW-Authenticate) of one request on `worker`'s connection."""
        for attempt in (1, 2):
            conn = self.conns[worker]
            try:
                conn.request("GET", "/", headers={"Authorization": f"Bearer {token}"})
                response = conn.getresponse()
                response.read()
                return response.status, response.getheader("WWW-Authenticate", "")
            except (OSError, http.client.HTTPException):
                conn.close()
                del self.conns[worker]
                if attempt == 2:
                    raise
                self.pin()  # Envoy closed it: a new one on the same worker

    def close(self):
        for conn in self.conns.values():
            conn.close()
        self.conns = {}


def everywhere(targets):
    """[(label, pinned, worker)] of every pinned worker of every target."""
    return [(f"{label}/w{w}", pinned, w) for label, pinned in targets for w in sorted(pinned.conns)]


def wait_statuses(targets, token, wanted, timeout, what):
    """Until `token` is answered `wanted` on every worker; seconds taken, or RuntimeError."""
    started = time.monotonic()
    pending = everywhere(targets)
    seen = {}
    while pending:
        for item in list(pending):
            status, _ = item[1].ask(item[2], token)
            seen[item[0]] = status
            if status == wanted:
                pending.remove(item)
        if pending:
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"{what}: not {wanted} everywhere after {timeout} s ({seen})")
            time.sleep(0.05)
    return time.monotonic() - started


def time_revocation(etcd, prefix, token, targets, members=None, timeout=30.0, check_before=True,
                    attempt_timeout=10.0):
    """Writes the token's jti key; ms from sending the put until every worker of every target
    answers 401 "token revoked" (and again on a second look). Never raises for a late or lost
    revocation: it is reported (`lost`)."""
    c = claims(token)
    odd = []
    if check_before:
        for label, pinned, w in everywhere(targets):
            status, _ = pinned.ask(w, token)
            if status != 200:
                odd.append(f"{label}: {status} before the put")
    sent = time.monotonic()
    member, attempts, acked = etcd.put_retry(jti_key(prefix, c["jti"]), exp_value(c["exp"]), members,
                                             attempt_timeout=attempt_timeout)
    pending = everywhere(targets)
    enforced = {}
    while pending and time.monotonic() - acked < timeout:
        for item in list(pending):
            label, pinned, w = item
            status, challenge = pinned.ask(w, token)
            if status == 401 and REVOKED in challenge:
                enforced[label] = time.monotonic()
                pending.remove(item)
            elif status != 200 and len(odd) < 10:
                odd.append(f"{label}: {status} {challenge[:80]}")
        if pending:
            time.sleep(0.002)
    for label, pinned, w in everywhere(targets):
        if label in enforced:
            status, challenge = pinned.ask(w, token)
            if status != 401:
                odd.append(f"{label}: {status} after a 401")
    done = not pending
    return {
        "jti": c["jti"], "member": etcd.members[member]["name"], "put_attempts": attempts,
        "put_ms": round((acked - sent) * 1000, 2),
        "from_put_ms": round((max(enforced.values()) - sent) * 1000, 2) if done else None,
        "from_ack_ms": round((max(enforced.values()) - acked) * 1000, 2) if done else None,
        "workers_ms": {k: round((v - sent) * 1000, 2) for k, v in enforced.items()},
        "lost": [item[0] for item in pending], "odd": odd,
    }


def percentile(values, q):
    """Linear interpolation between closest ranks (numpy's default)."""
    values = sorted(values)
    if not values:
        return None
    at = (len(values) - 1) * q
    low = int(at)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (at - low)


def distribution(samples, key):
    values = [s[key] for s in samples if s[key] is not None]
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": round(percentile(values, 0.5), 2),
            "p90": round(percentile(values, 0.9), 2), "p99": round(percentile(values, 0.99), 2),
            "max": round(max(values), 2), "mean": round(statistics.fmean(values), 2)}


class Prober(threading.Thread):
    """Requests on new connections to 127.0.0.1:`port`, from before Envoy listens: the revoked
    tokens in turn, each followed by the valid one, until stopped. Records every answer."""

    def __init__(self, port, revoked, valid, interval=0.0, offset=0):
        super().__init__(daemon=True)
        self.port, self.revoked, self.valid, self.interval = port, revoked, valid, interval
        self.offset = offset
        self.halt = threading.Event()
        self.started_at = time.monotonic()
        self.answers = []  # (seconds since start, "revoked" | "valid", status)
        self.error = None

    def run(self):
        i = self.offset
        try:
            while not self.halt.is_set():
                for kind, token in (("revoked", self.revoked[i % len(self.revoked)]), ("valid", self.valid)):
                    try:
                        status, challenge = listbench.get(self.port, token, timeout=REQUEST_TIMEOUT)
                    except (OSError, http.client.HTTPException):
                        time.sleep(0.005)  # not listening yet
                        continue
                    self.answers.append((time.monotonic() - self.started_at, kind, status,
                                         REVOKED in challenge))
                i += 1
                if self.interval:
                    self.halt.wait(self.interval)
        except Exception as error:  # noqa: BLE001  (reported by `stop`)
            self.error = error

    def first_valid_200(self):
        return next((t for t, kind, status, _ in self.answers if kind == "valid" and status == 200), None)

    def stop(self):
        self.halt.set()
        self.join(timeout=REQUEST_TIMEOUT + 10)
        if self.error:
            raise RuntimeError(f"prober failed: {self.error!r}")


def summarize_probes(probers):
    answers = [a for p in probers for a in p.answers]
    revoked = [a for a in answers if a[1] == "revoked"]
    valid = [a for a in answers if a[1] == "valid"]
    firsts = [p.first_valid_200() for p in probers if p.first_valid_200() is not None]
    return {
        "requests": len(answers),
        "revoked_requests": len(revoked),
        "revoked_200": sum(1 for a in revoked if a[2] == 200),
        "revoked_200_at_s": [round(a[0], 3) for a in revoked if a[2] == 200][:10],
        "revoked_statuses": dict(collections.Counter(f"{a[2]}{' revoked' if a[3] else ''}" for a in revoked)),
        "valid_statuses": dict(collections.Counter(str(a[2]) for a in valid)),
        "first_answer_s": round(min(a[0] for a in answers), 3) if answers else None,
        "first_valid_200_s": round(min(firsts), 3) if firsts else None,
    }


class Load(threading.Thread):
    """wrk (5 s runs, repeated valid token) against one port until stopped."""

    def __init__(self, port, tokens_file):
        super().__init__(daemon=True)
        self.port, self.tokens_file = port, tokens_file
        self.halt = threading.Event()
        self.runs, self.error = [], None

    def run(self):
        try:
            while not self.halt.is_set():
                self.runs.append(base.run_wrk(self.port, self.tokens_file, 5))
        except Exception as error:  # noqa: BLE001  (reported by `stop`)
            self.error = error

    def stop(self):
        self.halt.set()
        self.join(timeout=60)
        if self.error:
            raise RuntimeError(f"wrk failed: {self.error!r}")
        return {"requests": sum(r["requests"] for r in self.runs),
                "non_2xx": sum(r["non_2xx"] for r in self.runs),
                "rps": round(statistics.fmean([r["rps"] for r in self.runs]), 1) if self.runs else 0}


# ---- the parts -------------------------------------------------------------------------------

class Bench:
    def __init__(self, args):
        self.args = args
        self.jwks = json.loads((args.pools / "jwks.json").read_text())
        self.valid = (args.pools / REPEAT_POOL).read_text().split()[0]
        self.pool = (args.pools / DISTINCT_POOL).read_text().split()
        for token in self.pool[:3] + [self.valid]:
            if "jti" not in claims(token):
                raise RuntimeError(f"pool tokens must carry a jti ({DISTINCT_POOL})")
        self.next_token = len(self.pool)  # tokens are taken from the end
        self.workdir = args.pools / "etcd-work"
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir.mkdir(parents=True)
        self.datadir = pathlib.Path(tempfile.mkdtemp(prefix="bearer-guard-etcd-bench-"))
        self.processes, self.envoys, self.pins = [], [], []
        self.revoked = []  # tokens revoked under PREFIX so far
        self.results = {}
        self.rng = random.Random(17)

    def token(self):
        if self.next_token == 0:
            raise RuntimeError(f"{DISTINCT_POOL}: out of tokens")
        self.next_token -= 1
        return self.pool[self.next_token]

    def envoy(self, name, config, concurrency):
        return self.envoys_at_once([(name, config, concurrency)])[0]

    def envoys_at_once(self, specs):
        """Starts every (name, config, concurrency) at once, then waits until each listens."""
        started = []
        for name, config, concurrency in specs:
            envoy = Envoy(self.workdir, name, config, concurrency)
            self.processes.append(envoy)
            self.envoys.append(envoy)
            started.append(envoy)
        return [envoy.ready() for envoy in started]

    def stop(self, process):
        process.stop()
        if process in self.processes:
            self.processes.remove(process)

    def pinned(self, envoy):
        pinned = Pinned(envoy)
        self.pins.append(pinned)
        return pinned

    def cleanup(self):
        for pinned in self.pins:
            pinned.close()
        for process in reversed(self.processes):
            try:
                process.stop()
            except Exception as error:  # noqa: BLE001  (stop the others anyway)
                print(f"stopping {process}: {error}", file=sys.stderr)
        shutil.rmtree(self.datadir, ignore_errors=True)

    def say(self, text):
        print(f"[{time.monotonic() - self.started:6.1f} s] {text}", flush=True)

    # -- part 1, 2, 4: the cluster ---------------------------------------------------------------

    def cluster_parts(self):
        args = self.args
        size = 1 if args.smoke else 3
        flags = ([] if args.smoke else list(MULTI_MEMBER_FLAGS)) + ["--max-txn-ops", str(MAX_TXN_OPS)]
        self.say(f"starting etcd ({size} member(s))")
        etcd = EtcdCluster(self.datadir, self.workdir, "prop", size, flags)
        self.processes.append(etcd)
        self.etcd = etcd
        self.results["cluster"] = {"members": size, "flags": flags}
        proxy = GrpcProxy(self.workdir, etcd.ports)
        self.processes.append(proxy)
        self.say("starting Envoys east, west (part 1), proxied (part 4, through etcd grpc-proxy) "
                 f"and stale (max_stale_seconds {args.stale_seconds}), --concurrency 2 each")
        config = envoy_config(self.jwks, etcd.ports, PREFIX)
        east, west, proxied, stale = self.envoys_at_once([
            ("east", config, 2), ("west", config, 2),
            ("proxied", envoy_config(self.jwks, [proxy.port], PREFIX), 2),
            ("stale", envoy_config(self.jwks, etcd.ports, PREFIX, max_stale=args.stale_seconds), 2)])
        targets = [("east", self.pinned(east)), ("west", self.pinned(west))]
        ready = wait_statuses(targets, self.valid, 200, 30, "first read")
        self.say(f"east and west serve the valid token on every worker ({ready:.2f} s after pinning)")

        # 1. propagation
        samples = []
        for n in range(args.revocations):
            time.sleep(self.rng.uniform(0, 0.25))
            token = self.token()
            sample = time_revocation(etcd, PREFIX, token, targets, members=[n % size])
            samples.append(sample)
            self.revoked.append(token)
            if sample["lost"] or sample["odd"]:
                self.say(f"propagation {n + 1}: lost {sample['lost']} odd {sample['odd']}")
            if (n + 1) % 10 == 0 or n + 1 == args.revocations:
                last = samples[-10:]
                self.say(f"propagation {n + 1}/{args.revocations}: last ones "
                         + " ".join(f"{s['from_put_ms']:.0f}" if s['from_put_ms'] is not None else "LOST"
                                    for s in last) + " ms")
        self.results["propagation"] = {
            "config": "3-member etcd cluster, puts round-robin over the members; Envoys east and "
                      "west, --concurrency 2 each, all 4 workers pinned" if size == 3 else
                      "1 etcd member; Envoys east and west, --concurrency 2 each",
            "from_put_ms": distribution(samples, "from_put_ms"),
            "from_ack_ms": distribution(samples, "from_ack_ms"),
            "put_ms": distribution(samples, "put_ms"),
            "lost": sum(1 for s in samples if s["lost"]),
            "odd": [o for s in samples for o in s["odd"]][:10],
            "samples": samples,
        }

        # 4. grpc-proxy
        self.grpc_proxy(etcd, proxy, proxied)

        # 2a. Envoy restart
        targets = self.restart(etcd, targets, west)

        # 2b. leader killed under load
        if size >= 3:
            self.leader_kill(etcd, targets)
        else:
            self.results["leader_kill"] = {"skipped": "smoke run: a single member"}

        # 1 (watch broken) and 2c/2d: etcd entirely down, then back
        self.outage(etcd, targets, stale)

        for label, pinned in targets:
            pinned.close()
        for envoy in (e for e in list(self.processes) if isinstance(e, Envoy)):
            self.stop(envoy)

    def grpc_proxy(self, etcd, proxy, envoy):
        args = self.args
        pinned = self.pinned(envoy)
        targets = [("proxied", pinned)]
        wait_statuses(targets, self.valid, 200, 30, "first read through grpc-proxy")
        # What part 1 revoked is refused through the proxy too.
        held = sum(1 for t in self.revoked for _, p, w in everywhere(targets) if p.ask(w, t)[0] == 401)
        samples = []
        for n in range(args.proxy_revocations):
            time.sleep(self.rng.uniform(0, 0.25))
            token = self.token()
            samples.append(time_revocation(etcd, PREFIX, token, targets,
                                           members=[n % len(etcd.members)]))
            self.revoked.append(token)
        self.results["grpc_proxy"] = {
            "config": f"etcd grpc-proxy start --endpoints=<the {len(etcd.members)} member(s)> "
                      "--listen-addr=127.0.0.1:<port>; Envoy proxied (--concurrency 2) with its "
                      "etcd cluster on the proxy only; puts through the members' gateway",
            "held_refused": f"{held} of {(len(self.revoked) - len(samples)) * len(pinned.conns)} "
                            "(tokens x workers)",
            "from_put_ms": distribution(samples, "from_put_ms"),
            "from_ack_ms": distribution(samples, "from_ack_ms"),
            "lost": sum(1 for s in samples if s["lost"]),
            "odd": [o for s in samples for o in s["odd"]][:10],
            "samples": samples,
        }
        self.say(f"grpc-proxy: {distribution(samples, 'from_put_ms')}")
        pinned.close()
        self.stop(envoy)
        self.stop(proxy)

    def restart(self, etcd, targets, west):
        """2a: west stopped and started again; probed from before it listens."""
        self.say("restart: stopping west, starting it again, probing from before it listens")
        dict(targets)["west"].close()
        self.stop(west)
        port = free_ports(1)[0]
        probers = [Prober(port, self.revoked, self.valid, offset=i * 7) for i in range(2)]
        for p in probers:
            p.start()
        try:
            west = self.envoy("west-restarted", envoy_config(self.jwks, etcd.ports, PREFIX, port=port), 2)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and any(p.first_valid_200() is None for p in probers):
                time.sleep(0.05)
            time.sleep(0.5)
        finally:
            for p in probers:
                p.stop()
        summary = summarize_probes(probers)
        pinned = self.pinned(west)
        targets = [t for t in targets if t[0] != "west"] + [("west", pinned)]
        # Every revoked token, on every worker of the restarted Envoy.
        after = collections.Counter(pinned.ask(w, t)[0] for t in self.revoked for w in sorted(pinned.conns))
        summary.update({
            "config": "west (--concurrency 2) stopped (SIGTERM) and started again with its listener "
                      "on a port chosen before the start; 2 threads send requests on new "
                      "connections from before it listens: each revoked token in turn, each "
                      "followed by the valid token, until the valid one is served + 0.5 s",
            "revoked_tokens": len(self.revoked),
            "read_log_s": round(west.log_seconds("etcd: read ") or -1, 3),
            "after_ready_all_revoked_x_workers": dict(collections.Counter(str(k) for k in after.elements())),
        })
        self.results["restart"] = summary
        self.say(f"restart: {summary['revoked_requests']} revoked-token requests, "
                 f"{summary['revoked_200']} answered 200; statuses {summary['revoked_statuses']}; "
                 f"valid {summary['valid_statuses']}")
        return targets

    def leader_kill(self, etcd, targets):
        """2b: the leader SIGKILLed while wrk drives both Envoys; revocations through the others."""
        args = self.args
        envoys = {label: pinned.envoy for label, pinned in targets}
        before = {label: e.stats() for label, e in envoys.items()}
        loads = [Load(e.port, args.pools / REPEAT_POOL) for e in envoys.values()]
        for load in loads:
            load.start()
        samples, leader = [], None
        try:
            time.sleep(2)
            leader = etcd.leader()
            self.say(f"leader kill: wrk on east and west; killing the leader "
                     f"{etcd.members[leader]['name']} (SIGKILL)")
            etcd.kill_member(leader)
            killed = time.monotonic()
            others = [i for i in range(len(etcd.members)) if i != leader]
            for n in range(args.kill_revocations):
                token = self.token()
                sample = time_revocation(etcd, PREFIX, token, targets, members=others, timeout=60,
                                         check_before=False, attempt_timeout=3.0)
                sample["after_kill_s"] = round(time.monotonic() - killed, 2)
                samples.append(sample)
                self.revoked.append(token)
                self.say(f"leader kill: revocation {n + 1}: put {sample['put_ms']:.0f} ms "
                         f"({sample['put_attempts']} attempt(s)), enforced "
                         f"{sample['from_ack_ms']} ms after the ack; lost {sample['lost']}")
                time.sleep(0.2)
        finally:
            load_results = [load.stop() for load in loads]
        after = {label: e.stats() for label, e in envoys.items()}
        etcd.start_member(leader)
        etcd.wait_healthy(60)
        new_leader = etcd.leader()
        # Nothing lost: every revocation of this part refused everywhere, now that all is calm.
        final_lost = []
        for s, token in zip(samples, self.revoked[-len(samples):]):
            for label, pinned, w in everywhere(targets):
                status, challenge = pinned.ask(w, token)
                if not (status == 401 and REVOKED in challenge):
                    final_lost.append(f"{s['jti']} on {label}: {status}")
        self.results["leader_kill"] = {
            "config": "3 members; wrk -t1 -c16 (repeated valid token, 5 s runs back to back) on "
                      "east and west throughout; the leader (etcdctl endpoint status -w json) "
                      "SIGKILLed; revocations written one after another through the 2 others "
                      "(the clock starts at the first attempt; a put not answered in 3 s or "
                      "refused is retried on the other member); each must reach all 4 workers; "
                      "the member restarted after",
            "killed": etcd.members[leader]["name"], "new_leader": etcd.members[new_leader]["name"],
            "revocations": len(samples),
            "enforced": sum(1 for s in samples if not s["lost"]),
            "lost_at_the_time": sum(1 for s in samples if s["lost"]),
            "lost_in_the_end": final_lost,
            "from_put_ms": distribution(samples, "from_put_ms"),
            "from_ack_ms": distribution(samples, "from_ack_ms"),
            "put_ms": distribution(samples, "put_ms"),
            "wrk": dict(zip(envoys, load_results)),
            "watch_broken": {label: after[label].get("revocation.etcd_watch_broken", 0)
                             - before[label].get("revocation.etcd_watch_broken", 0) for label in envoys},
            "samples": samples,
        }

    def outage(self, etcd, targets, stale_envoy):
        """etcd entirely down then back: 1's broken watch, 2c and 2d."""
        args = self.args
        stale = ("stale", self.pinned(stale_envoy))
        wait_statuses([stale], self.valid, 200, 30, "stale Envoy's first read")
        all_targets = targets + [stale]
        before_down, back_token = self.token(), self.token()
        for token in (before_down, back_token):
            wait_statuses(all_targets, token, 200, 10, "outage tokens before")
        stats_before = {label: p.envoy.stats() for label, p in all_targets}
        c = claims(before_down)
        etcd.put_retry(jti_key(PREFIX, c["jti"]), exp_value(c["exp"]))
        etcd.kill_all()
        down = time.monotonic()
        self.say(f"outage: a revocation written, then every member SIGKILLed; "
                 f"{args.outage_seconds} s down")
        held = self.revoked[:]
        valid_log = collections.defaultdict(list)  # label -> [(t, status)]
        before_down_log = collections.defaultdict(list)
        held_check = None
        while time.monotonic() - down < args.outage_seconds:
            for label, pinned, w in everywhere(all_targets):
                t = time.monotonic() - down
                valid_log[label].append((round(t, 2), pinned.ask(w, self.valid)[0]))
                before_down_log[label].append((round(t, 2), pinned.ask(w, before_down)[0]))
            elapsed = time.monotonic() - down
            if held_check is None and elapsed > min(args.stale_seconds + 2.5, args.outage_seconds / 2):
                # Every held revocation, on every worker of every Envoy, while etcd is down.
                statuses = collections.Counter()
                for token in held:
                    for label, pinned, w in everywhere(all_targets):
                        status, challenge = pinned.ask(w, token)
                        statuses[f"{status}{' revoked' if REVOKED in challenge else ''}"] += 1
                held_check = {"at_s": round(elapsed, 2), "tokens": len(held),
                              "workers": len(everywhere(all_targets)), "statuses": dict(statuses)}
            time.sleep(0.25)
        self.say("outage: restarting every member; writing a revocation as soon as a put succeeds")
        restarted = time.monotonic()
        etcd.start_all()
        c = claims(back_token)
        _, attempts, back = etcd.put_retry(jti_key(PREFIX, c["jti"]), exp_value(c["exp"]), timeout=120)
        self.revoked += [before_down, back_token]
        # Until both revocations are refused and the valid token served on every worker.
        want = {(label, kind): None for label, _, _ in everywhere(all_targets)
                for kind in ("back", "before_down", "valid")}
        tokens = {"back": back_token, "before_down": before_down, "valid": self.valid}
        deadline = back + BACKOFF_CAP_SECONDS * 2 + 30
        while any(v is None for v in want.values()) and time.monotonic() < deadline:
            for label, pinned, w in everywhere(all_targets):
                for kind, token in tokens.items():
                    if want[(label, kind)] is not None:
                        continue
                    status, challenge = pinned.ask(w, token)
                    ok = status == 200 if kind == "valid" else (status == 401 and REVOKED in challenge)
                    if ok:
                        want[(label, kind)] = time.monotonic() - back
            time.sleep(0.01)
        etcd.wait_healthy(60)
        stats_after = {label: p.envoy.stats() for label, p in all_targets}

        def first(log, predicate):
            return next((t for t, s in log if predicate(s)), None)

        fresh = [label for label, _, _ in everywhere(targets)]
        stale_labels = [label for label, _, _ in everywhere([stale])]
        stale_first_503 = {label: first(valid_log[label], lambda s: s == 503) for label in stale_labels}
        stale_200_after_503 = {label: any(s == 200 for t, s in valid_log[label]
                                          if stale_first_503[label] is not None and t > stale_first_503[label])
                               for label in stale_labels}

        def worst(kind, labels=None):
            times = [v for (label, k), v in want.items() if k == kind and (labels is None or label in labels)]
            return None if any(t is None for t in times) else round(max(times), 2)

        self.results["outage"] = {
            "config": f"every member SIGKILLed {args.outage_seconds} s, then restarted from its data; "
                      f"east and west (max_stale_seconds {MAX_STALE}) and stale "
                      f"(--concurrency 2, max_stale_seconds {args.stale_seconds}), all on_stale "
                      "deny; a revocation written (acknowledged) just before the kill; the valid "
                      "token and that revocation asked on every worker every 0.25 s while down; "
                      "every held revocation asked on every worker once while down; after the "
                      "restart a put is retried (every 0.1 s) until one succeeds: the store is "
                      "back then",
            "outage_s": args.outage_seconds,
            "restart_to_first_put_s": round(back - restarted, 2),
            "first_put_attempts": attempts,
            "held_during_outage": held_check,
            "before_down_statuses_during_outage": dict(collections.Counter(
                str(s) for label in before_down_log for _, s in before_down_log[label])),
            "valid_on_fresh_envoys_during_outage": dict(collections.Counter(
                str(s) for label in fresh for _, s in valid_log[label])),
            "stale_valid_first_503_s": stale_first_503,
            "stale_valid_last_200_s": {label: max((t for t, s in valid_log[label] if s == 200), default=None)
                                       for label in stale_labels},
            "stale_200_after_503": stale_200_after_503,
            "back_revocation_enforced_s": worst("back"),
            "before_down_revocation_enforced_s": worst("before_down"),
            "valid_served_again_s": {"fresh": worst("valid", fresh), "stale": worst("valid", stale_labels)},
            "per_worker_s": {f"{label} {kind}": None if v is None else round(v, 2)
                             for (label, kind), v in want.items()},
            "watch_broken": {label: stats_after[label].get("revocation.etcd_watch_broken", 0)
                             - stats_before[label].get("revocation.etcd_watch_broken", 0)
                             for label in stats_after},
        }
        self.say(f"outage: back revocation enforced everywhere {worst('back')} s after the store "
                 f"was back; stale Envoy 503 from {stale_first_503}")
        stale[1].close()
        self.stop(stale_envoy)

    # -- part 3: 1M entries ----------------------------------------------------------------------

    def bulk_parts(self):
        args = self.args
        if args.smoke:
            etcd = self.etcd  # the same member, another prefix
        else:
            self.stop(self.etcd)
            self.say("bulk: starting a single etcd member (--max-txn-ops 10000)")
            etcd = EtcdCluster(self.datadir, self.workdir, "bulk", 1, ["--max-txn-ops", str(MAX_TXN_OPS)])
            self.processes.append(etcd)
        victims = [self.token() for _ in range(5)]
        exp = int(time.time()) + 86400
        written = bulk_write(etcd, 0, args.entries, BULK_PREFIX, victims, exp)
        status = etcd.gateway(0, "/v3/maintenance/status", {})
        self.say(f"bulk: wrote {args.entries} keys in {written:.1f} s (etcd db {int(status['dbSize']) / 2**20:.0f} MiB)")
        # What one Range page (PAGE_LIMIT keys, as the filter asks) costs etcd at the start of the
        # prefix and near its end: etcd 3.4 walks every key left in the range for `count`.
        pages = {}
        end = b64(BULK_PREFIX[:-1] + chr(ord(BULK_PREFIX[-1]) + 1))
        for where, start in (("first page", BULK_PREFIX), ("a page near the end", BULK_PREFIX + "jti/bulk-999")):
            t = time.monotonic()
            answer = etcd.gateway(0, "/v3/kv/range", {"key": b64(start), "range_end": end, "limit": PAGE_LIMIT,
                                                      "keys_only": True}, timeout=120)
            pages[where] = {"ms": round((time.monotonic() - t) * 1000, 1),
                            "count": int(answer.get("count", 0)), "limit": PAGE_LIMIT}
        self.say(f"bulk: one Range page of {PAGE_LIMIT} keys: {pages}")
        result = {"entries": args.entries, "write_s": round(written, 2), "range_page": pages,
                  "write_config": f"/v3/kv/txn, {PUTS_PER_TXN} puts per transaction, 2 threads, "
                                  f"values {{\"exp\": now + 1 day}}; keys {BULK_PREFIX}jti/bulk-<i> "
                                  f"and 5 pool tokens' jti",
                  "etcd_db_bytes": int(status["dbSize"])}
        self.results["bulk"] = result

        def start(specs):
            """(name, prefix, concurrency, probe) Envoys started at once; each waited for until
            it holds its prefix, the `probe` ones probed from before they listen."""
            ports = free_ports(len(specs))
            probers = {name: [Prober(port, victims, self.valid, interval=0.02, offset=i) for i in range(2)]
                       for (name, _, _, probe), port in zip(specs, ports) if probe}
            for p in (p for group in probers.values() for p in group):
                p.start()
            try:
                envoys = self.envoys_at_once([
                    (name, envoy_config(self.jwks, etcd.ports, prefix, port=port), concurrency)
                    for (name, prefix, concurrency, _), port in zip(specs, ports)])
                for envoy, (_, prefix, _, _) in zip(envoys, specs):
                    entries = args.entries if prefix == BULK_PREFIX else 0
                    held = envoy.wait_for_etcd(entries, args.load_timeout) if prefix else None
                    envoy.load = {"held_s": None if held is None else round(held, 3),
                                  "read_log_s": envoy.log_seconds("etcd: read ")}
            finally:
                for p in (p for group in probers.values() for p in group):
                    p.stop()
            for envoy in envoys:
                if envoy.name in probers:
                    envoy.load["probes"] = summarize_probes(probers[envoy.name])
            return {envoy.name: envoy for envoy in envoys}

        specs = [("empty-c1", EMPTY_PREFIX, 1, False), ("empty-c2", EMPTY_PREFIX, 2, False),
                 ("none-c1", None, 1, False), ("full-c1", BULK_PREFIX, 1, True),
                 ("full-c2", BULK_PREFIX, 2, True)]
        # The full ones alone (their start is measured), unless in --smoke.
        groups = [specs] if args.smoke else [specs[:3], specs[3:4], specs[4:]]
        started = {}
        for group in groups:
            started.update(start(group))
            for name in (g[0] for g in group if g[3]):
                full = started[name]
                self.say(f"{name}: {args.entries} entries held {full.load['held_s']} s after start "
                         f"(read logged at {full.load['read_log_s']:.2f} s); probes {full.load['probes']}")
        pairs = {c: (started[f"empty-c{c}"], started[f"full-c{c}"]) for c in (1, 2)}
        none = started["none-c1"]
        for empty, full in pairs.values():
            for envoy in (empty, full):
                listbench.check_wrk(f"memory {envoy.name}", base.run_wrk(envoy.port, args.pools / REPEAT_POOL, 1))
        time.sleep(args.settle)
        memory = []
        for concurrency, (empty, full) in pairs.items():
            m = {"empty": empty.memory(), "full": full.memory()}
            row = {"concurrency": concurrency, "entries": args.entries,
                   "rss_empty": m["empty"]["VmRSS"], "rss_full": m["full"]["VmRSS"],
                   "hwm_empty": m["empty"]["VmHWM"], "hwm_full": m["full"]["VmHWM"],
                   "held_s_full": full.load["held_s"], "read_log_s_full": full.load["read_log_s"],
                   "read_log_s_empty": empty.load["read_log_s"], "probes": full.load["probes"]}
            row["bytes_per_entry"] = (row["rss_full"] - row["rss_empty"]) / args.entries
            row["peak_bytes_per_entry"] = (row["hwm_full"] - row["hwm_empty"]) / args.entries
            memory.append(row)
            self.say(f"bulk memory c{concurrency}: RSS {row['rss_empty'] / 2**20:.1f} -> "
                     f"{row['rss_full'] / 2**20:.1f} MiB = {row['bytes_per_entry']:.1f} bytes/entry")
        result["memory"] = memory

        # Propagation with the whole prefix held (full-c2: 2 workers).
        full2 = pairs[2][1]
        pinned = self.pinned(full2)
        samples = []
        for n in range(args.bulk_revocations):
            time.sleep(self.rng.uniform(0, 0.25))
            samples.append(time_revocation(etcd, BULK_PREFIX, self.token(), [("full-c2", pinned)]))
        pinned.close()
        result["propagation"] = {"config": "full-c2 (--concurrency 2, the whole prefix held), puts to the one member",
                                 "from_put_ms": distribution(samples, "from_put_ms"),
                                 "from_ack_ms": distribution(samples, "from_ack_ms"),
                                 "lost": sum(1 for s in samples if s["lost"]), "samples": samples}
        self.say(f"bulk propagation: {result['propagation']['from_put_ms']}")
        for envoy in pairs[2]:
            self.stop(envoy)

        # Throughput: 1M held (watch live) vs no store vs an empty prefix vs the HTTP list
        # (empty, polled every second: bench/revocation.py's config), --concurrency 1.
        server = listbench.ListServer(self.workdir, "empty", 0)
        self.processes.append(server)
        listed = self.envoy("list-c1", listbench.envoy_config(self.jwks, server.port), 1)
        listed.wait_for_list(0, args.load_timeout)
        variants = {"none": none, "list": listed, "empty": pairs[1][0], "full": pairs[1][1]}
        throughput = {k: [] for k in variants}
        for round_number in range(args.rounds):
            order = list(variants) if round_number % 2 == 0 else list(reversed(variants))
            for kind in order:
                envoy = variants[kind]
                tokens = args.pools / REPEAT_POOL
                if args.warmup:
                    listbench.check_wrk(f"{kind} warm-up", base.run_wrk(envoy.port, tokens, args.warmup))
                run = base.run_wrk(envoy.port, tokens, args.seconds)
                listbench.check_wrk(kind, run)
                throughput[kind].append(run)
                self.say(f"round {round_number + 1}/{args.rounds} throughput {kind:5} "
                         f"{run['rps']:9.0f} req/s  p99 {run['p99_ms']:.3f} ms")
        result["throughput"] = throughput
        result["watch_live"] = {k: variants[k].stats().get("revocation.etcd_watch_broken", 0) == 0
                                for k in ("full", "empty")}
        for envoy in variants.values():
            self.stop(envoy)
        self.stop(server)

        # Over MAX_READ_KEYS: what a new Envoy does with this prefix now.
        if args.entries >= MAX_READ_KEYS:
            keys = int(etcd.gateway(0, "/v3/kv/range", {"key": b64(BULK_PREFIX), "range_end": b64(
                BULK_PREFIX[:-1] + chr(ord(BULK_PREFIX[-1]) + 1)), "count_only": True}).get("count", 0))
            envoy = self.envoy("over-limit", envoy_config(self.jwks, etcd.ports, BULK_PREFIX), 1)
            deadline = time.monotonic() + args.load_timeout
            stats = {}
            while time.monotonic() < deadline:
                stats = envoy.stats()
                if stats.get("revocation.etcd_read_failed", 0) or stats.get("revocation.etcd_read_success", 0):
                    break
                time.sleep(0.2)
            time.sleep(1)
            status, _ = listbench.get(envoy.port, self.valid, timeout=REQUEST_TIMEOUT)
            log = envoy.log_path.read_text(errors="replace")
            result["over_limit"] = {"keys": keys, "read_failed": stats.get("revocation.etcd_read_failed", 0),
                                    "read_success": stats.get("revocation.etcd_read_success", 0),
                                    "logged_max_read_keys": "MAX_READ_KEYS" in log,
                                    "valid_token_status": status,
                                    "after_s": round(time.monotonic() - envoy.started, 1)}
            self.say(f"over MAX_READ_KEYS: {result['over_limit']}")
            self.stop(envoy)

    def main(self):
        self.started = time.monotonic()
        self.load_before = os.getloadavg()
        try:
            self.cluster_parts()
            self.bulk_parts()
        finally:
            self.cleanup()
        problems = listbench.scan_logs(self.envoys)
        render(collect(self, time.monotonic() - self.started, problems), self.args.out)


# ---- results ---------------------------------------------------------------------------------

def collect(bench, elapsed, problems):
    """Everything measured, with the run's parameters: what `render` needs."""
    args = bench.args
    version = subprocess.run([str(base.ENVOY), "--version"], capture_output=True,
                             text=True).stdout.strip().split()[-1]
    etcd_version = subprocess.run([ETCD, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "envoy": version, "etcd": etcd_version, "smoke": args.smoke,
        "elapsed_seconds": round(elapsed, 1),
        "loadavg_before": [round(x, 2) for x in bench.load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "filter_config": filter_config("<pools/jwks.json>", PREFIX),
        "wrk": "-t1 -c16 --latency", "seconds_per_run": args.seconds, "warmup_seconds": args.warmup,
        "rounds": args.rounds, "settle_seconds": args.settle, "stale_seconds": args.stale_seconds,
        **bench.results,
        "envoy_log_warnings": problems,
    }


def render(data, out):
    """Writes etcd_results.json (`data` with the targets) and etcd_results.md to `out`."""
    r = data
    smoke, stale_seconds = data["smoke"], data["stale_seconds"]
    rows = []

    def row(measure, value, target="-", met=None):
        rows.append({"measure": measure, "value": value, "target": target,
                     "met": None if met is None else bool(met)})

    def ms(d):
        return (f"p50 {d['p50']:.0f} ms, p99 {d['p99']:.0f} ms, max {d['max']:.0f} ms (n={d['n']})"
                if d.get("n") else "none enforced")

    p = r["propagation"]
    d = p["from_put_ms"]
    row(f"propagation, put sent to 401 on all 4 workers of 2 Envoys ({r['cluster']['members']} member(s))",
        ms(d) + f"; lost {p['lost']}", f"p99 <= {PROPAGATION_TARGET_MS} ms",
        d.get("n") and d["p99"] <= PROPAGATION_TARGET_MS and not p["lost"])
    row("propagation, from the put's acknowledgement", ms(p["from_ack_ms"]))
    row("put latency (JSON gateway, loopback)", ms(p["put_ms"]))
    g = r["grpc_proxy"]
    row("propagation through etcd grpc-proxy (2 workers)",
        ms(g["from_put_ms"]) + f"; lost {g['lost']}; held before it: {g['held_refused']} refused")
    o = r["outage"]
    back = o["back_revocation_enforced_s"]
    row(f"watch broken: etcd down {o['outage_s']} s, back; first put acknowledged to 401 on all "
        f"6 workers of 3 Envoys", "not enforced" if back is None else f"{back:.2f} s",
        f"<= {BACKOFF_CAP_SECONDS} s (backoff cap)", back is not None and back <= BACKOFF_CAP_SECONDS)
    rs = r["restart"]
    row("(a) Envoy restart: revoked tokens answered 200, from before it listened",
        f"{rs['revoked_200']} of {rs['revoked_requests']} requests ({rs['revoked_tokens']} tokens; "
        f"statuses {rs['revoked_statuses']}; valid first served at {rs['first_valid_200_s']} s)",
        "0", rs["revoked_200"] == 0)
    lk = r["leader_kill"]
    if "skipped" in lk:
        row("(b) leader killed under load", f"not run ({lk['skipped']})")
    else:
        row("(b) leader killed under load: revocations through the other members enforced everywhere",
            f"{lk['enforced']} of {lk['revocations']}; lost in the end: {len(lk['lost_in_the_end'])}; "
            f"from put sent {ms(lk['from_put_ms'])}; from ack {ms(lk['from_ack_ms'])}; valid token "
            f"non-2xx under wrk: " + ", ".join(f"{k} {v['non_2xx']} of {v['requests']}" for k, v in lk["wrk"].items()),
            "none lost", lk["enforced"] == lk["revocations"] and not lk["lost_in_the_end"])
    h = o["held_during_outage"] or {}
    held_ok = h and set(h["statuses"]) <= {"401 revoked", "503"} and h["statuses"].get("401 revoked")
    row("(c) etcd down: held revocations on every worker",
        f"{h.get('statuses')} ({h.get('tokens')} tokens x {h.get('workers')} workers, "
        f"{h.get('at_s')} s into the outage)", "none 200", bool(held_ok))
    fresh = o["valid_on_fresh_envoys_during_outage"]
    row(f"(c) etcd down: valid token, max_stale_seconds {MAX_STALE} (east, west)",
        f"statuses {fresh}", "all 200", set(fresh) == {"200"})
    firsts = [v for v in o["stale_valid_first_503_s"].values()]
    stale_ok = (all(v is not None and stale_seconds - 0.5 <= v <= stale_seconds + 2.5 for v in firsts)
                and not any(o["stale_200_after_503"].values()))
    row(f"(c) etcd down: valid token, max_stale_seconds {stale_seconds} (stale): 503 from",
        ", ".join(f"{k} {v} s" for k, v in o["stale_valid_first_503_s"].items())
        + f" (last 200: {', '.join(f'{k} {v} s' for k, v in o['stale_valid_last_200_s'].items())})",
        f"200 until {stale_seconds} s, then 503", stale_ok)
    bd = o["before_down_revocation_enforced_s"]
    row("(d) back up: revocation written just before the outage / at the restart, enforced everywhere",
        f"{bd} s / {back} s after the store was back (during the outage: "
        f"{o['before_down_statuses_during_outage']})", "both enforced", bd is not None and back is not None)
    row("(d) stale Envoy serves valid tokens again", f"{o['valid_served_again_s']['stale']} s after the store was back")

    b = r["bulk"]
    n = f"{b['entries']:,}"
    tp = {k: {"rps": base.median([x["rps"] for x in v]), "p50_ms": base.median([x["p50_ms"] for x in v]),
              "p99_ms": base.median([x["p99_ms"] for x in v]), "requests": sum(x["requests"] for x in v),
              "non_2xx": sum(x["non_2xx"] for x in v)} for k, v in b["throughput"].items()}
    ratio = tp["full"]["rps"] / tp["none"]["rps"]
    per_round = [f["rps"] / e["rps"] for f, e in zip(b["throughput"]["full"], b["throughput"]["none"])]
    row(f"throughput, {n} entries held (watch live) / no revocation store (ratio of medians)",
        f"{ratio:.4f} ({tp['full']['rps']:.0f} / {tp['none']['rps']:.0f} req/s; per round: "
        + " ".join(f"{x:.3f}" for x in per_round) + ")", f">= {THROUGHPUT_TARGET}", ratio >= THROUGHPUT_TARGET)
    ratio_empty = tp["full"]["rps"] / tp["empty"]["rps"]
    row(f"throughput, {n} entries held / empty prefix (both watching)",
        f"{ratio_empty:.4f} ({tp['full']['rps']:.0f} / {tp['empty']['rps']:.0f} req/s)")
    for kind, label in (("empty", "etcd store, empty prefix"), ("list", "HTTP revocation list, empty")):
        if kind in tp:
            row(f"throughput, {label} / no revocation store (what any store costs)",
                f"{tp[kind]['rps'] / tp['none']['rps']:.4f} ({tp[kind]['rps']:.0f} / {tp['none']['rps']:.0f} req/s)")
    for m in b["memory"]:
        row(f"memory, --concurrency {m['concurrency']}: RSS bytes per entry", f"{m['bytes_per_entry']:.1f}",
            "- (list: <= 100)")
        row(f"memory, --concurrency {m['concurrency']}: peak (VmHWM) bytes per entry",
            f"{m['peak_bytes_per_entry']:.1f}")
        row(f"--concurrency {m['concurrency']}: Envoy start to {n} entries held",
            f"{m['held_s_full']:.2f} s (read logged at {m['read_log_s_full']:.2f} s; empty prefix: "
            f"{m['read_log_s_empty']:.2f} s)")
        pr = m["probes"]
        row(f"--concurrency {m['concurrency']}: revoked tokens (in the {n}) answered 200 during the initial read",
            f"{pr['revoked_200']} of {pr['revoked_requests']} (statuses {pr['revoked_statuses']}; valid "
            f"{pr['valid_statuses']}, first 200 at {pr['first_valid_200_s']} s)", "0", pr["revoked_200"] == 0)
    bp = b["propagation"]
    row(f"propagation with {n} entries held (1 member, 2 workers)", ms(bp["from_put_ms"]) + f"; lost {bp['lost']}")
    row(f"bulk write of {n} keys (JSON gateway /v3/kv/txn)", f"{b['write_s']:.1f} s; etcd db "
        f"{b['etcd_db_bytes'] / 2**20:.0f} MiB")
    page_keys = next(iter(b["range_page"].values()), {}).get("limit", 1000)
    row(f"etcd: one Range page of {page_keys:,} keys, first / near the end",
        " / ".join(f"{v['ms']:.0f} ms (count {v['count']:,})" for v in b["range_page"].values()))
    if "over_limit" in b:
        ol = b["over_limit"]
        row(f"a new Envoy on a prefix of {ol['keys']:,} keys (MAX_READ_KEYS {MAX_READ_KEYS:,})",
            f"read failed {ol['read_failed']}x, succeeded {ol['read_success']}x"
            f"{', logged MAX_READ_KEYS' if ol['logged_max_read_keys'] else ''}; valid token answered "
            f"{ol['valid_token_status']} ({ol['after_s']} s after start)")

    b = data["bulk"] = {**b, "throughput_summary": tp,
                        "throughput_ratio_per_round": [round(x, 4) for x in per_round]}
    data["targets"] = rows
    out.mkdir(parents=True, exist_ok=True)
    (out / "etcd_results.json").write_text(json.dumps(data, indent=2) + "\n")

    mib = 2 ** 20
    lines = [
        "# bearer-guard etcd revocation store benchmark" + (" (smoke run: not a measurement)" if smoke else ""),
        "",
        f"{data['date']}; Envoy {data['envoy']}; {data['etcd']}; bench/etcd.py"
        f"{' --smoke' if smoke else ''}; {data['elapsed_seconds']:.0f} s in all; load average "
        f"{data['loadavg_before'][0]:.2f} before, {data['loadavg_after'][0]:.2f} after (2 cores). bearer-guard "
        f"jwt_cache_size 1000, crypto auto, `revocation.etcd` = `{{\"cluster\": \"etcd\", \"prefix\": ..., "
        f"\"timeout_ms\": {TIMEOUT_MS}, \"max_stale_seconds\": {MAX_STALE}, \"on_stale\": \"deny\"}}` unless "
        "said otherwise; Envoy cluster `etcd` STATIC, HTTP/2, one endpoint per member; direct_response "
        "route; loopback. Revocations are `<prefix>jti/<jti>` = `{\"exp\": <token exp>}` written "
        "through etcd's JSON gateway (`POST /v3/kv/put`, the put `etcdctl put` makes); times run from "
        "sending the put. \"Every worker\": one keep-alive connection pinned to each worker (Envoy's "
        "per-worker `downstream_cx_active` went up on that worker when it was accepted), a 401 "
        "`token revoked` on each.",
        "",
        "| measure | value | target | met? |",
        "|---|---|---|---|",
    ]
    for x in rows:
        met = "-" if x["met"] is None else ("yes" if x["met"] else "NO")
        lines.append(f"| {x['measure']} | {x['value']} | {x['target']} | {met} |")

    lines += ["", "## Propagation (ms from sending the put)", "",
              "| where | n | p50 | p90 | p99 | max | mean |", "|---|---:|---:|---:|---:|---:|---:|"]
    where = [(f"{r['cluster']['members']} member(s), 2 Envoys x 2 workers", p["from_put_ms"]),
             ("the same, from the put's acknowledgement", p["from_ack_ms"]),
             ("the put itself", p["put_ms"]),
             ("through grpc-proxy, 1 Envoy x 2 workers", g["from_put_ms"])]
    if "skipped" not in lk:
        where += [("leader killed, through the other members", lk["from_put_ms"]),
                  ("leader killed, from the acknowledgement", lk["from_ack_ms"])]
    where.append((f"{n} entries held, 1 member, 1 Envoy x 2 workers", bp["from_put_ms"]))
    for label, dist in where:
        if dist.get("n"):
            lines.append(f"| {label} | {dist['n']} | {dist['p50']:.1f} | {dist['p90']:.1f} | "
                         f"{dist['p99']:.1f} | {dist['max']:.1f} | {dist['mean']:.1f} |")

    lines += ["", f"## {n} entries: throughput (--concurrency 1)", "",
              "| run | req/s | p50 ms | p99 ms | non-2xx (all rounds) |", "|---|---:|---:|---:|---:|"]
    for kind, label in (("none", "no revocation store"),
                        ("list", "HTTP revocation list (bench/revocation.py's config), empty list"),
                        ("empty", "etcd store, empty prefix, watch live"),
                        ("full", f"etcd store, {n} entries held, watch live")):
        s = tp[kind]
        lines.append(f"| {label} | {s['rps']:.0f} | {s['p50_ms']:.3f} | {s['p99_ms']:.3f} | "
                     f"{s['non_2xx']} of {s['requests']} |")
    lines += ["", f"## {n} entries: memory", "",
              "| --concurrency | RSS empty MiB | RSS full MiB | bytes/entry | VmHWM empty MiB | VmHWM full MiB "
              "| start to read logged | start to all held |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m in b["memory"]:
        lines.append(f"| {m['concurrency']} | {m['rss_empty'] / mib:.1f} | {m['rss_full'] / mib:.1f} | "
                     f"{m['bytes_per_entry']:.1f} | {m['hwm_empty'] / mib:.1f} | {m['hwm_full'] / mib:.1f} | "
                     f"{m['read_log_s_full']:.2f} s | {m['held_s_full']:.2f} s |")

    lines += ["", "## Configurations", ""]
    lines.append(f"- etcd for parts 1, 2, 4: {r['cluster']['members']} member(s), flags "
                 f"`{' '.join(r['cluster']['flags'])}`, data dirs in a temp dir.")
    lines.append(f"- Propagation: {p['config']}; {p['from_put_ms'].get('n', 0)} revocations, a random "
                 "0-250 ms pause before each, each token allowed on every worker first.")
    lines.append(f"- grpc-proxy: {g['config']}.")
    lines.append(f"- (a) restart: {rs['config']}. Answers before the valid token was first served: "
                 f"see the JSON (`restart`); the read was logged {rs['read_log_s']} s after the start; "
                 f"afterwards every revoked token x every worker: {rs['after_ready_all_revoked_x_workers']}.")
    if "skipped" not in lk:
        lines.append(f"- (b) leader kill: {lk['config']}. Killed {lk['killed']}, new leader "
                     f"{lk['new_leader']}; etcd_watch_broken during it: {lk['watch_broken']}.")
    lines.append(f"- Outage ((c), (d) and the broken watch): {o['config']}. The first put succeeded "
                 f"{o['restart_to_first_put_s']} s after the restart ({o['first_put_attempts']} attempts). "
                 f"The filter retries a broken watch 1, 2, 4, 8, 16, 30, 30... s apart (1 s doubling, "
                 f"30 s cap), so after an outage of {o['outage_s']} s the wait for the next retry "
                 f"is what the time to enforcement measures; etcd_watch_broken during it: {o['watch_broken']}.")
    lines.append(f"- {n} entries: {b['write_config']}; a single member (`--max-txn-ops {MAX_TXN_OPS}`, "
                 "default 2 GB backend quota) "
                 + ("(in --smoke: the same member as above, another prefix)" if smoke else "")
                 + f"; Envoys full-c1/-c2 ({BULK_PREFIX}), empty-c1/-c2 ({EMPTY_PREFIX}), none-c1 (no "
                 "revocation store); 2 threads probe each full Envoy from before it listens (every "
                 "20 ms each: a revoked token in the prefix, then the valid one, new connections); "
                 f"memory after 1 s of wrk on each and {data['settle_seconds']} s of rest; throughput "
                 f"wrk -t1 -c16, repeated valid token, {data['seconds_per_run']} s runs after "
                 f"{data['warmup_seconds']} s warm-up, {data['rounds']} interleaved rounds, medians; "
                 "the c2 pair is stopped before.")
    pages = list(b["range_page"].values())
    none_rounds = [x["rps"] for x in b["throughput"]["none"]]
    spread = (max(none_rounds) - min(none_rounds)) / min(none_rounds)
    lines += ["", "## Notes", "",
              f"- Start with {n} entries: the filter reads the prefix in pages of {PAGE_LIMIT:,} keys "
              "(src/remote/watch.rs PAGE_LIMIT) and etcd 3.4 walks every key left in the range "
              f"to count them for each page ({pages[0]['ms']:.0f} ms for the first page, count "
              f"{pages[0]['count']:,}; {pages[-1]['ms']:.0f} ms near the end, count {pages[-1]['count']:,}; "
              "etcd-io/etcd#11057), so a whole read grows with the square of the prefix. Until it "
              "completes, requests are answered 503 (`on_stale: deny`): see the probes above.",
              f"- Throughput: an empty HTTP list costs {1 - tp['list']['rps'] / tp['none']['rps']:.0%} "
              f"and an empty etcd prefix {1 - tp['empty']['rps'] / tp['none']['rps']:.0%} against no "
              f"revocation store (medians; no store's rounds spread {spread:.0%} on this machine); the "
              f"{n} entries against the empty prefix: {ratio_empty:.3f}.",
              "- Propagation with a large prefix: above 100,000 held entries (BUILD_AT_ONCE in "
              "src/filter/etcd.rs) the reader rebuilds the shared set at its next tick (250 ms) "
              "instead of on the watch event, so a put waits for the tick and a rebuild of the "
              "whole set.",
              "- Memory: the full Envoys' VmRSS is "
              + " and ".join(f"{m['rss_full'] / m['hwm_full']:.0%} (--concurrency {m['concurrency']})"
                             for m in b["memory"])
              + " of their VmHWM: what the initial read peaked at stays resident (a wasm VM's "
              "memory does not shrink)."]
    problems = data.get("envoy_log_warnings") or {}
    if problems:
        lines += ["", "Envoy logged warnings/errors (expected ones included: the outage, the leader "
                  "kill): " + "; ".join(f"{name}: {x['count']} (first: `{x['first'][0][-160:]}`)"
                                       for name, x in problems.items())]
    lines.append("")
    (out / "etcd_results.md").write_text("\n".join(lines))
    print("\n".join(lines))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="tiny: under a minute")
    parser.add_argument("--pools", type=pathlib.Path, help="token pools (bench_tokens); required to measure")
    parser.add_argument("--out", type=pathlib.Path, required=True, help="etcd_results.md/.json go here")
    parser.add_argument("--entries", type=int, help="bulk entries (part 3), for a trial run")
    parser.add_argument("--revocations", type=int, help="revocations timed in part 1, for a trial run")
    parser.add_argument("--outage-seconds", type=float, help="how long etcd is down, for a trial run")
    parser.add_argument("--render", type=pathlib.Path, metavar="JSON",
                        help="no measurement: write etcd_results.md/.json to --out again from this JSON")
    args = parser.parse_args()
    if args.render:
        render(json.loads(args.render.read_text()), args.out)
        return
    if args.pools is None:
        parser.error("--pools is required (unless --render)")
    overrides = {k: getattr(args, k) for k in ("entries", "revocations", "outage_seconds")}
    args.entries, args.revocations, args.proxy_revocations, args.kill_revocations = 1_000_000, 100, 20, 10
    args.bulk_revocations, args.outage_seconds, args.stale_seconds = 10, 40, 5
    args.seconds, args.warmup, args.rounds, args.settle, args.load_timeout = 5, 1, 5, 3.0, 240
    if args.smoke:
        args.entries, args.revocations, args.proxy_revocations, args.kill_revocations = 10_000, 3, 2, 0
        args.bulk_revocations, args.outage_seconds, args.stale_seconds = 2, 4, 1
        args.seconds, args.warmup, args.rounds, args.settle, args.load_timeout = 1, 0, 1, 0.5, 60
    for key, value in overrides.items():
        if value is not None:
            setattr(args, key, value)
    bench = Bench(args)
    bench.main()


if __name__ == "__main__":
    base.run_main(main, http.client.HTTPException)

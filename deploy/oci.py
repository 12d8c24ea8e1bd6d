#!/usr/bin/env python3
"""Packages bearer-guard as an OCI image for Istio's WasmPlugin, pushes it and pulls it back.

All OCI work is done by oras-py (PyPI ``oras``, the ORAS project's Python SDK), which `make`
installs into .venv; nothing here writes the OCI formats by hand. Commands:

    oci.py layout --wasm dist/bearer_guard.wasm --out dist/oci --tag 0.1.0   # make oci
    oci.py push --layout dist/oci --tag 0.1.0 --to REGISTRY/bearer-guard:0.1.0 [--plain-http]
    oci.py pull --from REGISTRY/bearer-guard:0.1.0 --out DIR [--plain-http]

``layout`` writes an OCI image layout (oci-layout, index.json, blobs/sha256/...). oras-py
writes a layout only by pulling one from a registry, so ``layout`` pushes to a throwaway
registry on 127.0.0.1 (Debian's ``docker-registry``, a free port, storage in a temporary
directory, stopped by pid when done) and pulls the layout from it. ``push`` copies the layout's
manifest and blobs byte for byte, so the manifest digest printed by ``layout`` is the one every
registry serves (pin it in WasmPlugin ``sha256`` or ``url: oci://...@sha256:...``).
Credentials for ``push``/``pull``: REGISTRY_USERNAME and REGISTRY_PASSWORD, else the Docker
config (~/.docker/config.json, as ``docker login`` or ``oras login`` write it).

The image is the *oci* variant of the Wasm image specification that Istio's agent fetches
(istio/istio pkg/wasm/imagefetcher.go, extractOCIArtifactImage; solo-io/wasm spec/spec.md):

- config: ``application/vnd.module.wasm.config.v1+json`` (runtime-config.json);
- layers: the same runtime-config.json blob, and plugin.wasm as the only
  ``application/vnd.module.wasm.content.layer.v1+wasm`` layer, uncompressed (its digest is the
  sha256 of dist/bearer_guard.wasm). Istio requires exactly these two layers: an image with the
  wasm layer alone is refused ("number of layers must be 2").
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import oras.container
import oras.layout
import oras.provider

CONFIG_MEDIA_TYPE = "application/vnd.module.wasm.config.v1+json"
WASM_MEDIA_TYPE = "application/vnd.module.wasm.content.layer.v1+wasm"
ROOT_ID = "bearer_guard"
REPOSITORY = "bearer-guard"


def runtime_config(wasm: bytes) -> bytes:
    """The image's runtime config (spec.md, "Envoy WASM Filter Specification"), deterministic."""
    abi = sorted(set(re.findall(rb"proxy_abi_version_[0-9_]+", wasm)))
    if not abi:
        sys.exit("error: the module exports no proxy_abi_version_*: not a proxy-wasm filter")
    doc = {
        "type": "envoy_proxy",
        "abiVersions": [a.decode() for a in abi],
        "config": {"root_ids": [ROOT_ID]},
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def registry(reference: str, plain_http: bool) -> oras.provider.Registry:
    """An oras-py client for the registry named in `reference`, with credentials if any."""
    provider = oras.provider.Registry(insecure=plain_http)
    container = oras.container.Container(reference)
    user, password = os.environ.get("REGISTRY_USERNAME"), os.environ.get("REGISTRY_PASSWORD")
    if user and password:
        provider.auth.set_basic_auth(user, password)
    else:
        provider.auth.load_configs(container)
    return provider


class ThrowawayRegistry:
    """Debian's docker-registry on 127.0.0.1:<free port>, storage in a temp dir; stopped by pid."""

    def __init__(self, binary: str):
        self.dir = Path(tempfile.mkdtemp(prefix="bearer-guard-oci-"))
        self.process: subprocess.Popen | None = None
        for _ in range(3):
            self.port = free_port()
            config = self.dir / "config.yml"
            config.write_text(
                "version: 0.1\n"
                "log: {level: warn, accesslog: {disabled: true}}\n"
                f"storage: {{filesystem: {{rootdirectory: {self.dir / 'storage'}}}}}\n"
                f"http: {{addr: 127.0.0.1:{self.port}}}\n"
            )
            self.process = subprocess.Popen(
                [binary, "serve", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=open(self.dir / "registry.log", "wb"),
                start_new_session=True,
            )
            if self.wait_ready():
                return
            self.stop_process()
        log = (self.dir / "registry.log").read_text(errors="replace")
        self.close()
        sys.exit(f"error: {binary} did not start on 127.0.0.1:\n{log}")

    def wait_ready(self) -> bool:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v2/", timeout=2) as r:
                    if r.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        return False

    def stop_process(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def close(self) -> None:
        self.stop_process()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "ThrowawayRegistry":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def layout_digest(layout: Path, tag: str) -> str:
    index = json.loads((layout / "index.json").read_text())
    for manifest in index.get("manifests", []):
        if manifest.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            return manifest["digest"]
    sys.exit(f"error: no manifest tagged {tag} in {layout}/index.json")


def cmd_layout(args: argparse.Namespace) -> None:
    wasm = Path(args.wasm).read_bytes()
    out = Path(args.out)
    with tempfile.TemporaryDirectory(prefix="bearer-guard-oci-files-") as files, \
            ThrowawayRegistry(args.registry_bin) as local:
        plugin = Path(files) / "plugin.wasm"
        plugin.write_bytes(wasm)
        config = Path(files) / "runtime-config.json"
        config.write_bytes(runtime_config(wasm))
        reference = f"127.0.0.1:{local.port}/{REPOSITORY}:{args.tag}"
        provider = oras.provider.Registry(insecure=True)
        provider.push(
            target=reference,
            files=[f"{config}:{CONFIG_MEDIA_TYPE}", f"{plugin}:{WASM_MEDIA_TYPE}"],
            manifest_config=f"{config}:{CONFIG_MEDIA_TYPE}",
            manifest_annotations={
                "module.wasm.runtime/type": "envoy_proxy",
                "module.wasm.runtime/abi_version": ",".join(
                    json.loads(config.read_bytes())["abiVersions"]
                ),
                "org.opencontainers.image.title": REPOSITORY,
            },
            disable_path_validation=True,
            quiet=True,
        )
        if out.exists():
            shutil.rmtree(out)
        oras.layout.NewLayoutFromRegistry(str(out), provider, reference, tag=args.tag)
    oras.layout.NewLayout(str(out))  # validates the layout
    digest = layout_digest(out, args.tag)
    print(f"{out}: OCI image layout, tag {args.tag}, manifest {digest}")
    print(f"wasm layer sha256:{hashlib.sha256(wasm).hexdigest()} ({len(wasm)} bytes)")


def cmd_push(args: argparse.Namespace) -> None:
    layout = oras.layout.NewLayout(args.layout)
    provider = registry(args.to, args.plain_http)
    response = layout.push_to_registry(provider, args.to, tag=args.tag)
    digest = response.headers.get("Docker-Content-Digest", "")
    expected = layout_digest(Path(args.layout), args.tag)
    if digest and digest != expected:
        sys.exit(f"error: the registry stored {digest}, the layout has {expected}")
    print(f"pushed {args.to} ({expected})")


def cmd_pull(args: argparse.Namespace) -> None:
    provider = registry(args.source, args.plain_http)
    for path in provider.pull(target=args.source, outdir=args.out):
        data = Path(path).read_bytes()
        print(f"{path} sha256:{hashlib.sha256(data).hexdigest()} ({len(data)} bytes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    layout = commands.add_parser("layout", help="build the OCI image layout")
    layout.add_argument("--wasm", required=True)
    layout.add_argument("--out", required=True)
    layout.add_argument("--tag", required=True)
    layout.add_argument("--registry-bin", default=os.environ.get(
        "DOCKER_REGISTRY_BIN", "/usr/bin/docker-registry"))
    layout.set_defaults(run=cmd_layout)
    push = commands.add_parser("push", help="push the layout to a registry")
    push.add_argument("--layout", required=True)
    push.add_argument("--tag", required=True, help="the tag in the layout")
    push.add_argument("--to", required=True, help="registry/repository:tag")
    push.add_argument("--plain-http", action="store_true", help="HTTP instead of HTTPS")
    push.set_defaults(run=cmd_push)
    pull = commands.add_parser("pull", help="pull the image's files from a registry")
    pull.add_argument("--from", dest="source", required=True, help="registry/repository:tag")
    pull.add_argument("--out", required=True)
    pull.add_argument("--plain-http", action="store_true", help="HTTP instead of HTTPS")
    pull.set_defaults(run=cmd_pull)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()

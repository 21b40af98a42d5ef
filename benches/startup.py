#!/usr/bin/env python3
"""Startup to ready: spawn `fapi-guard run` N times and time each run from the spawn to the
first `GET /readyz` answered 200 (policies compiled, issuer keys loaded from a file).

    cargo build --release
    python3 benches/startup.py [--bin target/release/fapi-guard] [--runs 20]

Prints each run and the median and maximum in milliseconds. /readyz is polled every 1 ms on
the admin listener, so the figures are accurate to about a millisecond. Standard library only.
"""

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

# RFC 7517 Appendix A.1: a P-256 public key (the proxy only loads it here).
JWKS = {
    "keys": [
        {
            "kty": "EC",
            "crv": "P-256",
            "x": "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4",
            "y": "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM",
            "alg": "ES256",
            "kid": "1",
        }
    ]
}

POLICY = """api: accounts
defaults:
  scopes: [accounts]
routes:
  - name: list-accounts
    method: GET
    path: /accounts
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ready(port):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=0.5)
        c.request("GET", "/readyz")
        ok = c.getresponse().status == 200
        c.close()
        return ok
    except OSError:
        return False


def one_run(binary, workdir):
    listen, admin = free_port(), free_port()
    config = f"""listen:
  address: 127.0.0.1:{listen}
  public_url: https://api.bank.example
  drain_delay: 0s
upstream:
  url: http://127.0.0.1:9
admin:
  address: 127.0.0.1:{admin}
issuers:
  - issuer: https://as.bank.example
    jwks_file: jwks.json
    audiences: [https://api.bank.example]
audit:
  sink: file
  path: audit.jsonl
policies: [policies/]
"""
    path = os.path.join(workdir, "config.yaml")
    with open(path, "w") as f:
        f.write(config)
    start = time.perf_counter()
    proc = subprocess.Popen(
        [binary, "run", "--config", path],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            if ready(admin):
                return (time.perf_counter() - start) * 1000.0
            if proc.poll() is not None:
                sys.exit(f"fapi-guard exited with {proc.returncode} before it was ready")
            if time.perf_counter() - start > 10:
                sys.exit("not ready within 10 s")
            time.sleep(0.001)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default="target/release/fapi-guard")
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "jwks.json"), "w") as f:
            json.dump(JWKS, f)
        os.mkdir(os.path.join(d, "policies"))
        with open(os.path.join(d, "policies", "accounts.yaml"), "w") as f:
            f.write(POLICY)
        times = []
        for i in range(args.runs):
            t = one_run(args.bin, d)
            times.append(t)
            print(f"run {i + 1:2}: {t:7.1f} ms")
    print(
        f"startup to ready, {len(times)} runs: median {statistics.median(times):.1f} ms, "
        f"max {max(times):.1f} ms, min {min(times):.1f} ms"
    )


if __name__ == "__main__":
    main()

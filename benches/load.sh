#!/usr/bin/env bash
# Whole-proxy load harness: wrk against (a) nginx directly, (b) the proxy with the audit trail
# written after the response, (c) the proxy with `before_forward` durability (the default), and
# (d) `before_forward` into /dev/null: records are built, chained and acknowledged but the disk
# write costs nothing, the nearest thing to "audit off" (which the product deliberately lacks).
# Reports requests/s and the ratios measured in this one run (absolute numbers drift on shared
# machines). Needs: wrk, nginx (Debian packages), python3 with joserfc.
#   benches/load.sh [DURATION_SECONDS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10}
CONN=${2:-32}
for tool in wrk nginx python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install wrk nginx)"; exit 2; }
done
cargo build --release --quiet
BIN=target/release/fapi-guard
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; nginx -c "$WORK/nginx.conf" -s stop 2>/dev/null; rm -rf "$WORK"' EXIT

python3 benches/load/mint.py "$WORK"
cat > "$WORK/nginx.conf" <<NGINX
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  server {
    listen 127.0.0.1:18080;
    location / { default_type application/json; return 200 '{"Data":{}}'; }
  }
}
NGINX
nginx -c "$WORK/nginx.conf"
cat > "$WORK/policy.yaml" <<POLICY
api: bench
defaults: {binding: unbound_allowed, scopes: [accounts]}
routes:
  - {name: accounts, method: GET, path: /accounts}
POLICY

run_proxy() { # $1 = durability, $2 = port, $3 = audit path (default audit-$1.jsonl)
  cat > "$WORK/config-$2.yaml" <<CFG
listen: {address: 127.0.0.1:$2, public_url: https://api.bench}
upstream: {url: http://127.0.0.1:18080}
issuers: [{issuer: https://as.bench, jwks_file: jwks.json, audiences: [https://api.bench]}]
audit: {sink: file, path: ${3:-audit-$1.jsonl}, durability: $1}
policies: [policy.yaml]
CFG
  FAPI_GUARD_LOG=error "$BIN" run --config "$WORK/config-$2.yaml" >/dev/null 2>&1 &
  sleep 1
}

TOKEN=$(cat "$WORK/token")
measure() { # $1 = url
  wrk -t2 -c"$CONN" -d"${DUR}s" -H "Authorization: Bearer $TOKEN" "$1" | awk '/Requests\/sec/ {print $2}'
}
run_proxy after_response 18443
run_proxy before_forward 18444
run_proxy before_forward 18445 /dev/null
curl -fsS -H "Authorization: Bearer $TOKEN" http://127.0.0.1:18444/accounts >/dev/null

direct=$(measure http://127.0.0.1:18080/accounts)
after=$(measure http://127.0.0.1:18443/accounts)
before=$(measure http://127.0.0.1:18444/accounts)
devnull=$(measure http://127.0.0.1:18445/accounts)
"$BIN" audit verify "$WORK/audit-before_forward.jsonl" | head -1
echo "wrk -c$CONN -d${DUR}s, one run"
printf '%-34s %10s req/s\n' "nginx direct" "$direct" "proxy, audit after_response" "$after" \
  "proxy, audit before_forward" "$before" "proxy, before_forward to /dev/null" "$devnull"
python3 - "$direct" "$after" "$before" "$devnull" <<PY
import sys
d, a, b, n = map(float, sys.argv[1:])
print(f"before_forward / before_forward to /dev/null = {b / n:.3f}  (cost of the audit file write: {100 * (1 - b / n):.1f}%)")
print(f"before_forward / after_response = {b / a:.3f}  (cost of the write-before-forward guarantee: {100 * (1 - b / a):.1f}%)")
print(f"proxy (before_forward) / nginx direct = {b / d:.3f}")
PY

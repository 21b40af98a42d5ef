#!/usr/bin/env bash
# The load harness: fapi-guard in each of its modes side by side with nginx as a plain keep-alive
# reverse proxy, in one run on this machine (docs/performance.md).
#
#   benches/load/run.sh [--quick] [--duration S] [--rounds N] [--connections N] [--threads N]
#
# Builds the release binary and the `load_mint` example, installs wrk, nginx and h2load (Debian
# packages) when missing and matplotlib in .ci/venv, starts an upstream (nginx answering a small
# JSON 200), nginx as the baseline proxy and one fapi-guard process per mode, then drives each
# with wrk at fixed concurrency in alternating rounds, HTTP/2 with h2load, and a concurrency
# sweep. Prints one table and writes results.md, results.json and latency.png to
# benches/load/results/ (--quick: benches/load/results/quick/, not committed).
#
# Environment: LOAD_PORT_BASE (default 18600; uses BASE..BASE+25), LOAD_KEEP_WORK=1 keeps the
# work directory (configs, audit files, logs) for inspection.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

quick=false
duration=10
rounds=2
connections=32
threads=1
sweep_duration=5
h2_duration=10
warmup=2
usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=true; duration=3; sweep_duration=1; h2_duration=3; warmup=1 ;;
    --duration) duration=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    --connections) connections=$2; shift ;;
    --threads) threads=$2; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
for v in "$duration" "$rounds" "$connections" "$threads"; do
  [[ "$v" =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: not a positive integer: $v" >&2; exit 2; }
done
out_dir="$root/benches/load/results"
$quick && out_dir="$out_dir/quick"
base=${LOAD_PORT_BASE:-18600}

# ------------------------------------------------------------------ tools
apt_updated=
apt_install() {
  if [ -z "$apt_updated" ]; then apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || missing+=(nginx)
command -v h2load >/dev/null || missing+=(nghttp2-client)
command -v curl >/dev/null || missing+=(curl)
command -v python3 >/dev/null || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
  echo "[load] installing ${missing[*]}"
  apt_install "${missing[@]}"
fi
# matplotlib for the plot, in the project's venv (as .ci/run makes it: Debian's Python refuses
# system-wide pip installs).
if [ ! -x .ci/venv/bin/python ]; then
  if ! python3 -m venv .ci/venv; then
    apt_install python3-venv
    rm -rf .ci/venv
    python3 -m venv .ci/venv
  fi
fi
if ! .ci/venv/bin/python -c 'import matplotlib' 2>/dev/null; then
  .ci/venv/bin/python -m pip install --quiet --disable-pip-version-check 'matplotlib>=3.6'
fi

echo "[load] cargo build --release (binary and the load_mint example)"
cargo build --release --quiet --bin fapi-guard --example load_mint
bin="$root/target/release/fapi-guard"
mint="$root/target/release/examples/load_mint"

# ------------------------------------------------------------------ processes
work=$(mktemp -d /tmp/fapi-guard-load.XXXXXX)
pids=()
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "${LOAD_KEEP_WORK:-}" = 1 ]; then
    echo "[load] work directory kept: $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for port in $(seq "$base" $((base + 25))); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "run.sh: port $port is in use; set LOAD_PORT_BASE" >&2
    exit 2
  fi
done
up_port=$base
nginx_port=$((base + 1))
nginx_h2c_port=$((base + 2))
nginx_h2tls_port=$((base + 3))

issuer=https://as.bench.example
audience=https://api.bench.example
"$mint" setup "$work" "$issuer" "$audience"

# The upstream: a small JSON answer, and the consent record the full-policy mode fetches (once,
# then from fapi-guard's cache).
consent='{"id":"c-load","status":"Authorised","client_id":"tpp-1","subject":"psu-9","expires_at":"2099-12-31T00:00:00Z","permissions":["ReadAccountsDetail"],"accounts":["acc-1"],"purpose":"account-information"}'
cat >"$work/upstream.conf" <<EOF
worker_processes 1;
daemon off;
pid $work/upstream.pid;
error_log $work/upstream-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  server {
    listen 127.0.0.1:$up_port backlog=4096;
    default_type application/json;
    location / { return 200 '{"Data":{"Account":[{"AccountId":"acc-1","Currency":"GBP"}]}}'; }
    location = /consents/c-load { return 200 '$consent'; }
  }
}
EOF
# The baseline: nginx as a plain keep-alive reverse proxy (one worker per CPU, keep-alive to
# the upstream), over HTTP/1.1, h2c (prior knowledge) and h2 over TLS.
cat >"$work/nginx.conf" <<EOF
worker_processes auto;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  upstream api {
    server 127.0.0.1:$up_port;
    keepalive 128;
    keepalive_requests 10000000;
  }
  server {
    listen 127.0.0.1:$nginx_port backlog=4096;
    listen 127.0.0.1:$nginx_h2c_port http2;
    listen 127.0.0.1:$nginx_h2tls_port ssl http2;
    ssl_certificate $work/tls.crt;
    ssl_certificate_key $work/tls.key;
    location / {
      proxy_pass http://api;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
nginx -p "$work" -e "$work/upstream-error.log" -c "$work/upstream.conf" &
pids+=($!)
nginx -p "$work" -e "$work/nginx-error.log" -c "$work/nginx.conf" &
pids+=($!)
nginx_pid=$!

# DPoP proofs are minted just before each measurement, so the window only has to cover one
# (minting plus the run), as it would for a real client.
proof_max_age=$((2 * duration + 60))
[ "$proof_max_age" -gt 600 ] && proof_max_age=600

cat >"$work/policy-bearer.yaml" <<'EOF'
api: load
defaults: {binding: unbound_allowed, scopes: [accounts]}
routes:
  - {name: accounts, method: GET, path: /accounts}
EOF
sed 's/unbound_allowed/mtls/' "$work/policy-bearer.yaml" >"$work/policy-mtls.yaml"
sed 's/unbound_allowed/dpop/' "$work/policy-bearer.yaml" >"$work/policy-dpop.yaml"
cat >"$work/policy-full.yaml" <<'EOF'
api: load
defaults: {binding: mtls, scopes: [accounts]}
routes:
  - name: get-account
    method: GET
    path: /accounts/{account_id}
    consent:
      claim: openbanking_intent_id
      status: [Authorised]
      permissions: [ReadAccountsDetail]
      resource: {accounts: "{account_id}"}
    delegation:
      max_depth: 2
      actors: ["spiffe://bank.example/ns/aggregators/*"]
      chain: ["spiffe://bank.example/*"]
    purpose: [account-information]
EOF

# start_guard NAME PORT POLICY DURABILITY [TLS]: one fapi-guard process with its own config,
# audit file and admin port (PORT + 10, polled for /readyz).
start_guard() {
  local name=$1 port=$2 policy=$3 durability=$4 tls=${5:-}
  {
    echo "listen:"
    echo "  address: 127.0.0.1:$port"
    echo "  public_url: $audience"
    echo "  drain_delay: 0s"
    if [ -n "$tls" ]; then
      echo "  tls: {cert_file: tls.crt, key_file: tls.key}"
    fi
    echo "  forwarded_client_cert: {header: x-forwarded-client-cert, format: xfcc, trusted_peers: [127.0.0.1/32]}"
    echo "upstream: {url: 'http://127.0.0.1:$up_port'}"
    echo "admin: {address: '127.0.0.1:$((port + 10))'}"
    echo "issuers:"
    echo "  - {issuer: '$issuer', jwks_file: jwks.json, algorithms: [ES256], audiences: ['$audience'], max_token_lifetime: 1h}"
    echo "dpop: {proof_max_age: ${proof_max_age}s, algorithms: [ES256], replay_cache_max_entries: 5000000}"
    echo "consent: {url: 'http://127.0.0.1:$up_port/consents/{id}', cache_ttl: 1h}"
    # The audit trail in its own directory, as in a pod (a volume), not beside the policies.
    echo "audit: {sink: file, path: audit/audit-$name.jsonl, durability: $durability}"
    echo "policies: [$policy]"
  } >"$work/config-$name.yaml"
  FAPI_GUARD_LOG=warn "$bin" run --config "$work/config-$name.yaml" >"$work/$name.log" 2>&1 &
  pids+=($!)
  guard_pids[$name]=$!
  guard_ports[$name]=$port
}
declare -A guard_pids guard_ports
start_guard bearer $((base + 4)) policy-bearer.yaml before_forward
start_guard mtls $((base + 5)) policy-mtls.yaml before_forward
start_guard dpop $((base + 6)) policy-dpop.yaml before_forward
start_guard full-before $((base + 7)) policy-full.yaml before_forward
start_guard full-after $((base + 8)) policy-full.yaml after_response
start_guard bearer-tls $((base + 9)) policy-bearer.yaml before_forward tls

wait_ok() { # URL NAME
  local _
  for _ in $(seq 1 100); do
    if curl -ksf -o /dev/null "$1"; then return 0; fi
    sleep 0.1
  done
  echo "run.sh: $2 did not become ready ($1)" >&2
  for f in "$work"/*.log; do echo "--- $f" >&2; tail -5 "$f" >&2; done
  exit 1
}
wait_ok "http://127.0.0.1:$up_port/" upstream
wait_ok "http://127.0.0.1:$nginx_port/" nginx
for name in "${!guard_pids[@]}"; do
  wait_ok "http://127.0.0.1:$((guard_ports[$name] + 10))/readyz" "fapi-guard $name"
done

# One request per mode, by hand: each must answer 200 before anything is measured. A deny
# prints its JSON body (the reason, never the token).
check() { # NAME URL curl-args...
  local name=$1 url=$2 status
  shift 2
  status=$(curl -ks -o "$work/check.body" -w '%{http_code}' "$@" "$url")
  if [ "$status" != 200 ]; then
    echo "run.sh: $name answered $status: $(head -c 300 "$work/check.body")" >&2
    exit 1
  fi
}
xfcc=$(cat "$work/xfcc")
check nginx "http://127.0.0.1:$nginx_port/accounts"
check bearer "http://127.0.0.1:$((base + 4))/accounts" -H "Authorization: Bearer $(cat "$work/token-bearer")"
check mtls "http://127.0.0.1:$((base + 5))/accounts" -H "Authorization: Bearer $(cat "$work/token-mtls")" \
  -H "x-forwarded-client-cert: $xfcc"
"$mint" proofs "$work" 1 1 GET "$audience/accounts" >/dev/null
check dpop "http://127.0.0.1:$((base + 6))/accounts" -H "Authorization: DPoP $(cat "$work/token-dpop")" \
  -H "DPoP: $(cat "$work/proofs-0.txt")"
for name in full-before full-after; do
  check "$name" "http://127.0.0.1:${guard_ports[$name]}/accounts/acc-1" \
    -H "Authorization: Bearer $(cat "$work/token-full")" -H "x-forwarded-client-cert: $xfcc"
done
check bearer-tls "https://127.0.0.1:$((base + 9))/accounts" -H "Authorization: Bearer $(cat "$work/token-bearer")"

# ------------------------------------------------------------------ measure
sweep='[1, 4, 16, 32, 64]'
cat >"$work/plan.json" <<EOF
{
  "work": "$work", "mint": "$mint", "wrk_script": "$root/benches/load/wrk.lua", "quick": $quick,
  "duration": $duration, "rounds": $rounds, "threads": $threads, "connections": $connections,
  "warmup": $warmup, "sweep": $sweep, "sweep_duration": $sweep_duration, "dpop_rate_cap": 30000,
  "h2": {"duration": $h2_duration, "clients": 4, "streams": 32},
  "modes": [
    {"key": "nginx", "label": "nginx plain keep-alive proxy", "pid": $nginx_pid,
     "url": "http://127.0.0.1:$nginx_port/accounts"},
    {"key": "bearer", "label": "fapi-guard, bearer token", "pid": ${guard_pids[bearer]},
     "url": "http://127.0.0.1:$((base + 4))/accounts",
     "headers": [{"name": "Authorization", "prefix": "Bearer ", "file": "token-bearer"}]},
    {"key": "mtls", "label": "fapi-guard, certificate-bound (forwarded cert)", "pid": ${guard_pids[mtls]},
     "url": "http://127.0.0.1:$((base + 5))/accounts",
     "headers": [{"name": "Authorization", "prefix": "Bearer ", "file": "token-mtls"},
                 {"name": "x-forwarded-client-cert", "file": "xfcc"}]},
    {"key": "dpop", "label": "fapi-guard, DPoP ES256, fresh proof per request", "pid": ${guard_pids[dpop]},
     "url": "http://127.0.0.1:$((base + 6))/accounts",
     "headers": [{"name": "Authorization", "prefix": "DPoP ", "file": "token-dpop"}],
     "dpop": {"method": "GET", "htu": "$audience/accounts"}},
    {"key": "full-before", "label": "fapi-guard, full policy, audit before_forward", "pid": ${guard_pids[full-before]},
     "url": "http://127.0.0.1:$((base + 7))/accounts/acc-1",
     "headers": [{"name": "Authorization", "prefix": "Bearer ", "file": "token-full"},
                 {"name": "x-forwarded-client-cert", "file": "xfcc"}]},
    {"key": "full-after", "label": "fapi-guard, full policy, audit after_response", "pid": ${guard_pids[full-after]},
     "url": "http://127.0.0.1:$((base + 8))/accounts/acc-1",
     "headers": [{"name": "Authorization", "prefix": "Bearer ", "file": "token-full"},
                 {"name": "x-forwarded-client-cert", "file": "xfcc"}]}
  ],
  "h2_targets": [
    {"key": "nginx-h2c", "label": "nginx, h2c", "pid": $nginx_pid,
     "url": "http://127.0.0.1:$nginx_h2c_port/accounts"},
    {"key": "bearer-h2c", "label": "fapi-guard bearer, h2c", "pid": ${guard_pids[bearer]}, "baseline": "nginx-h2c",
     "url": "http://127.0.0.1:$((base + 4))/accounts",
     "headers": [{"name": "Authorization", "prefix": "Bearer ", "file": "token-bearer"}]},
    {"key": "nginx-h2tls", "label": "nginx, h2 over TLS", "pid": $nginx_pid,
     "url": "https://127.0.0.1:$nginx_h2tls_port/accounts"},
    {"key": "bearer-h2tls", "label": "fapi-guard bearer, h2 over TLS", "pid": ${guard_pids[bearer-tls]},
     "baseline": "nginx-h2tls", "url": "https://127.0.0.1:$((base + 9))/accounts",
     "headers": [{"name": "Authorization", "prefix": "Bearer ", "file": "token-bearer"}]}
  ]
}
EOF
echo "[load] measuring (wrk -t$threads -c$connections -d${duration}s x $rounds rounds, h2load, sweep $sweep)"
python3 benches/load/drive.py measure "$work/plan.json" "$work/results.json"

# ------------------------------------------------------------------ audit trails
# Stop the proxies (SIGTERM: drain, flush the audit sink, exit 0), then verify each chain.
for name in "${!guard_pids[@]}"; do kill -TERM "${guard_pids[$name]}"; done
audit_ok=true
: >"$work/audit-verify.txt"
for name in bearer mtls dpop full-before full-after bearer-tls; do
  status=0
  wait "${guard_pids[$name]}" || status=$?
  [ "$status" = 0 ] || { echo "$name: fapi-guard exited $status" >>"$work/audit-verify.txt"; audit_ok=false; }
  # The whole rotated set, oldest first (rotated files are numbered in rotation order).
  files=()
  for f in "$work/audit/audit-$name.jsonl".*; do [ -e "$f" ] && files+=("$f"); done
  files+=("$work/audit/audit-$name.jsonl")
  if out=$("$bin" audit verify "${files[@]}" 2>&1); then
    echo "$name: ${out%%$'\n'*}" >>"$work/audit-verify.txt"
  else
    echo "$name: FAILED: ${out%%$'\n'*}" >>"$work/audit-verify.txt"
    audit_ok=false
  fi
done

# ------------------------------------------------------------------ report
report_status=0
python3 benches/load/drive.py report "$work/plan.json" "$work/results.json" "$out_dir" \
  "$work/audit-verify.txt" || report_status=$?
.ci/venv/bin/python benches/load/plot.py "$out_dir/results.json" "$work/plan.json" "$out_dir/latency.png"
echo "[load] wrote $out_dir/results.md, results.json, latency.png"
# A full run is the one the documentation shows: its tables go into the README and
# docs/performance.md (between the load-results markers). A quick run changes neither.
if ! $quick; then
  python3 benches/load/drive.py publish "$out_dir/results.md" README.md docs/performance.md
  echo "[load] README.md and docs/performance.md show these results"
fi
$audit_ok || { echo "[load] an audit trail failed verification" >&2; exit 1; }
exit "$report_status"

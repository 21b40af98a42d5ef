"""A Shared Signals transmitter written with joserfc (independent of the proxy's JOSE code).

Reads a JSON list of cases on stdin: {"header": {...}, "claims": {...} | "payload_raw": "...",
"key": "good" | "other"}; prints {"jwks": <public JWKS of the good key>, "sets": [compact JWS...]}.
"""
import json
import sys

from joserfc import jwk, jws, jwt

good = jwk.RSAKey.generate_key(2048, parameters={"kid": "ssf-1"})
# Another key with the same kid: a signature the receiver must reject.
other = jwk.RSAKey.generate_key(2048, parameters={"kid": "ssf-1"})

out = []
for case in json.load(sys.stdin):
    key = good if case.get("key", "good") == "good" else other
    header = case["header"]
    if "payload_raw" in case:
        out.append(jws.serialize_compact(header, case["payload_raw"].encode(), key))
    else:
        out.append(jwt.encode(header, case["claims"], key))

print(json.dumps({"jwks": {"keys": [good.as_dict(private=False)]}, "sets": out}))

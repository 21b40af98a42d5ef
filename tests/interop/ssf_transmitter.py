"""A Shared Signals transmitter written with joserfc (independent of the proxy's JOSE code).

Reads a JSON list of cases on stdin: {"header": {...}, "claims": {...} | "payload_raw": "...",
"key": "good" | "other" | "ec"}; prints {"jwks": <public JWKS of the good and ec keys>,
"sets": [compact JWS...]}. The RSA key ("good", kid ssf-1) signs RS256 or PS256 as the header
says; "ec" (kid ssf-ec) is a P-256 key for ES256; "other" shares the RSA kid but is another key.
"""
import json
import sys

from joserfc import jwk, jws, jwt

good = jwk.RSAKey.generate_key(2048, parameters={"kid": "ssf-1"})
# Another key with the same kid: a signature the receiver must reject.
other = jwk.RSAKey.generate_key(2048, parameters={"kid": "ssf-1"})
ec = jwk.ECKey.generate_key("P-256", parameters={"kid": "ssf-ec"})
keys = {"good": good, "other": other, "ec": ec}

out = []
for case in json.load(sys.stdin):
    key = keys[case.get("key", "good")]
    header = case["header"]
    algs = [header["alg"]]
    if "payload_raw" in case:
        out.append(jws.serialize_compact(header, case["payload_raw"].encode(), key, algorithms=algs))
    else:
        out.append(jwt.encode(header, case["claims"], key, algorithms=algs))

jwks = {"keys": [good.as_dict(private=False), ec.as_dict(private=False)]}
print(json.dumps({"jwks": jwks, "sets": out}))

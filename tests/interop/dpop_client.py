"""DPoP client built on joserfc + requests: proves fapi-guard's wire format against another
implementation (RFC 9449). Used by tests/interop_python.rs.

  dpop_client.py keygen                   -> {"jwk": <private JWK>, "jkt": <RFC 7638 thumbprint>}
  dpop_client.py call URL HTU TOKEN JWK   -> {"status": N, "body": ..., "www": ...}
"""
import base64
import hashlib
import json
import sys
import time
import uuid

import requests
from joserfc import jwt
from joserfc.jwk import ECKey


def keygen():
    key = ECKey.generate_key("P-256")
    print(json.dumps({"jwk": key.as_dict(private=True), "jkt": key.thumbprint()}))


def call(url, htu, token, jwk_json):
    key = ECKey.import_key(json.loads(jwk_json))
    ath = base64.urlsafe_b64encode(hashlib.sha256(token.encode()).digest()).rstrip(b"=").decode()
    public = key.as_dict(private=False)
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": public}
    claims = {"jti": str(uuid.uuid4()), "htm": "GET", "htu": htu, "iat": int(time.time()), "ath": ath}
    proof = jwt.encode(header, claims, key)
    r = requests.get(url, headers={"Authorization": f"DPoP {token}", "DPoP": proof}, timeout=10)
    try:
        body = r.json()
    except ValueError:
        body = r.text
    print(json.dumps({"status": r.status_code, "body": body, "www": r.headers.get("WWW-Authenticate")}))


if __name__ == "__main__":
    if sys.argv[1] == "keygen":
        keygen()
    else:
        call(*sys.argv[2:6])

"""Mints an ES256 access token and its JWKS for the load harness (joserfc)."""
import json
import sys
import time

from joserfc import jwt
from joserfc.jwk import ECKey

out = sys.argv[1]
key = ECKey.generate_key("P-256", parameters={"kid": "bench"})
now = int(time.time())
claims = {"iss": "https://as.bench", "sub": "psu-9", "aud": "https://api.bench", "client_id": "tpp-1",
          "scope": "accounts", "iat": now, "exp": now + 590, "jti": "bench-1"}
token = jwt.encode({"alg": "ES256", "typ": "at+jwt", "kid": "bench"}, claims, key)
with open(f"{out}/jwks.json", "w") as f:
    json.dump({"keys": [key.as_dict(private=False)]}, f)
with open(f"{out}/token", "w") as f:
    f.write(token)

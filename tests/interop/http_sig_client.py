"""RFC 9421 client built on the Python `http-message-signatures` package (an implementation
independent of fapi-guard's): signs requests as a FAPI 2.0 client would, sends them through the
proxy, and verifies the proxy's response signature. Used by tests/signatures.rs.

  http_sig_client.py keygen ec|ed25519|rsa   -> {"private_pem": ..., "jwk": <public JWK>}
  http_sig_client.py call SPEC_JSON           -> {"status", "body", "headers", "response_verified", ...}

SPEC: url (where to send), target_uri (the public URL signed as @target-uri), method, headers,
body, key_pem, alg, keyid, created_offset, components, tag, digest (let the library add and cover
Content-Digest), send_method / send_url / send_body / send_headers (tampering after signing),
response_jwk (verify the response signature with this key).
"""
import base64
import datetime
import json
import sys
import time
from types import SimpleNamespace

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from http_message_signatures import (
    HTTPMessageSigner,
    HTTPMessageVerifier,
    MappingKeyResolver,
    algorithms,
)


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def b64u_int(n, length=None):
    length = length or (n.bit_length() + 7) // 8
    return b64u(n.to_bytes(length, "big"))


def keygen(kind):
    if kind == "ec":
        key = ec.generate_private_key(ec.SECP256R1())
        nums = key.public_key().public_numbers()
        jwk = {"kty": "EC", "crv": "P-256", "x": b64u_int(nums.x, 32), "y": b64u_int(nums.y, 32)}
    elif kind == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64u(raw)}
    elif kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        nums = key.public_key().public_numbers()
        jwk = {"kty": "RSA", "n": b64u_int(nums.n), "e": b64u_int(nums.e)}
    else:
        raise SystemExit(f"unknown key kind {kind}")
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    print(json.dumps({"private_pem": pem, "jwk": jwk}))


class UnknownAlgorithm(algorithms.ECDSA_P256_SHA256):
    """A real ECDSA signature announced under an algorithm name nobody registered."""

    algorithm_id = "ecdsa-p256-sha3-512"


ALGORITHMS = {
    "ecdsa-p256-sha256": algorithms.ECDSA_P256_SHA256,
    "ed25519": algorithms.ED25519,
    "rsa-pss-sha512": algorithms.RSA_PSS_SHA512,
    "hmac-sha256": algorithms.HMAC_SHA256,
    "ecdsa-p256-sha3-512": UnknownAlgorithm,
}


def jwk_to_public(jwk):
    def n(s):
        return int.from_bytes(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)), "big")

    return ec.EllipticCurvePublicNumbers(n(jwk["x"]), n(jwk["y"]), ec.SECP256R1()).public_key()


def call(spec):
    alg = ALGORITHMS[spec["alg"]]
    if spec["alg"] == "hmac-sha256":
        private = spec["key_pem"].encode()  # used as the shared secret
    else:
        private = serialization.load_pem_private_key(spec["key_pem"].encode(), password=None)
    body = spec.get("body", "").encode()
    headers = {k.lower(): v for k, v in spec.get("headers", {}).items()}
    message = SimpleNamespace(method=spec["method"], url=spec["target_uri"], headers=headers)
    signer = HTTPMessageSigner(
        signature_algorithm=alg,
        key_resolver=MappingKeyResolver(public_keys={}, private_keys={spec["keyid"]: private}),
    )
    created = datetime.datetime.fromtimestamp(time.time() + spec.get("created_offset", 0), tz=datetime.timezone.utc)
    signer.sign(
        message,
        key_id=spec["keyid"],
        created=created,
        label="sig1",
        tag=spec.get("tag", "fapi-2-request"),
        include_alg=spec.get("include_alg", True),
        covered_component_ids=spec["components"],
        body=body if spec.get("digest", True) else None,
    )
    sent_headers = dict(message.headers)
    sent_headers.update(spec.get("send_headers", {}))
    send_body = spec["send_body"].encode() if "send_body" in spec else body
    r = requests.request(
        spec.get("send_method", spec["method"]),
        spec.get("send_url", spec["url"]),
        headers=sent_headers,
        data=send_body if send_body else None,
        timeout=10,
    )
    out = {
        "status": r.status_code,
        "headers": {k.lower(): v for k, v in r.headers.items()},
        "sent_headers": sent_headers,
        "response_verified": None,
    }
    try:
        out["body"] = r.json()
    except ValueError:
        out["body"] = r.text
    if "response_jwk" in spec:
        response = SimpleNamespace(
            status_code=r.status_code,
            headers=dict(r.headers),
            request=SimpleNamespace(method=spec["method"], url=spec["target_uri"], headers={}),
        )
        jwk = spec["response_jwk"]
        verifier = HTTPMessageVerifier(
            signature_algorithm=algorithms.ECDSA_P256_SHA256,
            key_resolver=MappingKeyResolver(public_keys={jwk["kid"]: jwk_to_public(jwk)}, private_keys={}),
        )
        try:
            results = verifier.verify(
                response,
                expect_tag="fapi-2-response",
                require_components=("@status", "content-digest", '"@method";req', '"@target-uri";req'),
                body=r.content,
                max_age=datetime.timedelta(seconds=60),
            )
            out["response_verified"] = True
            out["response_components"] = list(results[0].covered_components.keys())
        except Exception as e:  # noqa: BLE001 - the test reads the reason
            out["response_verified"] = False
            out["response_error"] = str(e)
    print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1] == "keygen":
        keygen(sys.argv[2])
    else:
        call(json.loads(sys.argv[2]))

#!/usr/bin/env python3
"""webhook_verify.py — an independent Standard Webhooks verifier (stdlib only).

Checks the `webhook-signature` header orderd's src/webhook.c writes, written
from the rules alone (hmac, hashlib, base64), to be imported by a test
receiver:

    from webhook_verify import verify
    ok = verify(["whsec_..."], headers["webhook-id"],
                headers["webhook-timestamp"], body, headers["webhook-signature"])

The signed content is `ID.TIMESTAMP.BODY`; a signature is `v1,` and the
base64 of its HMAC-SHA256 keyed with the base64-decoded part of a `whsec_`
secret; the header holds one or more signatures separated by spaces. A
request is genuine when ANY `v1` signature matches ANY secret (a rotation).
The timestamp's age is not judged here: a receiver that wants a tolerance
compares it with its clock itself.

Importing has no side effects; `python3 webhook_verify.py` checks the
specification's test vector and exits 0, or 1 with a line saying what failed.
"""

import base64
import binascii
import hashlib
import hmac
import sys

PREFIX = "whsec_"


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret; ValueError when malformed."""
    if not secret.startswith(PREFIX):
        raise ValueError("a secret must start with " + PREFIX)
    try:
        key = base64.b64decode(secret[len(PREFIX):], validate=True)
    except binascii.Error as e:
        raise ValueError("the key after " + PREFIX + " is not base64") from e
    if not key:
        raise ValueError("empty key")
    return key


def sign(secret: str, msg_id: str, timestamp, body: bytes) -> str:
    """The `v1,<base64>` signature of one message with one secret."""
    content = b".".join([msg_id.encode(), str(int(timestamp)).encode(), body])
    mac = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def verify(secrets: list[str], msg_id: str, timestamp, body: bytes,
           signature_header: str) -> bool:
    """True when any `v1,` signature in signature_header matches any secret.

    timestamp is the webhook-timestamp header (str) or an int. Signatures of
    other versions are ignored. Every pair is compared, in constant time.
    """
    expected = [sign(s, msg_id, timestamp, body).encode("ascii") for s in secrets]
    found = False
    for given in signature_header.split():
        if not given.startswith("v1,"):
            continue
        given_bytes = given.encode("ascii", errors="replace")
        for want in expected:
            found |= hmac.compare_digest(given_bytes, want)
    return found


# ---- self-test ----------------------------------------------------------------

_SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
_SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
_SPEC_TS = "1614265330"
_SPEC_BODY = b'{"test": 2432232314}'
_SPEC_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
_OTHER_SECRET = "whsec_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="


def _self_test() -> list[str]:
    """The failed checks, by name; empty when all pass."""
    spec = (_SPEC_ID, _SPEC_TS, _SPEC_BODY)
    other_sig = sign(_OTHER_SECRET, *spec)
    checks = {
        "spec vector signs": sign(_SPEC_SECRET, *spec) == _SPEC_SIG,
        "spec vector verifies": verify([_SPEC_SECRET], *spec, _SPEC_SIG),
        "int timestamp": verify([_SPEC_SECRET], _SPEC_ID, int(_SPEC_TS), _SPEC_BODY, _SPEC_SIG),
        "rotation, match second": verify([_SPEC_SECRET], *spec, other_sig + " " + _SPEC_SIG),
        "rotation, second secret": verify([_OTHER_SECRET, _SPEC_SECRET], *spec, _SPEC_SIG),
        "other versions ignored": verify([_SPEC_SECRET], *spec, "v1a,xyz " + _SPEC_SIG),
        "wrong secret refused": not verify([_OTHER_SECRET], *spec, _SPEC_SIG),
        "changed body refused": not verify([_SPEC_SECRET], _SPEC_ID, _SPEC_TS,
                                           _SPEC_BODY + b" ", _SPEC_SIG),
        "changed id refused": not verify([_SPEC_SECRET], _SPEC_ID + "x", _SPEC_TS,
                                         _SPEC_BODY, _SPEC_SIG),
        "changed timestamp refused": not verify([_SPEC_SECRET], _SPEC_ID, "1614265331",
                                                _SPEC_BODY, _SPEC_SIG),
        "no v1 prefix refused": not verify([_SPEC_SECRET], *spec, _SPEC_SIG[3:]),
        "empty header refused": not verify([_SPEC_SECRET], *spec, ""),
        "non-ASCII header refused": not verify([_SPEC_SECRET], *spec, "v1,\u00e9"),
    }
    return [name for name, ok in checks.items() if not ok]


def main() -> int:
    failed = _self_test()
    for name in failed:
        print("webhook_verify: FAIL " + name, file=sys.stderr)
    if failed:
        return 1
    print("webhook_verify: spec vector and self-test pass")
    return 0


if __name__ == "__main__":
    sys.exit(main())

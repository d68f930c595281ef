from __future__ import annotations

import pytest

from mesh_common.signing import SignatureError, sign, verify

BODY = b'{"contract_id":"C-1","decision":"renew"}'


def test_good_signature_verifies() -> None:
    verify("s3cret", BODY, sign("s3cret", BODY, timestamp=1_000), now=1_010)


@pytest.mark.parametrize(
    ("header", "now", "message"),
    [
        (None, 1_000, "missing"),
        ("garbage", 1_000, "malformed"),
        (sign("other", BODY, timestamp=1_000), 1_000, "does not match"),
        (sign("s3cret", BODY, timestamp=1_000), 1_000 + 301, "outside the allowed window"),
    ],
)
def test_bad_signatures_are_refused_with_the_reason(header: str | None, now: int, message: str) -> None:
    with pytest.raises(SignatureError, match=message):
        verify("s3cret", BODY, header, now=now)


def test_tampered_body_is_refused() -> None:
    header = sign("s3cret", BODY, timestamp=1_000)
    with pytest.raises(SignatureError, match="does not match"):
        verify("s3cret", BODY.replace(b"renew", b"terminate"), header, now=1_000)

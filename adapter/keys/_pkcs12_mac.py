"""PKCS#12 integrity check (RFC 7292 §5, Appendix B): the MAC keyed by the store password.

``cryptography`` checks the MAC only together with decrypting every bag with the same
password. A keystore whose key has its own password (Java's ``KeyStore.setKeyEntry`` with a
key password, Keycloak's "Generate new keys" with separate store and key passwords) needs the
two steps apart: this module checks the store password on its own.
"""

from __future__ import annotations

import enum
import hashlib
import hmac

from adapter.keys import _der

_HASHES = {
    "1.3.14.3.2.26": "sha1",
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
    "2.16.840.1.101.3.4.2.4": "sha224",
}
_MAC_KEY_ID = 3


class Mac(enum.Enum):
    """What the MAC of a PFX says about a password (see :func:`check_mac`)."""

    ABSENT = "absent"  # the file has no MAC: nothing proves or refuses a password
    UNSUPPORTED = "unsupported"  # a MAC this module cannot check (PBMAC1, an unknown hash)
    RIGHT = "right"
    WRONG = "wrong"


def check_mac(data: bytes, password: str) -> Mac:
    """What the MAC of the PFX ``data`` says about ``password`` as its store password.

    :attr:`Mac.ABSENT` and :attr:`Mac.UNSUPPORTED` are different answers: a file with a MAC
    this module cannot check must go to a reader that can (OpenSSL), never be read as one
    without a MAC. Raises ``ValueError``/``IndexError`` on a malformed structure.
    """
    pfx = _der.read_one(data, _der.SEQUENCE).children()
    if len(pfx) < 3:
        return Mac.ABSENT
    mac_data = pfx[2].children()
    digest_info = mac_data[0].children()
    hash_name = _HASHES.get(digest_info[0].children()[0].oid())
    if hash_name is None:
        return Mac.UNSUPPORTED
    expected = digest_info[1].content
    salt = mac_data[1].content
    iterations = int.from_bytes(mac_data[2].content, "big") if len(mac_data) > 2 else 1
    if not 1 <= iterations <= 10_000_000:
        raise ValueError("implausible MAC iteration count")
    signed = _der.read_one(pfx[1].children()[1].content, _der.OCTET_STRING).content
    size = hashlib.new(hash_name).digest_size
    # The empty password has two encodings, and writers differ (OpenSSL tries both): none at
    # all, or the NUL terminator alone (what cryptography writes for an unencrypted file).
    forms = [_bmp(password)] if password else [b"", b"\x00\x00"]
    for form in forms:
        key = pkcs12_kdf(hash_name, form, salt, _MAC_KEY_ID, iterations, size)
        if hmac.compare_digest(hmac.new(key, signed, hash_name).digest(), expected):
            return Mac.RIGHT
    return Mac.WRONG


def verify_mac(data: bytes, password: str) -> bool | None:
    """Whether ``password`` is the store password of the PFX ``data``.

    ``None`` when the file has no MAC or one this module does not know (PBMAC1): use
    :func:`check_mac` where those two must be told apart. Raises ``ValueError``/``IndexError``
    on a malformed structure.
    """
    status = check_mac(data, password)
    if status in (Mac.ABSENT, Mac.UNSUPPORTED):
        return None
    return status is Mac.RIGHT


def _bmp(password: str) -> bytes:
    """The password as a NUL-terminated BMPString, as PKCS#12 feeds it to its KDF."""
    return password.encode("utf-16-be") + b"\x00\x00" if password else b""


def pkcs12_kdf(
    hash_name: str, password: bytes, salt: bytes, purpose: int, iterations: int, size: int
) -> bytes:
    """RFC 7292 Appendix B.2 key derivation."""
    u = hashlib.new(hash_name).digest_size
    v = hashlib.new(hash_name).block_size
    diversifier = bytes([purpose]) * v

    def stretch(value: bytes) -> bytes:
        if not value:
            return b""
        length = v * -(-len(value) // v)
        return (value * (length // len(value) + 1))[:length]

    block = stretch(salt) + stretch(password)
    output = b""
    hash_function = getattr(hashlib, hash_name)  # twice as fast as hashlib.new in the loop
    while len(output) < size:
        digest = hash_function(diversifier + block).digest()
        for _ in range(iterations - 1):
            digest = hash_function(digest).digest()
        output += digest
        addend = int.from_bytes((digest * (v // u + 1))[:v], "big") + 1
        modulus = 1 << (8 * v)
        block = b"".join(
            ((int.from_bytes(block[i : i + v], "big") + addend) % modulus).to_bytes(v, "big")
            for i in range(0, len(block), v)
        )
    return output[:size]

"""A minimal DER reader: just enough ASN.1 to walk PKCS#12 bags and JKS key blobs.

``cryptography`` decrypts and parses keys and certificates but does not expose the structure
around them (the alias of each key in a PKCS#12 file with several keys, the algorithm of a JKS
key blob). This reader walks that structure; it accepts definite-length DER only, which is what
keytool, openssl and every current writer produce.
"""

from __future__ import annotations

from dataclasses import dataclass

SEQUENCE = 0x30
OCTET_STRING = 0x04
OID = 0x06
CONTEXT_0 = 0xA0


@dataclass(frozen=True)
class Tlv:
    """One DER element: its tag byte and its content octets."""

    tag: int
    content: bytes

    def children(self) -> list[Tlv]:
        """The elements inside a constructed element (SEQUENCE, SET, [n] EXPLICIT)."""
        return read_all(self.content)

    def oid(self) -> str:
        """The dotted form of an OBJECT IDENTIFIER element."""
        if self.tag != OID or not self.content:
            raise ValueError("expected an OBJECT IDENTIFIER")
        first = self.content[0]
        parts = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
        value = 0
        for byte in self.content[1:]:
            value = (value << 7) | (byte & 0x7F)
            if not byte & 0x80:
                parts.append(value)
                value = 0
        return ".".join(str(p) for p in parts)

    def encoded(self) -> bytes:
        """This element re-encoded as DER (tag, length, content)."""
        return bytes([self.tag]) + _encode_length(len(self.content)) + self.content


def _encode_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def read_all(data: bytes) -> list[Tlv]:
    """Every element of ``data``, which must consist of whole DER elements only."""
    items: list[Tlv] = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise ValueError("truncated DER element")
        tag = data[pos]
        if tag & 0x1F == 0x1F:
            raise ValueError("multi-byte DER tags are not supported")
        length = data[pos + 1]
        pos += 2
        if length & 0x80:
            count = length & 0x7F
            if count == 0 or count > 4 or pos + count > len(data):
                raise ValueError("unsupported or truncated DER length")
            length = int.from_bytes(data[pos : pos + count], "big")
            pos += count
        if pos + length > len(data):
            raise ValueError("truncated DER element")
        items.append(Tlv(tag, data[pos : pos + length]))
        pos += length
    return items


def read_one(data: bytes, tag: int | None = None) -> Tlv:
    """The single element ``data`` consists of, optionally checking its tag."""
    items = read_all(data)
    if len(items) != 1:
        raise ValueError("expected exactly one DER element")
    if tag is not None and items[0].tag != tag:
        raise ValueError(f"expected DER tag {tag:#x}, found {items[0].tag:#x}")
    return items[0]

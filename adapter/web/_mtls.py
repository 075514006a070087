"""Certificate-bound access tokens at the resource server (RFC 8705 §3): a token whose
``cnf.x5t#S256`` names a client certificate passes only on a request that came with that
certificate.

TLS ends at a terminator (nginx, an ingress), which forwards the certificate it verified in a
header (``client-certificate-header``; nginx: ``$ssl_client_escaped_cert``). Anyone could send
that header, so it counts only on a connection from one of ``client-certificate-proxies``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import ipaddress
import logging
from urllib.parse import unquote

from adapter.config import WebConfig
from adapter.web._steps import WebRequest

log = logging.getLogger(__name__)
MAX_CERTIFICATE_HEADER = 16_384  # a certificate chain's first certificate, escaped


def presented_certificate(request: WebRequest, web: WebConfig) -> str | None:
    """The thumbprint of the client certificate the request came with, as the trusted TLS
    terminator forwarded it; ``None`` when there is none (or it came from anyone else)."""
    header = web.client_certificate_header
    if header is None:
        return None
    value = request.headers.get(header.lower())
    if not value or len(value) > MAX_CERTIFICATE_HEADER or not _trusted(request.peer, web):
        return None
    if "," in value or value.count("BEGIN") > 1:  # sent twice (joined): which one counts?
        log.info("the forwarded client certificate header came more than once")
        return None
    from cryptography import x509  # with the first forwarded certificate, not at import
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        certificate = x509.load_pem_x509_certificate(unquote(value).encode("ascii"))
    except ValueError:
        log.info("the forwarded client certificate is not a PEM certificate")
        return None
    digest = hashlib.sha256(certificate.public_bytes(Encoding.DER)).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _trusted(peer: str | None, web: WebConfig) -> bool:
    if peer is None:
        return False
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # an IPv4 proxy on a dual-stack socket
    return any(address in _network(net) for net in web.client_certificate_proxies)


@functools.lru_cache(maxsize=64)
def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A configured network (checked at load), parsed once."""
    return ipaddress.ip_network(text)

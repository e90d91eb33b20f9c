"""JSON-RPC over TLS: the server's SSL context from the node's config, optionally requiring client certificates.

Clients (hospital jobs, gateways, dashboards) reach a validator across the
hospital's network, so their requests, including signed private reads, can be
encrypted like the peer links are. TLS 1.3 only. With ``client_ca_file`` the
server asks every client for a certificate signed by that CA (mutual TLS), so
only the consortium's machines can open a connection at all; JSON-RPC's own
checks (signatures, roles) still apply on top.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from core.errors import InvalidInput
from genesis.home import RpcTls


def server_ssl_context(home: Path, tls: RpcTls) -> ssl.SSLContext:
    """The context ``start_rpc_server`` serves with; a missing or unreadable file is an :class:`InvalidInput`
    naming it, raised before the node opens any socket."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    cert, key = home / tls.cert_file, home / tls.key_file
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise InvalidInput(f"rpc_tls: cannot load the certificate {cert} with key {key}: {exc}") from None
    if tls.client_ca_file is not None:
        ca = home / tls.client_ca_file
        try:
            context.load_verify_locations(ca)
        except (OSError, ssl.SSLError) as exc:
            raise InvalidInput(f"rpc_tls: cannot load the client CA {ca}: {exc}") from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context

"""JSON-RPC over TLS (issue 10, part 5): served from the config's files, optionally requiring client certificates.

A throwaway CA signs a server and a client certificate. Over TLS a client that trusts the CA gets its
answer; plain HTTP to the same port gets none; with ``client_ca_file`` a client without a certificate
(or with one from another CA) cannot connect, and one with the CA's certificate can. Bad files are refused
with an error that names them.
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from core.errors import InvalidInput
from genesis.home import NodeConfig, RpcTls
from node.app_reads import RPC_QUERIES
from node.rpc.server import create_app, start_rpc_server
from node.rpc.tls import server_ssl_context
from tests.node.conftest import FakeNode

STATUS = {"jsonrpc": "2.0", "id": 1, "method": "status", "params": {}}


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def issue(directory: Path, stem: str, *, ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None = None,
          san: str | None = None) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A key and certificate under ``directory/stem.{key,crt}``: self-signed CA without ``ca``."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    issuer_key, issuer = (key, _name(stem)) if ca is None else (ca[0], ca[1].subject)
    builder = (x509.CertificateBuilder().subject_name(_name(stem)).issuer_name(issuer).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca is None, path_length=None), critical=True))
    if san is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
    cert = builder.sign(issuer_key, hashes.SHA256())
    (directory / f"{stem}.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (directory / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    (tmp_path / "config").mkdir()
    ca = issue(tmp_path / "config", "ca")
    issue(tmp_path / "config", "server", ca=ca, san="localhost")
    issue(tmp_path / "config", "client", ca=ca)
    issue(tmp_path / "config", "stranger", ca=issue(tmp_path / "config", "stranger-ca"))
    return tmp_path


def client_context(home: Path, cert: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=home / "config" / "ca.crt")
    if cert is not None:
        context.load_cert_chain(home / "config" / f"{cert}.crt", home / "config" / f"{cert}.key")
    return context


async def status_over(url: str, context: ssl.SSLContext | None) -> int:
    async with aiohttp.ClientSession() as session, session.post(url + "rpc", json=STATUS, ssl=context) as response:
        body = await response.json()
    return body["result"]["height"]


def serve_and(home: Path, tls: RpcTls, check: Callable[[int], Awaitable[None]]) -> None:
    async def main() -> None:
        server = await start_rpc_server(create_app(FakeNode(), RPC_QUERIES), "127.0.0.1", 0,
                                        ssl_context=server_ssl_context(home, tls))
        try:
            await check(server.addresses[0][1])
        finally:
            await server.cleanup()
    asyncio.run(main())


def test_json_rpc_is_served_over_tls_and_not_in_clear(pki: Path) -> None:
    async def check(port: int) -> None:
        assert await status_over(f"https://localhost:{port}/", client_context(pki, None)) >= 0
        with pytest.raises(aiohttp.ClientError):
            await status_over(f"http://localhost:{port}/", None)  # plain HTTP gets no answer

    serve_and(pki, RpcTls(cert_file="config/server.crt", key_file="config/server.key"), check)


def test_client_certificates_are_required_when_a_client_ca_is_configured(pki: Path) -> None:
    async def check(port: int) -> None:
        url = f"https://localhost:{port}/"
        assert await status_over(url, client_context(pki, "client")) >= 0
        for cert in (None, "stranger"):  # no certificate, or one the consortium's CA did not sign
            with pytest.raises(aiohttp.ClientError):
                await status_over(url, client_context(pki, cert))

    serve_and(pki, RpcTls(cert_file="config/server.crt", key_file="config/server.key",
                          client_ca_file="config/ca.crt"), check)


def test_bad_tls_files_are_refused_by_name(pki: Path) -> None:
    with pytest.raises(InvalidInput, match="missing.crt"):
        server_ssl_context(pki, RpcTls(cert_file="config/missing.crt", key_file="config/server.key"))
    with pytest.raises(InvalidInput, match="client CA"):
        server_ssl_context(pki, RpcTls(cert_file="config/server.crt", key_file="config/server.key",
                                       client_ca_file="config/server.key"))


def test_a_tls_config_names_an_https_url_and_a_plain_one_is_written_as_before() -> None:
    base = {"name": "node0", "p2p_listen": "127.0.0.1:26600", "rpc_listen": "0.0.0.0:26601"}
    assert NodeConfig.model_validate(base).rpc_url() == "http://127.0.0.1:26601"
    tls = NodeConfig.model_validate({**base, "rpc_tls": {"cert_file": "config/s.crt", "key_file": "config/s.key"}})
    assert tls.rpc_url() == "https://127.0.0.1:26601"
    with pytest.raises(ValueError, match="inside the home directory"):
        RpcTls(cert_file="/etc/ssl/s.crt", key_file="config/s.key")

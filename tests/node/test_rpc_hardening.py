"""The JSON-RPC edge under hostile input, in process: envelopes, params, signers, sockets and logs.

Each test names the failure it guards against (issue 17): anonymous input that
reached -32603 or HTTP 500, a forger spending a hospital's rate limit, a resend
charged or alerted as an attack, sockets held open without a request, and logs
an attacker could fill. ``tests/integration/test_rpc_attacks.py`` runs the same
attacks against a real validator process.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from core.api import Params
from core.crypto import PrivateKey
from core.errors import AlreadyKnown, BadNonce, BadSignature
from core.state import MemoryState
from core.tx import Transaction
from fl_contracts import contract
from fl_contracts import queries as fl_queries
from ids import queries as alert_queries
from node.app_reads import RPC_QUERIES
from node.misbehaviour import SelfDefence
from node.rpc.connections import LogThrottle, install_accept_error_handler
from node.rpc.server import RpcLimits, RpcServer, create_app, start_rpc_server
from tests.node.conftest import SEPSIS, FakeNode
from tests.node.helpers import CHAIN, GATEWAY, HOSPITAL, echo_tx, make_block, open_ledger
from tests.node.test_rpc_server import CountingLimiter, call, post

# -- anonymous input never reaches an internal error --------------------------------------------------------


class StateNode(FakeNode):
    """A fake node whose FL and alert reads are the real query functions over in-memory state."""

    def __init__(self) -> None:
        super().__init__()
        self.state = MemoryState()
        contract.init_models(self.state, [SEPSIS], {}, 0)
        self.answers = dict((q.path, answer) for q, answer in (*fl_queries.STATE_QUERIES,
                                                               *alert_queries.STATE_QUERIES))

    async def query(self, path: str, params: Params) -> object:
        answer = self.answers.get(path)
        return answer(self.state, params) if answer is not None else await super().query(path, params)


@pytest.mark.parametrize("method, params, param", [
    ("alerts_query", {"cursor": "\u00b2"}, "cursor"),  # str.isdigit() says yes to a superscript two
    ("alerts_query", {"cursor": "\u0661\u0662"}, "cursor"),  # Arabic-Indic digits
    ("alerts_query", {"from_height": 2**64}, "from_height"),  # heights are 8-byte keys
    ("fl_model_get", {"model_id": SEPSIS.id, "version": 2**64}, "version"),  # so are versions
])
async def test_out_of_range_params_are_invalid_input_not_internal_errors(serve, method, params, param):
    async with serve(create_app(StateNode(), RPC_QUERIES)) as client:
        status, body = await post(client, call(method, params))
    assert status == 200 and body["error"]["code"] == -32602, body
    assert body["error"]["data"].get("param") == param


@pytest.mark.parametrize("raw", [
    b'{"jsonrpc": "2.0", "method": "status", "id": "\\ud800"}',  # the answer could not echo this id
    b'{"jsonrpc": "2.0", "method": "fl_rounds", "params": {"model_id": "\\udfff"}, "id": 1}',  # nor key a store
    b'[{"jsonrpc": "2.0", "method": "status", "id": 1}, {"jsonrpc": "2.0", "method": "x\\ud83d", "id": 2}]',
])
async def test_a_lone_surrogate_anywhere_is_a_parse_error(serve, raw):
    async with serve(create_app(StateNode(), RPC_QUERIES)) as client:
        status, body = await post(client, None, raw=raw)
        _, paired = await post(client, None, raw=b'{"jsonrpc": "2.0", "method": "status", "id": "\\ud83d\\ude00"}')
    assert status == 200 and body["error"]["code"] == -32700 and body["id"] is None, body
    assert "surrogate" in body["error"]["message"]
    assert paired["id"] == "\U0001F600" and "result" in paired  # an escaped pair is one character, and fine


async def test_a_body_that_does_not_decompress_is_a_400_with_a_json_error_not_a_500(serve):
    async with serve(create_app(StateNode(), RPC_QUERIES)) as client:
        reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
        writer.write(b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
                     b"Content-Length: 10\r\n\r\nnot gzip!!")
        head, body = await _response(reader)
        writer.close()
    assert head.startswith(b"HTTP/1.1 400"), head
    error = json.loads(body)["error"]
    assert error["code"] == -32600 and "gzip" in error["message"], error


# -- a signer is charged only for what its signature proves ------------------------------------------------


def _forged(key: PrivateKey, nonce: int) -> Transaction:
    """A transaction naming ``key`` as its sender, signed by somebody else."""
    tx = Transaction.create(PrivateKey.generate(), CHAIN, nonce, "test.echo", {"msg": b"forged"})
    return Transaction(tx.chain_id, key.public_key.raw, nonce, tx.kind, tx.payload, tx.signature)


async def test_forged_transactions_spend_the_senders_address_not_the_named_key(serve):
    reports: list[tuple[str, str]] = []
    app = create_app(FakeNode(), RPC_QUERIES, signer_limiter=CountingLimiter(2), chain_id=None,
                     on_misbehaviour=lambda kind, who: reports.append((kind, who)))
    async with serve(app) as client:
        forged = [(await post(client, call("tx_submit", [_forged(HOSPITAL, n).encode().hex()])))[1]
                  for n in range(1, 6)]
        _, genuine = await post(client, call("tx_submit", [_tx(HOSPITAL, 1).encode().hex()]))
    assert [f["error"]["data"]["reason"] for f in forged] == ["bad_signature"] * 2 + ["rate_limited"] * 3
    assert all(f["error"]["data"].get("scope", "client") == "client" for f in forged)
    assert "result" in genuine, genuine
    key = HOSPITAL.public_key.hex()
    assert all(who != key for _, who in reports), reports
    assert ("bad_signature", "127.0.0.1") in reports and ("rpc_flood", "127.0.0.1") in reports


def _tx(key: PrivateKey, nonce: int) -> Transaction:
    return Transaction.create(key, "fbci-test", nonce, "fl.submit_update", {"round": 1, "delta": b"\x00" * 8})


class CountingCache:
    """A :class:`node.rpc.node_api.SignatureCheck` over a set, counting real verifications."""

    def __init__(self) -> None:
        self.seen: set[bytes] = set()
        self.verified = 0

    def __contains__(self, tx_hash: bytes) -> bool:
        return tx_hash in self.seen

    def verify(self, tx: Transaction, tx_hash: bytes | None = None, raw: bytes | None = None) -> bool:
        tx_hash = tx_hash or tx.hash
        if tx_hash in self.seen:
            return True
        self.verified += 1
        ok = tx.verify_signature(raw)
        if ok:
            self.seen.add(tx_hash)
        return ok


async def test_a_resend_of_the_same_bytes_is_not_charged_to_the_signer(serve):
    cache, limiter = CountingCache(), CountingLimiter(1)
    app = create_app(FakeNode(), RPC_QUERIES, signer_limiter=limiter, chain_id="fbci-test", signatures=cache)
    tx = _tx(HOSPITAL, 1).encode().hex()
    async with serve(app) as client:
        answers = [(await post(client, call("tx_submit", [tx])))[1] for _ in range(4)]
    assert "result" in answers[0]
    assert [a["error"]["data"]["reason"] for a in answers[1:]] == ["already_known"] * 3  # not rate_limited
    assert cache.verified == 1 and limiter.used == {f"signer:{HOSPITAL.public_key.hex()}": 1}


class LedgerNode(FakeNode):
    """Submissions go to a real ledger's mempool, whose CheckTx verifies through the app's SignatureCache."""

    def __init__(self, path: Path, **ledger: Any) -> None:
        super().__init__()
        self.ledger = open_ledger(path, **ledger)

    async def submit_tx(self, raw: bytes) -> bytes:
        return self.ledger.mempool.add(raw).hash


async def test_the_edge_and_the_mempool_verify_each_signature_once_and_cache_only_this_chain(
        serve, tmp_path, monkeypatch):
    node = LedgerNode(tmp_path / "db")
    checked: list[bytes] = []
    real = Transaction.verify_signature

    def counting(tx: Transaction, raw: bytes | None = None) -> bool:
        checked.append(tx.hash)
        return real(tx, raw)

    monkeypatch.setattr(Transaction, "verify_signature", counting)
    signatures = node.ledger.app.signatures  # type: ignore[attr-defined]
    app = create_app(node, RPC_QUERIES, chain_id=CHAIN, signatures=signatures)
    ours, theirs = echo_tx(HOSPITAL, 1), echo_tx(GATEWAY, 1, chain="another-chain")
    try:
        async with serve(app) as client:
            _, admitted = await post(client, call("tx_submit", [ours.encode().hex()]))
            _, refused = await post(client, call("tx_submit", [theirs.encode().hex()]))
    finally:
        node.ledger.app.database.close()  # type: ignore[attr-defined]
    assert admitted["result"]["hash"] == ours.hash.hex() and ours.hash in node.ledger.mempool
    assert checked == [ours.hash]  # the edge verified it; the mempool's CheckTx found it in the cache
    assert refused["error"]["data"]["reason"] == "wrong_chain" and theirs.hash not in signatures


def test_a_resend_of_a_committed_transaction_says_where_it_is(tmp_path):
    ledger = open_ledger(tmp_path / "db")
    try:
        tx = echo_tx(HOSPITAL, 1)
        ledger.mempool.add(tx.encode())
        ledger.blocks.commit(make_block(1, [tx.encode()]), b"")
        with pytest.raises(BadNonce) as resent:
            ledger.mempool.add(tx.encode())
        with pytest.raises(BadNonce) as reused:
            ledger.mempool.add(echo_tx(HOSPITAL, 1, msg=b"another body, the same nonce").encode())
    finally:
        ledger.app.database.close()  # type: ignore[attr-defined]
    assert resent.value.data == {"committed_height": 1} and "already committed" in resent.value.message
    assert "committed_height" not in reused.value.data


async def test_a_replay_of_a_committed_transaction_the_signature_cache_forgot_charges_no_signer(serve, tmp_path):
    """Past the signature cache (shrunk here to one hash), old committed bytes are found in the committed-tx
    index: anyone replaying them is answered where they are, and the hospital they name is charged nothing."""
    node = LedgerNode(tmp_path / "db", signature_cache_size=1)
    app_ = node.ledger.app
    old, newer = echo_tx(HOSPITAL, 1), echo_tx(HOSPITAL, 2)
    for height, tx in ((1, old), (2, newer)):
        node.ledger.mempool.add(tx.encode())
        node.ledger.blocks.commit(make_block(height, [tx.encode()]), b"")
    assert old.hash not in app_.signatures  # the newer one pushed it out
    limiter = CountingLimiter(100)
    app = create_app(node, RPC_QUERIES, signer_limiter=limiter, chain_id=CHAIN, signatures=app_.signatures,
                     committed=app_.committed_height)
    try:
        async with serve(app) as client:
            answers = [(await post(client, call("tx_submit", [old.encode().hex()])))[1] for _ in range(3)]
            _, fresh = await post(client, call("tx_submit", [echo_tx(HOSPITAL, 3).encode().hex()]))
    finally:
        app_.database.close()  # type: ignore[attr-defined]
    for answer in answers:
        assert answer["error"]["data"] == {"reason": "bad_nonce", "committed_height": 1}, answer
    assert "result" in fresh
    assert limiter.used.get(f"signer:{HOSPITAL.public_key.hex()}") == 1  # only the fresh transaction


def test_only_a_proven_reuse_of_a_nonce_counts_as_a_replay():
    raised: list[Any] = []
    defence = SelfDefence("Node0", raised.append, clock_ms=lambda: 1_000_000)
    sender = HOSPITAL.public_key.raw
    for _ in range(20):  # a client retrying, anyone replaying public bytes, a forger naming the key
        defence.on_tx_rejected(sender, AlreadyKnown("pending already"))
        defence.on_tx_rejected(sender, BadNonce("committed already", data={"committed_height": 3}))
        defence.on_tx_rejected(sender, BadSignature("does not verify"))
    assert raised == []
    for _ in range(5):
        defence.on_tx_rejected(sender, BadNonce("nonce 1 was already used"))
    assert [(a.alert_class, a.subject) for a in raised] == [("replayed_tx", sender)]


# -- sockets: head and body deadlines, connection caps, quiet logs ----------------------------------------------


@asynccontextmanager
async def running(limits: RpcLimits) -> AsyncIterator[tuple[RpcServer, str, int]]:
    server = await start_rpc_server(create_app(FakeNode(), RPC_QUERIES, limits=limits), "127.0.0.1", 0)
    host, port = server.addresses[0][:2]
    try:
        yield server, host, port
    finally:
        await server.cleanup()


async def _response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    return head, await asyncio.wait_for(reader.readexactly(length), 10)


async def _closed_by_server(reader: asyncio.StreamReader, within_s: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), within_s) == b""
    except (TimeoutError, ConnectionResetError):
        return False


async def _status(host: str, port: int, source: str = "127.0.0.1") -> dict[str, Any]:
    reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
    body = json.dumps({"jsonrpc": "2.0", "method": "status", "id": 1}).encode()
    writer.write(b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                 % (len(body), body))
    _, answer = await _response(reader)
    writer.close()
    return json.loads(answer)


async def test_a_request_head_that_never_completes_is_closed_after_the_header_timeout():
    async with running(RpcLimits(header_timeout_s=0.5)) as (_, host, port):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"POST /rpc HTT")  # and nothing more
        assert await _closed_by_server(reader, within_s=5), "a half-sent request line held its socket"
        writer.close()
        assert "result" in await _status(host, port)


async def test_a_body_that_never_completes_gets_408_after_the_body_timeout():
    async with running(RpcLimits(body_timeout_s=0.5)) as (_, host, port):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n"
                     b"\r\n{\"jsonrpc\"")
        head, body = await _response(reader)
        writer.close()
    assert head.startswith(b"HTTP/1.1 408"), head
    assert json.loads(body)["error"]["data"]["reason"] == "timeout"


async def test_connections_over_the_per_address_cap_are_refused_at_once_and_others_served():
    cap = RpcLimits().max_connections_per_address
    async with running(RpcLimits()) as (_, host, port):
        held = [await asyncio.open_connection(host, port) for _ in range(cap)]
        for _, writer in held:
            writer.write(b"POST /rpc HTTP/1.1\r\n")
        reader, writer = await asyncio.open_connection(host, port)
        head, body = await _response(reader)
        error = json.loads(body)["error"]
        assert head.startswith(b"HTTP/1.1 503") and error["code"] == -32005, (head, error)
        assert error["data"] == {"reason": "limit_exceeded", "limit": cap, "scope": "connections_address"}
        assert "result" in await _status(host, port, source="127.0.0.2")
        held.pop()[1].close()
        deadline = asyncio.get_running_loop().time() + 10
        while True:  # the slot frees when the server sees the close
            answer = await _status(host, port)
            if "result" in answer or asyncio.get_running_loop().time() > deadline:
                break
        assert "result" in answer, answer
        for _, w in held:
            w.close()


async def test_connections_over_the_total_cap_are_refused_whatever_their_address():
    async with running(RpcLimits(max_connections=2)) as (_, host, port):
        held = [await asyncio.open_connection(host, port, local_addr=(f"127.0.0.{i}", 0)) for i in (5, 6)]
        answer = await _status(host, port, source="127.0.0.7")
        assert answer["error"]["data"]["scope"] == "connections_total", answer
        for _, w in held:
            w.close()


async def test_malformed_request_heads_are_answered_400_and_logged_once_per_interval_without_traceback(caplog):
    caplog.set_level(logging.DEBUG)
    async with running(RpcLimits()) as (_, host, port):  # 21 bad heads within one 10 s interval
        for bad in (b"GET /rpc HTTP/1.1\r\nContent-Length: abc\r\n\r\n", b"POST /rpc HTTP/1.1\r\nBad Header\r\n\r\n",
                    b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n") * 7:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(bad)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.split(b" ")[1].startswith(b"4"), head
            writer.close()
        assert "result" in await _status(host, port)
    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records if r.exc_info]
    assert len(records) == 1 and "malformed" in records[0].getMessage(), [r.getMessage() for r in records]


# -- the throttle itself -----------------------------------------------------------------------------------------


class FakeTimers:
    def __init__(self) -> None:
        self.due: list[Callable[[], None]] = []

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        self.due.append(callback)

    def fire(self) -> None:
        due, self.due = self.due, []
        for callback in due:
            callback()


def test_the_log_throttle_writes_one_line_per_interval_with_the_count(caplog):
    caplog.set_level(logging.WARNING)
    timers = FakeTimers()
    throttle = LogThrottle(logging.getLogger("test.throttle"), 10, timers.call_later)
    for i in range(100):
        throttle.note("refused", f"from 10.0.0.{i}")
    timers.fire()  # the interval ends: one line with the 99 that followed the first
    timers.fire()  # a quiet interval: nothing, and the window closes
    throttle.note("refused", "again")
    assert [r.getMessage() for r in caplog.records] == [
        "refused (from 10.0.0.0)", "refused: 99 more in the last 10 s (latest: from 10.0.0.99)", "refused (again)"]


async def test_accept_errors_are_throttled_and_other_loop_errors_still_reach_the_old_handler(caplog):
    caplog.set_level(logging.WARNING)
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []

    def before(_: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        seen.append(context)

    loop.set_exception_handler(before)
    restore = install_accept_error_handler(loop, LogThrottle(logging.getLogger("test.accept"), 60))
    try:
        for _ in range(1000):
            loop.call_exception_handler({"message": "socket.accept() out of system resource",
                                         "exception": OSError(24, "Too many open files")})
        loop.call_exception_handler({"message": "something else", "exception": ValueError("bug")})
    finally:
        restore()
    assert [r.getMessage() for r in caplog.records] == [
        "accept() failed: out of file descriptors or memory (OSError: [Errno 24] Too many open files)"]
    assert not caplog.records[0].exc_info
    assert [c["message"] for c in seen] == ["something else"]
    assert loop.get_exception_handler() is before

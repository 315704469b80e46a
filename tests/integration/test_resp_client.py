"""The service's minimal Redis client against real redis-server processes: replies matched to
their callers under concurrency, error replies, AUTH/SELECT from the URL, a stalled server, a
stopped and restarted server."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator

import pytest
from conftest import RedisServer, need_binary

from services.recommend.resp import RedisAddress, RespClient, RespError, pack_command


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A redis-server of this test's own (tests here stop, stall and reconfigure it)."""
    redis = RedisServer(need_binary("redis-server"))
    redis.start()
    yield redis
    redis.stop()


def cli(server: RedisServer, *args: str) -> str:
    out = subprocess.run(
        [need_binary("redis-cli"), "-p", str(server.port), *args], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_pack_command_is_resp() -> None:
    assert pack_command("HMGET", b"k\r\n", 7) == b"*3\r\n$5\r\nHMGET\r\n$3\r\nk\r\n\r\n$1\r\n7\r\n"


def test_url_parsing() -> None:
    assert RedisAddress.parse("redis://10.0.0.3:6380/2") == RedisAddress("10.0.0.3", 6380, 2, None, None, False)
    assert RedisAddress.parse("rediss://u:p%40ss@host") == RedisAddress("host", 6379, 0, "u", "p@ss", True)
    assert RedisAddress.parse("redis://:secret@h/0").password == "secret"
    assert RedisAddress.parse("rediss://10.0.0.3:6378?ssl_ca_certs=/etc/ca.pem").ca_file == "/etc/ca.pem"
    with pytest.raises(ValueError, match="scheme"):
        RedisAddress.parse("http://h:6379")
    with pytest.raises(ValueError, match="database"):
        RedisAddress.parse("redis://h:6379/x")


def test_concurrent_calls_get_their_own_replies(server: RedisServer) -> None:
    cli(server, "EVAL", "for i=0,499 do redis.call('HSET', 'k'..i, 'f', tostring(i)) end", "0")

    async def main() -> list[object]:
        client = RespClient(server.url, timeout_s=2.0)
        try:
            # 500 calls in flight at once on one connection, in shuffled order of keys.
            keys = [(i * 37) % 500 for i in range(500)]
            replies = await asyncio.gather(*(client.execute("HMGET", f"k{k}", "f", "missing") for k in keys))
            return [(k, r) for k, r in zip(keys, replies, strict=True)]
        finally:
            await client.close()

    for key, reply in asyncio.run(main()):
        assert reply == [str(key).encode(), None]


def test_error_reply_fails_only_its_call(server: RedisServer) -> None:
    async def main() -> tuple[object, object]:
        client = RespClient(server.url, timeout_s=2.0)
        try:
            bad, good = await asyncio.gather(
                client.execute("NOSUCHCOMMAND"), client.execute("PING"), return_exceptions=True
            )
            return bad, good
        finally:
            await client.close()

    bad, good = asyncio.run(main())
    assert isinstance(bad, RespError) and "unknown command" in str(bad).lower()
    assert good == b"PONG"


def test_auth_and_database_come_from_the_url(server: RedisServer) -> None:
    cli(server, "-n", "3", "SET", "where", "db3")
    cli(server, "CONFIG", "SET", "requirepass", "s3cret")
    url = f"redis://:s3cret@127.0.0.1:{server.port}/3"

    async def main(url: str) -> object:
        client = RespClient(url, timeout_s=2.0)
        try:
            return await client.execute("GET", "where")
        finally:
            await client.close()

    assert asyncio.run(main(url)) == b"db3"
    with pytest.raises(RespError, match="setup"):
        asyncio.run(main(f"redis://:wrong@127.0.0.1:{server.port}/3"))


def test_stalled_server_times_out_then_the_client_recovers(server: RedisServer) -> None:
    async def main() -> tuple[BaseException | object, object]:
        client = RespClient(server.url, timeout_s=0.3)
        try:
            assert await client.execute("PING") == b"PONG"
            # Every client's commands wait 1.5 s: a server that accepts but does not answer.
            cli(server, "CLIENT", "PAUSE", "1500", "ALL")
            try:
                stalled: BaseException | object = await client.execute("PING")
            except TimeoutError as error:
                stalled = error
            await asyncio.sleep(1.5)
            return stalled, await client.execute("PING")
        finally:
            await client.close()

    stalled, after = asyncio.run(main())
    assert isinstance(stalled, TimeoutError)
    assert after == b"PONG"


def test_stopped_server_fails_fast_and_a_restarted_one_is_used_again(server: RedisServer) -> None:
    async def main() -> list[str]:
        client = RespClient(server.url, timeout_s=1.0)
        seen = []
        try:
            seen.append(repr(await client.execute("PING")))
            server.stop()
            for _ in range(2):  # the lost connection, then a refused reconnect
                try:
                    await client.execute("PING")
                    seen.append("answered")
                except OSError as error:  # ConnectionError included
                    seen.append(type(error).__name__)
            server.start()
            seen.append(repr(await client.execute("PING")))
        finally:
            await client.close()
        return seen

    # The same port again: RedisServer keeps it across stop/start.
    seen = asyncio.run(main())
    assert seen[0] == seen[-1] == "b'PONG'"
    assert seen[1:3] and all(s != "answered" for s in seen[1:3]), seen

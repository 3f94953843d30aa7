"""Fetcher security: addresses a public crawler must never touch, checked with the real resolver."""
from __future__ import annotations

import asyncio

import pytest

from funnel.crawler.fetcher import Fetcher, GuardedResolver, RefusedError, address_refusal


@pytest.mark.parametrize("ip", ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
                                "::1", "fe80::1", "fd00:ec2::254", "0.0.0.0", "224.0.0.1", "::ffff:127.0.0.1"])
def test_private_and_metadata_addresses_refused(ip):
    assert address_refusal(ip) is not None


@pytest.mark.parametrize("ip", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_allowed(ip):
    assert address_refusal(ip) is None


def test_resolver_refuses_names_that_resolve_to_loopback():
    async def go(allow):
        resolver = GuardedResolver(allow_private=allow)
        try:
            return await resolver.resolve("localhost", 80)
        finally:
            await resolver.close()

    with pytest.raises(RefusedError, match="loopback"):
        asyncio.run(go(False))
    assert asyncio.run(go(True))


def test_fetch_refuses_literals_and_other_schemes():
    async def go():
        async with Fetcher(user_agent="t", concurrency=2, connect_timeout=1, read_timeout=1, max_bytes=1000,
                           retries=0, retry_backoff=0, max_redirects=2, allow_private=False) as f:
            return [await f.fetch(u) for u in ("http://127.0.0.1:9/", "http://[::1]:9/", "http://169.254.169.254/",
                                               "http://localhost:9/", "ftp://example.com/")]
    results = asyncio.run(go())
    assert all(r.status is None and r.error.startswith("refused") for r in results), [r.error for r in results]

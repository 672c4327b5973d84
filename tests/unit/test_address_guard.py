"""The private-address (SSRF) guard, judged directly on addresses and host spellings.

No traffic: the guard is fed addresses (for ranges we may not dial) or numeric host
spellings that the resolver turns into addresses without DNS.
"""

from __future__ import annotations

import pytest

from ragserve.errors import ScopeError
from ragserve.ingest.urls import check_addresses, guard_host, is_public_address

pytestmark = pytest.mark.unit

NOT_PUBLIC = [
    # IPv4: loopback, RFC 1918, link-local / metadata, CGNAT, unspecified, multicast,
    # broadcast, reserved, documentation, benchmarking, IETF, 6to4 relay.
    "127.0.0.1", "127.255.255.254", "10.0.0.1", "172.16.0.1", "172.31.255.255",
    "192.168.0.1", "169.254.169.254", "169.254.170.2", "100.64.0.1", "100.127.255.255",
    "0.0.0.0", "0.1.2.3", "224.0.0.1", "239.255.255.250", "255.255.255.255",
    "240.0.0.1", "192.0.2.1", "198.51.100.1", "203.0.113.1", "198.18.0.1",
    "192.0.0.8", "192.0.0.170", "192.88.99.1",
    # IPv6: unspecified, loopback, link-local, ULA (AWS metadata fd00:ec2::254), site-local,
    # multicast, documentation, discard, Teredo, SRv6.
    "::", "::1", "fe80::1", "fe80::1%eth0", "fd00::1", "fd00:ec2::254", "fc00::1",
    "fec0::1", "ff02::1", "ff05::1:3", "2001:db8::1", "3fff::1", "100::1", "2001::1",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2", "5f00::1",
    # IPv6 that carries a private IPv4: mapped, compatible, translated, NAT64, 6to4.
    "::ffff:127.0.0.1", "::ffff:7f00:1", "0:0:0:0:0:ffff:169.254.169.254",
    "::ffff:10.0.0.1", "::127.0.0.1", "::a9fe:a9fe", "::ffff:0:a00:1",
    "::ffff:0:127.0.0.1", "64:ff9b::a9fe:a9fe", "64:ff9b::7f00:1", "64:ff9b::10.0.0.1",
    "64:ff9b:1::a00:1", "64:ff9b:1::5db8:d822", "2002:a9fe:a9fe::", "2002:7f00:1::1",
    "2002:c0a8:101::", "2002::",
    # Not an address at all.
    "not-an-ip", "", "127.0.0.1.", "[::1]",
]  # fmt: skip


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_every_special_range_and_embedding_is_not_public(address: str) -> None:
    assert not is_public_address(address)


@pytest.mark.parametrize(
    "address",
    [
        "93.184.216.34",
        "8.8.8.8",
        "2606:4700::6810:85e5",
        "::ffff:93.184.216.34",
        "64:ff9b::5db8:d822",
        "2002:5db8:d822::1",
    ],
)
def test_public_addresses_and_their_embeddings_pass(address: str) -> None:
    assert is_public_address(address)


#: Spellings of loopback that resolvers (inet_aton, getaddrinfo) accept: decimal, octal,
#: hex, short forms, mixed, IPv6 and IPv4-mapped or -compatible IPv6.
LOOPBACK_SPELLINGS = [
    "127.0.0.1", "localhost", "LOCALHOST", "2130706433", "0177.0.0.1", "0177.1", "0x7f.1",
    "0x7f000001", "0x7F.0.0.1", "017700000001", "127.1", "127.0.1", "127.000.000.001",
    "0x7f.0x0.0x0.0x1", "::1", "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1", "::ffff:7f00:1",
    "::127.0.0.1",
]  # fmt: skip
#: The same tricks on the unspecified address, the metadata service and RFC 1918.
OTHER_PRIVATE_SPELLINGS = [
    "0", "0.0.0.0", "0x0", "::", "2852039166", "0xa9fea9fe", "0251.0376.0251.0376",
    "169.254.43518", "::ffff:169.254.169.254", "3232235777", "0xc0.0xa8.1.1", "10.1",
    "0x0a000001",
]  # fmt: skip


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS + OTHER_PRIVATE_SPELLINGS)
def test_every_spelling_of_a_private_host_is_refused(host: str) -> None:
    with pytest.raises(ScopeError, match="--allow-private"):
        guard_host(host, 80, allow_private=False)


def test_a_host_with_one_private_address_among_public_ones_is_refused() -> None:
    with pytest.raises(ScopeError, match=r"refusing to crawl .*10\.0\.0\.5"):
        check_addresses("docs.example", ["93.184.216.34", "10.0.0.5"], allow_private=False)
    with pytest.raises(ScopeError, match=r"::ffff:127\.0\.0\.1"):
        check_addresses("docs.example", ["2606:4700::1", "::ffff:127.0.0.1"], allow_private=False)

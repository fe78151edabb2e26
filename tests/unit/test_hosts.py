"""The host allow-list both sides share (ccmirror_common/hosts.py): which hosts and which
resolved addresses a downloader may reach, and which list entries are refused."""

from __future__ import annotations

import asyncio

import pytest

from ccmirror_common.hosts import (
    DEFAULT_POLICY,
    HostListError,
    HostPolicy,
    HostRefused,
    url_host,
)


def test_wildcards_match_subdomains_only_and_names_match_exactly():
    policy = HostPolicy(["*.staticflickr.com", "images.example.org", "*.Flickr.COM"])
    assert policy.allows_host("farm1.staticflickr.com")
    assert policy.allows_host("a.b.staticflickr.com")
    assert policy.allows_host("LIVE.StaticFlickr.com.")  # case and a trailing dot
    assert policy.allows_host("images.example.org")
    assert policy.allows_host("www.flickr.com")
    assert not policy.allows_host("staticflickr.com")  # `*.` is subdomains, not the domain
    assert not policy.allows_host("evilstaticflickr.com")
    assert not policy.allows_host("staticflickr.com.evil.example")
    assert not policy.allows_host("cdn.images.example.org")
    assert not policy.allows_host("x.staticflickr.com\t.evil")  # not a host name at all


def test_the_default_is_flickrs_image_hosts_and_no_address():
    assert DEFAULT_POLICY.entries == ("*.staticflickr.com", "*.flickr.com")
    assert DEFAULT_POLICY.allows_host("live.staticflickr.com")
    for host in ("localhost", "127.0.0.1", "169.254.169.254", "::1", "example.org"):
        assert not DEFAULT_POLICY.allows_host(host), host


def test_an_address_literal_is_allowed_only_when_listed():
    policy = HostPolicy("127.0.0.1, ::1 ,[fd00::5],")  # the env variable's comma form
    assert policy.entries == ("127.0.0.1", "::1", "fd00::5")
    assert policy.allows_host("127.0.0.1")
    assert policy.allows_host("[::1]") and policy.allows_host("0:0::1")
    assert policy.allows_host("::ffff:127.0.0.1")  # the same host, IPv4-mapped
    assert not policy.allows_host("127.0.0.2")
    assert not policy.allows_host("127.1")  # inet_aton shorthand: not a listed name


@pytest.mark.parametrize(
    "address, kind",
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.1.1", "private"),
        ("172.16.0.1", "private"),
        ("169.254.169.254", "metadata"),
        ("169.254.1.1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "not a public address"),  # carrier-grade NAT
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:169.254.169.254", "metadata"),
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("64:ff9b::a9fe:a9fe", "metadata"),  # NAT64 of 169.254.169.254
    ],
)
def test_non_public_addresses_are_refused_with_their_kind(address, kind):
    why = DEFAULT_POLICY.address_refusal(address)
    assert why is not None and kind in why


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1::1", "::ffff:8.8.8.8"])
def test_public_addresses_are_allowed(address):
    assert DEFAULT_POLICY.address_refusal(address) is None


def test_a_listed_address_is_allowed_whatever_its_kind_and_only_that_one():
    policy = HostPolicy(["*.staticflickr.com", "127.0.0.1", "10.213.0.1", "fe80::1"])
    assert policy.address_refusal("127.0.0.1") is None
    assert policy.address_refusal("::ffff:127.0.0.1") is None
    assert policy.address_refusal("10.213.0.1") is None
    assert policy.address_refusal("fe80::1") is None
    assert policy.address_refusal("127.0.0.2") is not None
    assert policy.address_refusal("10.213.0.2") is not None
    assert policy.address_refusal("169.254.169.254") is not None


@pytest.mark.parametrize(
    "entry, message",
    [
        ("http://images.example.org", "not a URL"),
        ("images.example.org/path", "not a URL"),
        ("images.example.org:8080", "no port"),
        ("127.0.0.1:80", "no port"),
        ("[::1]:80", "no port"),
        ("10.0.0.0/8", "not a URL"),
        ("*", "not a host name"),
        ("*.com", "whole top-level domain"),
        ("images.*.org", "not a host name"),
        ("*example.org", "not a host name"),
        ("bad_-.exa mple.org", "not a host name"),
        ("user@images.example.org", "not a URL"),
        ("bücher.example", "not a host name"),
    ],
)
def test_a_bad_entry_is_one_clear_error(entry, message):
    with pytest.raises(HostListError, match=message) as raised:
        HostPolicy(["*.staticflickr.com", entry])
    assert "\n" not in str(raised.value)


def test_an_empty_list_is_refused():
    for empty in ([], "", " , ,"):
        with pytest.raises(HostListError, match="empty"):
            HostPolicy(empty)


def test_urls_are_checked_by_scheme_and_host_without_dns():
    policy = DEFAULT_POLICY
    assert policy.check_url("https://live.staticflickr.com/65535/1_a_o.jpg") is None
    assert policy.check_url("http://farm1.staticflickr.com:80/1/1_a.jpg") is None
    assert "host not allowed: images.example.net" in policy.check_url(
        "https://images.example.net/1_a.jpg"
    )
    for disguised in (
        "https://live.staticflickr.com@evil.example/1.jpg",
        "https://evil.example\\@live.staticflickr.com/1.jpg",
        "ftp://live.staticflickr.com/1.jpg",
        "//live.staticflickr.com/1.jpg",
    ):
        assert policy.check_url(disguised) is not None, disguised
    assert url_host("https://[::1]:8080/x") == "::1"


@pytest.mark.parametrize(
    "url",
    [
        "https://live.staticflickr.com/65535/1_a_o.jpg",
        "http://farm1.staticflickr.com:80/1/1_a.jpg",
        "https://farm1.staticflickr.com",
        "https://farm1.staticflickr.com?x=1",
        "HTTPS://farm1.staticflickr.com/1.jpg",
        "https://images.example.net/1_a.jpg",
        "https://live.staticflickr.com@evil.example/1.jpg",
        "https://live.staticflickr.com:x@evil.example/1.jpg",
        "https://evil.example#@live.staticflickr.com/1.jpg",
        "https://evil.example?@live.staticflickr.com/1.jpg",
        "https://127.0.0.1/1.jpg",
        "ftp://live.staticflickr.com/1.jpg",
    ],
)
def test_the_fast_url_check_agrees_with_the_full_one(url):
    policy = HostPolicy(["*.staticflickr.com"])
    for _ in range(2):  # the second answer comes from the cache
        assert policy.allows_url(url) == (policy.check_url(url) is None), url


def resolve(policy: HostPolicy, host: str) -> list[str]:
    async def main() -> list[str]:
        return await policy.resolve(asyncio.get_running_loop(), host, 80)

    return asyncio.run(main())


def test_a_name_that_resolves_to_loopback_is_refused_unless_the_address_is_listed():
    with pytest.raises(HostRefused, match=r"localhost resolves to 127\.0\.0\.1 \(loopback"):
        resolve(HostPolicy(["localhost"]), "localhost")
    assert "127.0.0.1" in resolve(HostPolicy(["localhost", "127.0.0.1", "::1"]), "localhost")
    with pytest.raises(HostRefused, match="host not allowed: localhost$"):
        resolve(DEFAULT_POLICY, "localhost")  # not listed: refused before any lookup

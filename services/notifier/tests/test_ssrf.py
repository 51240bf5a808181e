import ipaddress

import pytest

from autopay_notifier.adapters.webhook_client import WebhookSender
from autopay_notifier.ssrf import (
    DestinationRefused,
    GuardPolicy,
    check_url,
    is_public,
    vet_addresses,
)

from .receiver import Receiver

PROD = GuardPolicy(allow_loopback=False)
DEV = GuardPolicy(allow_loopback=True)


def ips(*values: str):
    return [ipaddress.ip_address(v) for v in values]


@pytest.mark.parametrize(
    "address",
    [
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "127.0.0.1",
        "0.0.0.0",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # CGNAT
        "224.0.0.1",  # multicast
        "240.0.0.1",  # reserved
        "255.255.255.255",
        "198.18.0.1",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd00:ec2::254",  # AWS metadata over IPv6
        "ff02::1",
        "::ffff:10.0.0.1",  # IPv4-mapped private
        "::ffff:127.0.0.1",
        "2002:a00:1::",  # 6to4 of 10.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "2001:db8::1",
    ],
)
def test_non_public_addresses_are_refused(address):
    assert not is_public(ipaddress.ip_address(address))
    with pytest.raises(DestinationRefused):
        vet_addresses("hooks.example.com", ips(address), PROD)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_pass(address):
    assert vet_addresses("hooks.example.com", ips(address), PROD) == ips(address)


def test_one_private_address_among_public_ones_refuses_the_host():
    with pytest.raises(DestinationRefused, match=r"10\.0\.0\.7"):
        vet_addresses("hooks.example.com", ips("8.8.8.8", "10.0.0.7"), PROD)


def test_private_ip_literal_url_is_refused():
    with pytest.raises(DestinationRefused, match="non-public"):
        check_url("https://10.0.0.5/hook", PROD)
    with pytest.raises(DestinationRefused):
        check_url("https://[::ffff:192.168.0.1]/hook", PROD)
    with pytest.raises(DestinationRefused):
        check_url("https://169.254.169.254/latest/meta-data", DEV)


def test_http_scheme_is_refused():
    with pytest.raises(DestinationRefused, match="https"):
        check_url("http://hooks.example.com/hook", PROD)
    with pytest.raises(DestinationRefused, match="https"):
        check_url("http://hooks.example.com/hook", DEV)  # dev allows http to loopback only
    with pytest.raises(DestinationRefused):
        check_url("ftp://hooks.example.com/hook", PROD)


def test_credentials_and_missing_host_are_refused():
    with pytest.raises(DestinationRefused):
        check_url("https://user:pw@hooks.example.com/hook", PROD)
    with pytest.raises(DestinationRefused):
        check_url("https:///hook", PROD)


def test_https_public_name_passes_with_default_port():
    target = check_url("https://Hooks.Example.com/hook?x=1", PROD)
    assert (target.scheme, target.host, target.port) == ("https", "hooks.example.com", 443)


def test_loopback_needs_the_dev_setting():
    with pytest.raises(DestinationRefused):
        check_url("http://127.0.0.1:8000/hook", PROD)
    with pytest.raises(DestinationRefused):
        vet_addresses("localhost", ips("127.0.0.1"), PROD)
    assert check_url("http://127.0.0.1:8000/hook", DEV).port == 8000
    assert check_url("http://localhost:8000/hook", DEV).host == "localhost"
    assert vet_addresses("localhost", ips("127.0.0.1", "::1"), DEV)


def test_hostname_resolving_to_loopback_is_refused_even_in_dev():
    for policy in (PROD, DEV):
        with pytest.raises(DestinationRefused, match="non-public"):
            vet_addresses("evil.example.com", ips("127.0.0.1"), policy)
    with pytest.raises(DestinationRefused):
        vet_addresses("localhost", ips("10.0.0.1"), DEV)  # dev opens loopback, not private


async def test_sender_refuses_a_name_resolving_to_loopback_before_dialing():
    dialled = []

    async def resolver(host: str, port: int):
        dialled.append(host)
        return ips("127.0.0.1")

    sender = WebhookSender(PROD, resolver=resolver)
    try:
        result = await sender.send("https://rebind.example.com/hook", b"{}", {})
    finally:
        await sender.aclose()
    assert result.refused and "non-public" in (result.error or "")
    assert dialled == ["rebind.example.com"]


async def test_sender_dials_the_vetted_address_and_keeps_the_host_name():
    seen = []
    async with Receiver() as receiver:

        async def resolver(host: str, port: int):
            seen.append((host, port))
            return ips("127.0.0.1")

        sender = WebhookSender(DEV, resolver=resolver)
        try:
            result = await sender.send(receiver.url(host="localhost"), b"{}", {"x-test": "1"})
        finally:
            await sender.aclose()
    assert result.status_code == 200
    assert seen == [("localhost", receiver.port)]
    assert receiver.requests[0].headers["host"] == f"localhost:{receiver.port}"

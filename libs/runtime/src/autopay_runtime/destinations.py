"""Which network destinations are public: shared by the gateway (refusing a webhook URL at
create) and the notifier (refusing where a URL resolves to, at delivery).

`is_public` is the rule for an address. `internal_host` is what can be said of a URL's host
without resolving it: an IP literal in a private, loopback, link-local, metadata or reserved
range (in any spelling an HTTP client would read, e.g. `127.1` or `2130706433`), or a name that
only ever means an internal machine (`localhost`, `*.internal`, `*.local`, ...).
"""

from __future__ import annotations

import ipaddress
import socket

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_BLOCKED = tuple(
    ipaddress.ip_network(net)
    for net in (
        # IPv4
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",  # CGNAT
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, cloud metadata (169.254.169.254)
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, incl. 255.255.255.255
        # IPv6
        "::/128",
        "::1/128",
        "64:ff9b:1::/48",
        "100::/64",
        "2001:db8::/32",
        "fc00::/7",  # ULA, incl. AWS metadata fd00:ec2::254
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    )
)


INTERNAL_NAMES = frozenset({"localhost", "metadata", "metadata.google.internal", "instance-data"})
INTERNAL_SUFFIXES = (".localhost", ".internal", ".local", ".localdomain", ".lan", ".home.arpa")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in ipaddress.ip_network("64:ff9b::/96"):  # NAT64
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and (inner := _embedded_ipv4(ip)) is not None:
        return is_public(inner)
    if any(ip in net for net in _BLOCKED if net.version == ip.version):
        return False
    return ip.is_global and not ip.is_multicast and not ip.is_reserved


def _literal(host: str) -> IPAddress | None:
    """The address an IP-literal host means, in the forms resolvers accept (`127.1`,
    `0x7f.0.0.1`, `2130706433`), or None for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefx." for c in host) and any(c.isdigit() for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def internal_host(host: str) -> str | None:
    """Why `host` is not a public destination (None when nothing says so without DNS)."""
    host = host.strip().rstrip(".").lower().strip("[]")
    literal = _literal(host)
    if literal is not None:
        return None if is_public(literal) else f"{literal} is not a public address"
    if host in INTERNAL_NAMES or host.endswith(INTERNAL_SUFFIXES):
        return f"{host} names an internal machine"
    return None

"""The Ray address a run joins: which of ``--address`` / ``RAY_ADDRESS`` gave it, and its form.

Pure (standard library only, nothing is contacted), so ``job.validate`` can check it before
Ray starts and before any folder is created. Reaching the address is
``cluster.connect``'s job.
"""

from __future__ import annotations

import ipaddress
import os
import re

ENV = "RAY_ADDRESS"
EXPECTED = (
    "expected host:port of a Ray head's GCS (e.g. 10.0.0.5:6379), ray://host:port "
    "(Ray Client), auto or local"
)
_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\Z")  # _: container DNS names


def resolve(address: str | None) -> tuple[str | None, str]:
    """``(address, source)``: the address a run will join and the option or environment
    variable that supplied it (``"--address"`` or ``"RAY_ADDRESS"``); ``(None, source)`` for a
    private local Ray (``source`` is ``""`` when neither gave an address).

    Follows ``ray.init``: the argument wins, except ``auto`` defers to a non-empty RAY_ADDRESS;
    an empty RAY_ADDRESS counts as unset. Raises ValueError, naming the source and the value,
    if the address is malformed.
    """
    env = os.environ.get(ENV, "")
    if address is not None and not (address == "auto" and env):
        source, value = "--address", address
    elif env:
        source, value = ENV, env
    else:
        return None, ""
    check_form(value, source)
    return (None if value == "local" else value), source


def check_form(value: str, source: str) -> None:
    """Raise ValueError unless ``value`` is host:port, ray://host:port, auto or local."""

    def bad(why: str) -> ValueError:
        return ValueError(f"{source} {value!r} is not a Ray address: {why}; {EXPECTED}")

    if value in ("auto", "local"):
        return
    if not value:
        raise bad("it is empty")
    if any(c.isspace() or not c.isprintable() for c in value):
        raise bad("it holds whitespace or control characters")
    scheme, sep, rest = value.partition("://")
    if sep:
        if scheme.lower() in ("http", "https"):
            raise bad(
                "an http(s) URL is a dashboard / job API address (for `ray job submit`), "
                "not a GCS address"
            )
        if scheme.lower() != "ray":
            raise bad(f"unknown scheme {scheme!r}")
    else:
        rest = value
    if any(c in rest for c in "/?#@"):
        raise bad("only host:port may follow the scheme")
    split_host_port(rest, bad)


def split_host_port(text: str, bad=None) -> tuple[str, int]:
    """``host:port`` or ``[ipv6]:port`` -> (host, port); ``bad(why)`` builds the error."""
    bad = bad or (lambda why: ValueError(f"{text!r}: {why}"))
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise bad("an IPv6 host needs [brackets] and a port, e.g. [::1]:6379")
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise bad("no port (host:port)")
        if ":" in host:
            raise bad("an IPv6 host needs [brackets], e.g. [::1]:6379")
    if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise bad(f"port {port!r} is not a number in 1..65535")
    if text.startswith("["):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise bad(f"host [{host}] is not an IPv6 address") from None
    elif not host:
        raise bad("no host")
    elif all(c.isdigit() or c == "." for c in host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise bad(f"host {host!r} is not an IPv4 address") from None
    elif len(host) > 253 or not all(_LABEL.match(label) for label in host.split(".")):
        raise bad(f"host {host!r} is not a host name")
    return host, int(port)

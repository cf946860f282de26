"""Which addresses analysis may call, and how an address is shown.

A RolloutPolicy names the address its queries go to, and the Secrets whose token goes with them;
whoever may write a policy could otherwise have the operator carry a namespace's Secret to any URL
(a confused deputy). The operator's administrator therefore lists the addresses analysis may use
(`sluice operator --prometheus-allow`, or SLUICE_PROMETHEUS_ALLOW); an address outside the list
is refused before a Secret is read or a request is sent.

Web metrics have a list of their own (`--web-allow`, SLUICE_WEB_ALLOW), read by the same code: a
Prometheus entry lets a policy run queries, a web entry lets it send any GET or POST, with any
body, to any path below it, so allowing the first must not quietly allow the second. An operator
whose Prometheus list is set but whose web list is not allows web metrics nowhere (a `closed`
list): whoever restricted analysis meant it for the new provider too.

An entry is an origin, `scheme://host[:port]`, with an optional path prefix. An address matches
when its scheme, host and port are the entry's, exactly (so `http://prom.example.com` allows
neither `http://prom.example.com.evil.io` nor `https://prom.example.com`), and, if the entry has a
path, when the address's path is that path or goes on below it after a `/`:

    Allowlist.parse(["http://prom.example.com:9090/prom"]).allows("http://prom.example.com:9090/prom/x")
    -> True; ".../prometheus", "http://prom.example.com/prom" (port 80) and "https://..." -> False

An entry without a port allows only its scheme's default port (80 or 443). A user name and
password in an address (`http://user:pass@host`) play no part in matching and are never shown.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx


@dataclass(frozen=True)
class Setting:
    """One allowlist's names, for the sentences that tell an administrator how to set it."""

    what: str  # what the list allows, as a refusal names it: "Prometheus address"
    flag: str
    environment: str
    helm: str  # the chart's value
    example: str
    remedy: str  # what a policy's author can do instead


PROMETHEUS = Setting("Prometheus address", "--prometheus-allow", "SLUICE_PROMETHEUS_ALLOW",
                     "analysis.allowedAddresses", "http://prometheus.monitoring:9090",
                     "or point the policy at an allowed Prometheus")
WEB = Setting("web metric URL", "--web-allow", "SLUICE_WEB_ALLOW", "analysis.allowedWebAddresses",
              "http://metrics-api.monitoring:8080/v1", "or point the metric at an allowed URL")
FLAG = PROMETHEUS.flag
ENVIRONMENT = PROMETHEUS.environment
DEFAULT_PORTS = {"http": 80, "https": 443}
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")
# A path that a server or proxy may read differently from how it is written: never matches a prefix.
_AMBIGUOUS = ("%2f", "%2e", "%5c", "\\")


def redact(address: str) -> str:
    """The address without its user name and password, for messages and logs:
    redact("http://user:pass@prom:9090/x") == "http://***@prom:9090/x"; works on any string."""
    return _USERINFO.sub(r"\1***@", address)


def shown(address: str) -> str:
    """An address as a message quotes it: redacted, and cut at 200 characters."""
    address = redact(address)
    return repr(address) if len(address) <= 200 else repr(address[:200] + "...")


def _origin(url: httpx.URL) -> tuple[str, str, int]:
    return url.scheme, url.host.rstrip("."), url.port or DEFAULT_PORTS[url.scheme]


def _segments(path: str) -> list[str]:
    return [part for part in path.split("/") if part]


@dataclass(frozen=True)
class Entry:
    scheme: str
    host: str
    port: int
    path: tuple[str, ...]  # the prefix's segments; () allows every path

    def allows(self, url: httpx.URL) -> bool:
        if _origin(url) != (self.scheme, self.host, self.port):
            return False
        if not self.path:
            return True
        raw = url.raw_path.decode("ascii", "replace").lower()
        parts = _segments(url.path)
        if any(mark in raw for mark in _AMBIGUOUS) or "." in parts or ".." in parts:
            return False
        return tuple(parts[:len(self.path)]) == self.path

    def __str__(self) -> str:
        port = "" if DEFAULT_PORTS[self.scheme] == self.port else f":{self.port}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}{port}/{'/'.join(self.path)}".rstrip("/")


def parse_entry(text: str, setting: Setting = PROMETHEUS) -> Entry:
    """One allowlist entry, or ValueError with a sentence for the operator's administrator."""
    flag = setting.flag
    text = text.strip()
    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, ValueError, TypeError):
        raise ValueError(f"{flag} {shown(text)} is not a URL such as {setting.example}") from None
    if url.scheme not in DEFAULT_PORTS or not url.host:
        raise ValueError(f"{flag} {shown(text)} must be http:// or https:// and a host, "
                         f"such as {setting.example}")
    if url.userinfo:
        raise ValueError(f"{flag} {shown(text)} must not carry a user name or password")
    if url.query or url.fragment:
        raise ValueError(f"{flag} {shown(text)} must not have a query (?) or fragment (#)")
    parts = _segments(url.path)
    written = _segments(urlsplit(text).path)  # as typed: httpx would quietly resolve "/a/../b"
    raw = url.raw_path.decode("ascii", "replace").lower()
    if any(mark in raw for mark in _AMBIGUOUS) or {".", ".."} & {*parts, *written}:
        raise ValueError(f"{flag} {shown(text)} has a path with '.', '..' or an encoded '/', '.' or '\\'")
    scheme, host, port = _origin(url)
    return Entry(scheme, host, port, tuple(parts))


@dataclass(frozen=True)
class Allowlist:
    """The addresses analysis may call; empty allows every address (the operator warns once),
    unless the list is `closed`: then empty allows none."""

    entries: tuple[Entry, ...] = ()
    setting: Setting = PROMETHEUS
    closed: bool = False

    @classmethod
    def parse(cls, texts: list[str], setting: Setting = PROMETHEUS) -> Allowlist:
        """Entries from flags or the environment variable; blank entries are skipped."""
        return cls(tuple(parse_entry(text, setting) for text in texts if text.strip()), setting)

    @classmethod
    def from_environment(cls, setting: Setting = PROMETHEUS) -> Allowlist:
        return cls.parse(split(os.environ.get(setting.environment, "")), setting)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def allows(self, address: str) -> bool:
        """Whether a request to `address` (checked as a URL already) may be sent."""
        if not self.entries:
            return not self.closed
        url = httpx.URL(address)
        return any(entry.allows(url) for entry in self.entries)

    def refusal(self, address: str) -> str:
        """What a Release stalled on an address outside the list says."""
        url = httpx.URL(address)
        wanted = Entry(*_origin(url), tuple(_segments(url.path)))
        setting = self.setting
        why = (f" (it is empty while {PROMETHEUS.flag} restricts analysis, so no {setting.what} is allowed)"
               if self.closed and not self.entries else "")
        return (f"{setting.what[0].upper()}{setting.what[1:]} {shown(address)} is not on this operator's "
                f"allowlist{why}, so no request is sent to it and no Secret is read for it; an operator "
                f"administrator can allow it with {setting.flag}={wanted} (or {setting.environment}; the Helm value "
                f"{setting.helm}), {setting.remedy}")

    def __str__(self) -> str:
        return ", ".join(str(entry) for entry in self.entries)


def split(text: str) -> list[str]:
    """An allowlist variable's entries (SLUICE_PROMETHEUS_ALLOW's): separated by commas (or white space)."""
    return [part for part in re.split(r"[,\s]+", text) if part]

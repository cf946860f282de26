"""How analysis clients verify a server over HTTPS, for Prometheus and web metrics alike.

A policy's `tls` settings (its Prometheus's, or a web metric's), once the CA bundle is read from
its Secret, become a Trust; a Trust is what the client verifies the server with. Whether a failed
request was our own certificate check refusing the server is told here too, by the exception's
type, never its text: the server can shape its text, not our check's verdict.
"""

from __future__ import annotations

import functools
import logging
import ssl
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trust:
    """Whom a client trusts: the system's CAs (the default), only the CAs of a PEM bundle, or,
    with `insecure`, any server at all."""

    ca_pem: str | None = field(default=None, repr=False)  # not a secret, but long: kept out of logs
    insecure: bool = False

    def verify(self) -> ssl.SSLContext | bool:
        """httpx's `verify`: Trust().verify() is True (the system's CAs), Trust(insecure=True).verify()
        is False, Trust(pem).verify() a context that trusts the bundle's CAs and no other. Raises
        ssl.SSLError (or ValueError) for a bundle that is not PEM."""
        if self.insecure:
            return False
        if self.ca_pem:
            return _context(self.ca_pem)
        return True


@functools.lru_cache(maxsize=64)
def _context(ca_pem: str) -> ssl.SSLContext:
    """One context per CA bundle: check_ca builds it on each pass to judge the Secret's bundle, and
    the client verifying with it is given the same one, so the PEM is parsed once, not per pass.
    A bundle that is not PEM raises, and is not cached."""
    return ssl.create_default_context(cadata=ca_pem)


SYSTEM = Trust()  # the default: the system's CAs


def certificate_refused(error: BaseException) -> bool:
    """Whether our own TLS check refused the server's certificate: an ssl.SSLCertVerificationError
    anywhere in the exception's chain. Its reason (OpenSSL's table: "self-signed certificate in
    certificate chain", "certificate has expired", a host name mismatch) is logged."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ssl.SSLCertVerificationError):
            log.info("a server's certificate was refused: %s", cause.verify_message)
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def untrusted(where: str, setting: str) -> str:
    """The measurement Error for a server whose certificate our check refused; `setting` is where
    the policy gives its CA (tls.caSecretRef for Prometheus, web.tls.caSecretRef for a web metric)."""
    return (f"{where} is not trusted: its certificate could not be verified (CERTIFICATE_VERIFY_FAILED); "
            f"give the policy its CA in {setting}")

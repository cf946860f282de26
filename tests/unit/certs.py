"""A private CA and a server certificate for 127.0.0.1, made with the openssl command (as the
e2e TLS test makes its own), for HTTPS servers on loopback in unit tests.

Made once per test run, in memory afterwards: `pki().ca` is the CA's PEM (what a policy's
caSecretRef holds), `pki().other_ca` a CA that signed nothing here, `pki().server_context()` what
the test's server presents.
"""

from __future__ import annotations

import functools
import ssl
import subprocess
import tempfile
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

EC = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")  # quick to make, unlike RSA
CA_EXTENSIONS = ("-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
SERVER_EXTENSIONS = """basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
"""


@dataclass(frozen=True)
class PKI:
    ca: str
    other_ca: str
    server_cert: str
    server_key: str

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory() as folder:
            cert, key = Path(folder, "server.crt"), Path(folder, "server.key")
            cert.write_text(self.server_cert)
            key.write_text(self.server_key)
            context.load_cert_chain(cert, key)
        return context


def _openssl(folder: str, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)


def _ca(folder: str, name: str) -> None:
    _openssl(folder, "req", "-x509", *EC, "-days", "1", "-subj", f"/CN={name}", *CA_EXTENSIONS,
             "-keyout", f"{name}.key", "-out", f"{name}.crt")


@functools.cache
def pki() -> PKI:
    with tempfile.TemporaryDirectory() as folder:
        _ca(folder, "sluice-test-ca")
        _ca(folder, "someone-elses-ca")
        _openssl(folder, "req", *EC, "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr")
        Path(folder, "server.ext").write_text(SERVER_EXTENSIONS)
        _openssl(folder, "x509", "-req", "-in", "server.csr", "-CA", "sluice-test-ca.crt", "-CAkey",
                 "sluice-test-ca.key", "-CAcreateserial", "-days", "1", "-extfile", "server.ext", "-out", "server.crt")
        read = {name: Path(folder, name).read_text()
                for name in ("sluice-test-ca.crt", "someone-elses-ca.crt", "server.crt", "server.key")}
    return PKI(ca=read["sluice-test-ca.crt"], other_ca=read["someone-elses-ca.crt"], server_cert=read["server.crt"],
               server_key=read["server.key"])


class HTTPSServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that speaks TLS, the handshake in each request's thread (so a client
    that refuses the certificate holds up no one); refused handshakes are not printed."""

    def __init__(self, address: tuple[str, int], handler: Any, context: ssl.SSLContext) -> None:
        super().__init__(address, handler)
        self.context = context

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            request = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        super().finish_request(request, client_address)

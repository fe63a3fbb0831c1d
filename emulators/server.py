"""Run a WSGI app as a real HTTP(S) server on a free local port.

Used by tests, benchmarks and sandbox mode to host the emulators (and, in tests,
the bridge itself) in a background thread of the calling process.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server


@dataclass
class TlsFiles:
    """A self-signed certificate for 127.0.0.1/localhost and its key, on disk."""

    cert_path: Path
    key_path: Path


def make_self_signed_cert(directory: Path | None = None) -> TlsFiles:
    """Create a self-signed certificate valid for localhost and 127.0.0.1.

    MSAL refuses plain-http authorities, so the Entra/Dataverse emulator serves
    HTTPS; clients trust this certificate through ``BRIDGE_CA_BUNDLE``.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    directory = Path(directory or tempfile.mkdtemp(prefix="emulator-tls-"))
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    files = TlsFiles(directory / "emulator-cert.pem", directory / "emulator-key.pem")
    files.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return files


class RunningServer:
    """A WSGI server serving in a daemon thread; ``url`` has no trailing slash."""

    def __init__(self, server: BaseWSGIServer, scheme: str) -> None:
        self._server = server
        self.host, self.port = server.server_address[:2]
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class _QuietRequestHandler(WSGIRequestHandler):
    """Serves like werkzeug's handler but writes no access-log line per request."""

    def log_request(self, *args, **kwargs) -> None:
        pass


def serve_in_thread(
    app, port: int = 0, tls: TlsFiles | None = None, *, quiet: bool = False
) -> RunningServer:
    """Start ``app`` on 127.0.0.1 (``port`` 0 picks a free one) and return at once.

    ``quiet`` drops the per-request access log (emulators); it does not touch
    the process-wide ``werkzeug`` logger, which the bridge's own tests read.
    """
    ssl_context = None
    if tls is not None:
        ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ssl_context.load_cert_chain(tls.cert_path, tls.key_path)
    server = make_server(
        "127.0.0.1",
        port,
        app,
        threaded=True,
        ssl_context=ssl_context,
        request_handler=_QuietRequestHandler if quiet else None,
    )
    return RunningServer(server, "https" if tls else "http")

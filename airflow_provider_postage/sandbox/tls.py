"""A local certificate authority for the sandbox's HTTPS (``SandboxServer(tls=True)``), made with ``trustme``.

One CA and one server certificate (for ``127.0.0.1``, ``localhost`` and ``::1``) per process, made on
first use and written as PEM files to a private temporary directory that is removed at exit.
``trustme`` is only imported here, when TLS is asked for.
"""

from __future__ import annotations

import atexit
import shutil
import ssl
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SERVER_NAMES", "TLSMaterial", "client_ssl_context", "tls_material", "write_ca"]

#: The identities the server certificate is valid for.
SERVER_NAMES = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class TLSMaterial:
    """PEM files of the process's sandbox CA and of the server certificate it issued."""

    directory: Path
    ca_path: Path  # the CA certificate: what clients trust
    cert_path: Path  # the server certificate chain
    key_path: Path  # the server private key


_lock = threading.Lock()
_material: TLSMaterial | None = None


def tls_material() -> TLSMaterial:
    """The process's CA and server certificate, made (and written) on the first call."""
    global _material
    with _lock:
        if _material is None:
            try:
                import trustme
            except ImportError as exc:  # pragma: no cover - trustme is a dependency of the sandbox extra
                raise RuntimeError("the sandbox's TLS needs the 'trustme' package (pip install trustme)") from exc
            ca = trustme.CA(organization_name="postage-sandbox", organization_unit_name="local test CA")
            cert = ca.issue_cert(*SERVER_NAMES)
            directory = Path(tempfile.mkdtemp(prefix="postage-sandbox-tls-"))
            atexit.register(shutil.rmtree, directory, True)
            material = TLSMaterial(
                directory=directory,
                ca_path=directory / "ca.pem",
                cert_path=directory / "server.pem",
                key_path=directory / "server.key",
            )
            ca.cert_pem.write_to_path(str(material.ca_path))
            cert.private_key_pem.write_to_path(str(material.key_path))
            for index, blob in enumerate(cert.cert_chain_pems):
                blob.write_to_path(str(material.cert_path), append=index > 0)
            _material = material
        return _material


def write_ca(directory: str | Path) -> Path:
    """Copy the CA certificate to ``directory/ca.pem`` (directory created if needed); returns its path."""
    target_dir = Path(directory)
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / "ca.pem"
    shutil.copyfile(tls_material().ca_path, target)
    return target


def client_ssl_context() -> ssl.SSLContext:
    """A client context that trusts the sandbox CA (and only it), with hostname checking."""
    return ssl.create_default_context(cafile=str(tls_material().ca_path))

"""The TLS context of a client: its CA (or the system trust store) and client certificate.

Built and checked once, when the client is configured: a CA, certificate or key file that is
missing, unreadable, not PEM or passphrase-protected is a setting to fix, reported at once
with the setting and the file named, not a connection error retried until a deadline.
Every endpoint of the client shares the context, so nothing from requests' own CA bundle
(certifi) or the environment (REQUESTS_CA_BUNDLE) takes part in verification.
"""

from __future__ import annotations

import ssl

from controller.storage.errors import InvalidSettings


def tls_context(ca_cert: str | None, cert: str | None, key: str | None) -> ssl.SSLContext:
    """A verifying client context; raises `InvalidSettings` naming the setting and file."""
    if bool(cert) != bool(key):
        raise InvalidSettings(
            "a client certificate needs its private key: give both ETCD_CERT (cert) and "
            "ETCD_KEY (key), or neither"
        )
    if ca_cert:
        _check_pem("ETCD_CA_CERT (ca_cert)", ca_cert)
    if cert and key:
        _check_pem("ETCD_CERT (cert)", cert)
        _check_pem("ETCD_KEY (key)", key, private_key=True)
    try:
        # Without a CA file this loads the system trust store, not requests' bundled one.
        context = ssl.create_default_context(cafile=ca_cert or None)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise InvalidSettings(
            f"ETCD_CA_CERT (ca_cert) file {ca_cert!r} holds no usable CA certificate: {exc}"
        ) from None
    if cert and key:
        try:
            # An empty passphrase: OpenSSL must never prompt on the terminal for one.
            context.load_cert_chain(cert, key, password="")
        except (OSError, ValueError) as exc:
            raise InvalidSettings(
                f"ETCD_CERT (cert) file {cert!r} and ETCD_KEY (key) file {key!r} are not a "
                f"usable certificate and matching private key: {exc}"
            ) from None
    return context


def _check_pem(setting: str, path: str, *, private_key: bool = False) -> None:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise InvalidSettings(
            f"{setting} file {path!r} cannot be read: {exc.strerror or exc}"
        ) from None
    if b"-----BEGIN " not in data:
        raise InvalidSettings(f"{setting} file {path!r} is not PEM (no '-----BEGIN' line)")
    if private_key and b"ENCRYPTED" in data:
        raise InvalidSettings(
            f"{setting} file {path!r} is passphrase-protected; give an unencrypted key "
            "(protect it with file permissions instead)"
        )

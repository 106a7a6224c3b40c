"""The registry client's basic auth and TLS trust, from settings (unit tier: a small HTTPS server of the
test's own, with a CA and certificate made by openssl, stands in for a registry that demands both; the
registry's own API is tested against Apicurio in test_registry.py)."""

from __future__ import annotations

import base64
import json
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pydantic import SecretStr

from pipeline.config import Settings
from pipeline.serde import RegistryUnavailable
from pipeline.serde.registry import shared_registry
from pipeline.serde.store import shared_store

USER, PASSWORD = "reg-user", "reg-pass-31f1"
pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the test's certificates")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """(ca.pem, server.pem, server.key), EC keys (milliseconds), the server named 127.0.0.1."""
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key", cwd=folder)
    _openssl(
        "req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=test-ca", "-days", "2", "-out", "ca.pem", cwd=folder
    )
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "server.key", cwd=folder)
    _openssl("req", "-new", "-key", "server.key", "-subj", "/CN=127.0.0.1", "-out", "server.csr", cwd=folder)
    (folder / "ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-extfile", "ext", "-out", "server.pem", cwd=folder,
    )  # fmt: skip
    return folder / "ca.pem", folder / "server.pem", folder / "server.key"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, list[str]]]:
    """(https URL, CA file, the Authorization headers it received); schema id 1 is the result schema."""
    folder = tmp_path_factory.mktemp("registry-tls")
    ca, cert, key = _certificates(folder)
    text = shared_store(Settings().schemas_dir).get("inference_result").text
    seen: list[str] = []
    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the http.server API names it
            auth = self.headers.get("Authorization", "")
            seen.append(auth)
            if auth != expected:
                self._send(401, {"error_code": 40101, "message": "Unauthorized"})
            elif self.path.startswith("/schemas/ids/1"):
                self._send(200, {"schema": text, "schemaType": "AVRO"})
            else:
                self._send(404, {"error_code": 40403, "message": "Schema not found"})

        def _send(self, code: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", ca, seen
    finally:
        server.shutdown()
        server.server_close()


def test_basic_auth_and_the_ca_come_from_settings(registry: tuple[str, Path, list[str]]) -> None:
    url, ca, seen = registry
    settings = Settings(
        schema_registry_url=url,
        schema_registry_username=USER,
        schema_registry_password=SecretStr(PASSWORD),
        schema_registry_ca_location=str(ca),
    )
    assert '"InferenceResult"' in shared_registry(settings).text_for(1)
    assert seen[-1].startswith("Basic ")


def test_user_info_in_the_url_is_sent_as_basic_auth_and_never_shown(registry: tuple[str, Path, list[str]]) -> None:
    url, ca, _seen = registry
    with_userinfo = url.replace("https://", f"https://{USER}:{PASSWORD}@")
    settings = Settings(schema_registry_url=with_userinfo, schema_registry_ca_location=str(ca))
    assert '"InferenceResult"' in shared_registry(settings).text_for(1)
    wrong = Settings(
        schema_registry_url=url.replace("https://", f"https://{USER}:wrong-pass-77@"),
        schema_registry_ca_location=str(ca),
    )
    with pytest.raises(RegistryUnavailable) as refused:
        shared_registry(wrong).text_for(1)
    assert "wrong-pass-77" not in str(refused.value) and "401" in str(refused.value)


def test_a_registry_certificate_the_ca_does_not_sign_is_refused(registry: tuple[str, Path, list[str]]) -> None:
    url, _ca, _seen = registry
    settings = Settings(
        schema_registry_url=url, schema_registry_username=USER, schema_registry_password=SecretStr(PASSWORD)
    )  # the system's CAs do not know the test's CA
    with pytest.raises(RegistryUnavailable) as refused:
        shared_registry(settings).text_for(1)
    assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value) or "certificate verify failed" in str(refused.value)

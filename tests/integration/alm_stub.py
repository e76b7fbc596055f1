"""A local HTTPS stand-in for the vendor's Automated Licence Manager (ALM) and
for licence URLs, as pytest fixtures.

Everything is made at test time with python3-cryptography: a throwaway CA and
a server certificate for 127.0.0.1/localhost, a second CA nobody trusts, a
certificate for the wrong host name, and ES256 signing keys. The stub listens
on 127.0.0.1 only and answers from a script of responses; it records every
request it receives."""
import base64
import datetime
import http.server
import json
import socket
import ssl
import threading
import time
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

# ---- keys, certificates and tokens -----------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class SigningKey:
    """An ES256 key the way the vendor would hold one."""

    def __init__(self, kid=None):
        self.kid = kid
        self.private = ec.generate_private_key(ec.SECP256R1())

    def public_pem(self) -> str:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def private_pem(self) -> str:
        return self.private.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()).decode()

    def thumbprint(self) -> str:
        """RFC 7638 JWK thumbprint."""
        nums = self.private.public_key().public_numbers()
        jwk = json.dumps({"crv": "P-256", "kty": "EC",
                          "x": b64url(nums.x.to_bytes(32, "big")),
                          "y": b64url(nums.y.to_bytes(32, "big"))},
                         separators=(",", ":"), sort_keys=True)
        digest = hashes.Hash(hashes.SHA256())
        digest.update(jwk.encode())
        return b64url(digest.finalize())

    def sign(self, claims: dict, kid="default", header=None) -> str:
        """A JWS compact token. kid="default" uses the key's own kid."""
        hdr = {"alg": "ES256", "typ": "JWT"}
        if kid == "default":
            kid = self.kid
        if kid is not None:
            hdr["kid"] = kid
        if header:
            hdr.update(header)
        signing_input = (b64url(json.dumps(hdr, separators=(",", ":")).encode()) + "." +
                         b64url(json.dumps(claims, separators=(",", ":")).encode()))
        der = self.private.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return signing_input + "." + b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def claims(days_from_now=365, not_before_days=-1, deployment=None, sub="acme-42", users=25,
           modules=("dashboard", "reports"), expires_in_seconds=None):
    now = int(time.time())
    exp = now + expires_in_seconds if expires_in_seconds is not None else now + int(days_from_now * 86400)
    c = {"sub": sub, "iat": now - 3600, "nbf": now + int(not_before_days * 86400), "exp": exp,
         "users": users, "modules": list(modules)}
    if deployment is not None:
        c["deployment"] = deployment
    return c


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path: Path, key):
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


class CA:
    def __init__(self, directory: Path, name: str):
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.utcnow()
        self.cert = (x509.CertificateBuilder()
                     .subject_name(_name(name)).issuer_name(_name(name))
                     .public_key(self.key.public_key())
                     .serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(days=1))
                     .not_valid_after(now + datetime.timedelta(days=30))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                                  key_encipherment=False, data_encipherment=False,
                                                  key_agreement=False, key_cert_sign=True,
                                                  crl_sign=True, encipher_only=False,
                                                  decipher_only=False), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.cert_file = directory / f"{name}.pem"
        self.cert_file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def server_cert(self, directory: Path, name: str, dns_names, ips):
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.utcnow()
        sans = [x509.DNSName(d) for d in dns_names] + [x509.IPAddress(IPv4Address(i)) for i in ips]
        cert = (x509.CertificateBuilder()
                .subject_name(_name(name)).issuer_name(self.cert.subject)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=30))
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                               critical=False)
                .sign(self.key, hashes.SHA256()))
        cert_file = directory / f"{name}.crt"
        key_file = directory / f"{name}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key_file, key)
        return cert_file, key_file


class PKI:
    """The throwaway certificates and vendor keys of one test session."""

    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        self.dir = directory
        self.ca = CA(directory, "test-ca")
        self.rogue_ca = CA(directory, "rogue-ca")
        self.good = self.ca.server_cert(directory, "alm", ["localhost"], ["127.0.0.1"])
        self.untrusted = self.rogue_ca.server_cert(directory, "alm-rogue", ["localhost"], ["127.0.0.1"])
        self.wrong_host = self.ca.server_cert(directory, "alm-wrong-host", ["wrong.example"], [])
        self.vendor = SigningKey(kid="vendor-1")
        self.vendor2 = SigningKey(kid="vendor-2")
        self.stranger = SigningKey(kid="vendor-1")  # claims to be vendor-1, is not
        # The key set as a deployment configures it: labelled PEM blocks.
        self.public_keys = (f"kid: vendor-1\n{self.vendor.public_pem()}"
                            f"kid: vendor-2\n{self.vendor2.public_pem()}")
        self.ca_file = str(self.ca.cert_file)

    def secrets(self):
        """Strings that must never appear in logs, errors or status files."""
        return [self.vendor.private_pem(), self.vendor2.private_pem()]


# ---- the stub server --------------------------------------------------------

HANG = object()  # a response that never comes


class Response:
    def __init__(self, status=200, body=b"", content_type="application/json", headers=None):
        self.status = status
        self.headers = headers or {}
        self.body = body if isinstance(body, bytes) else body.encode()
        self.content_type = content_type


def licence_response(token):
    return Response(200, json.dumps({"licence": token}))


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet
        pass

    def _serve(self):
        stub = self.server.stub
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        stub.requests.append({"method": self.command, "path": self.path,
                              "headers": dict(self.headers), "body": body})
        resp = stub.next_response()
        if resp is HANG:
            stub.stopping.wait(timeout=60)
            self.close_connection = True
            return
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.body)))
        for name, value in resp.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(resp.body)

    do_GET = _serve
    do_POST = _serve


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, stub, context):
        self.stub = stub
        self.context = context
        super().__init__(("127.0.0.1", 0), _Handler)

    def finish_request(self, request, client_address):
        # The TLS handshake runs in the connection's own thread, so a client
        # that gives up half-way does not hold up the others.
        self.stub.connections += 1
        if self.context is not None:
            try:
                request.settimeout(10)
                request = self.context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                self.stub.handshake_failures += 1
                return
        super().finish_request(request, client_address)


class AlmStub:
    """Answers from `responses` in order; the last one repeats."""

    def __init__(self, pki: PKI, cert="good", tls=True):
        self.requests = []
        self.responses = []
        self.handshake_failures = 0  # handshakes the server saw fail
        self.connections = 0  # TCP connections accepted
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        context = None
        if tls:
            cert_file, key_file = {"good": pki.good, "untrusted": pki.untrusted,
                                   "wrong-host": pki.wrong_host}[cert]
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert_file, key_file)
        self.server = _Server(self, context)
        self.port = self.server.server_address[1]
        self.scheme = "https" if tls else "http"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path="/licence"):
        return f"{self.scheme}://localhost:{self.port}{path}"

    def respond(self, *responses):
        with self._lock:
            self.responses = list(responses)
        return self

    def next_response(self):
        with self._lock:
            if not self.responses:
                return Response(500, '{"error":"no response scripted"}')
            if len(self.responses) > 1:
                return self.responses.pop(0)
            return self.responses[0]

    def posts(self):
        return [r for r in self.requests if r["method"] == "POST"]

    def stop(self):
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


def closed_port():
    """A loopback port nothing listens on."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return PKI(tmp_path_factory.mktemp("licence-pki"))


@pytest.fixture
def alm_stub(pki):
    """Factory: alm_stub(cert="good"|"untrusted"|"wrong-host", tls=True)."""
    stubs = []

    def make(cert="good", tls=True):
        stub = AlmStub(pki, cert=cert, tls=tls)
        stubs.append(stub)
        return stub

    yield make
    for s in stubs:
        s.stop()

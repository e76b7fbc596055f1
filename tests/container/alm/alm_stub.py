#!/usr/bin/env python3
"""A stand-in for the vendor's Automated Licence Manager (ALM), for the demo
and the container tests. Standard library and the openssl command only.

  alm_stub.py pki DIR              make a throwaway CA, a server certificate for
                                   127.0.0.1/localhost and an ES256 signing key
  alm_stub.py serve DIR [PORT]     HTTPS on 127.0.0.1:PORT (default 8443):
                                   POST any path {"customer_key", "deployment", ...}
                                   -> 200 {"licence": "<ES256 JWS>"}; the key
                                   "rejected-key" -> 401; GET /healthz -> 200
  alm_stub.py sign DIR [--sub S] [--days N] [--nbf-days N] [--deployment D]
                                   print an offline licence signed with DIR's key

DIR then holds ca.pem (the CA to trust: PI_ALM_CA_FILE) and licence-public-key.pem
(the key to verify licences with: PI_LICENCE_PUBLIC_KEY_FILE). Use the name
localhost in URLs: mbedTLS 2.28 does not match IP addresses in certificates. Customer keys are
never printed: the log names a digest of the key only.
"""
import argparse
import base64
import hashlib
import http.server
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time

KID = "alm-stub-1"
REJECTED_KEY = "rejected-key"


def openssl(*args, stdin=None):
    return subprocess.run(["openssl", *args], input=stdin, check=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE).stdout


def make_pki(d):
    """Creates the CA, server certificate and signing key once (idempotent)."""
    os.makedirs(d, exist_ok=True)
    p = lambda name: os.path.join(d, name)
    if os.path.exists(p("licence-public-key.pem")):
        return
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", p("ca.key"), "-out", p("ca.pem"), "-days", "30",
            "-subj", "/CN=pi-agent test ALM CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", *ec, "-keyout", p("server.key"), "-out", p("server.csr"),
            "-subj", "/CN=localhost")
    with tempfile.NamedTemporaryFile("w", suffix=".ext", delete=False) as ext:
        ext.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                  "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
    try:
        openssl("x509", "-req", "-in", p("server.csr"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"),
                "-CAcreateserial", "-out", p("server.pem"), "-days", "30", "-extfile", ext.name)
    finally:
        os.unlink(ext.name)
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", p("signing.key"))
    pub = openssl("ec", "-in", p("signing.key"), "-pubout")
    tmp = p("licence-public-key.pem.tmp")
    with open(tmp, "wb") as f:
        # pi-agent picks the key by the token's kid: name the block.
        f.write(f"kid: {KID}\n".encode() + pub)
    os.rename(tmp, p("licence-public-key.pem"))  # last: it marks the set complete
    for name in ("ca.key", "server.key", "signing.key"):
        os.chmod(p(name), 0o600)
    for name in ("ca.pem", "licence-public-key.pem"):
        os.chmod(p(name), 0o644)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def der_to_raw(der):
    """ECDSA-Sig-Value (DER SEQUENCE of two INTEGERs) -> r||s, 32 bytes each (RFC 7518 3.4)."""
    assert der[0] == 0x30
    i = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7F)
    out = b""
    for _ in range(2):
        assert der[i] == 0x02
        n = der[i + 1]
        v = der[i + 2:i + 2 + n].lstrip(b"\x00")
        out += v.rjust(32, b"\x00")
        i += 2 + n
    return out


def sign_token(d, claims):
    header = {"alg": "ES256", "typ": "JWT", "kid": KID}
    signing_input = (b64url(json.dumps(header, separators=(",", ":")).encode()) + "." +
                     b64url(json.dumps(claims, separators=(",", ":")).encode()))
    der = openssl("dgst", "-sha256", "-sign", os.path.join(d, "signing.key"),
                  stdin=signing_input.encode())
    return signing_input + "." + b64url(der_to_raw(der))


def claims_for(subject, days=365, nbf_days=0, deployment=None):
    now = int(time.time())
    c = {"sub": subject, "iat": now, "nbf": now + nbf_days * 86400, "exp": now + days * 86400,
         "users": 25, "modules": ["dashboard", "reports"]}
    if deployment:
        c["deployment"] = deployment
    return c


def key_digest(key):
    return hashlib.sha256(key.encode()).hexdigest()[:12]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    pki = None

    def log_message(self, fmt, *args):  # one line per request, no secrets
        sys.stdout.write("alm-stub: " + (fmt % args) + "\n")
        sys.stdout.flush()

    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/healthz":
            self.reply(200, {"status": "ok"})
        else:
            self.reply(404, {"error": "not found"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        try:
            req = json.loads(self.rfile.read(length) or b"{}")
            key = req["customer_key"]
            if not isinstance(key, str) or not key:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            self.reply(400, {"error": "expected JSON with customer_key"})
            return
        sys.stdout.write(f"alm-stub: licence request for key sha256:{key_digest(key)} "
                         f"deployment={req.get('deployment')!r} agent={req.get('agent')!r}\n")
        if key == REJECTED_KEY:
            self.reply(401, {"error": "unknown customer key"})
            return
        claims = claims_for("stub-customer-" + key_digest(key),
                            deployment=req.get("deployment") or None)
        self.reply(200, {"licence": sign_token(self.pki, claims)})


def serve(d, port):
    make_pki(d)
    Handler.pki = d
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(d, "server.pem"), os.path.join(d, "server.key"))
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print(f"alm-stub: listening on https://127.0.0.1:{port}/", flush=True)
    server.serve_forever()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("pki").add_argument("dir")
    s = sub.add_parser("serve")
    s.add_argument("dir")
    s.add_argument("port", nargs="?", type=int, default=int(os.environ.get("ALM_PORT", "8443")))
    g = sub.add_parser("sign")
    g.add_argument("dir")
    g.add_argument("--sub", default="offline-customer")
    g.add_argument("--days", type=int, default=365)
    g.add_argument("--nbf-days", type=int, default=0)
    g.add_argument("--deployment")
    a = ap.parse_args()
    if a.cmd == "pki":
        make_pki(a.dir)
    elif a.cmd == "serve":
        serve(a.dir, a.port)
    else:
        make_pki(a.dir)
        print(sign_token(a.dir, claims_for(a.sub, a.days, a.nbf_days, a.deployment)))


if __name__ == "__main__":
    main()

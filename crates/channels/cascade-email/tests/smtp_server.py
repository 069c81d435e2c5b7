#!/usr/bin/env python3
"""A real SMTP server on loopback for the email adapter's tests (aiosmtpd).

Every message it accepts is written to DIR/<n>.json, parsed by Python's own MIME parser:
envelope, headers, the text and HTML bodies, and each attachment's bytes (base64), plus whether
the session was encrypted and which session (connection) carried it.

Behaviour, by address:
  RCPT nobody@...   -> 550 5.1.1 (no such mailbox)
  RCPT busy@...     -> 451 4.3.0 (try again later)
  DATA containing "REJECT-ME" -> 554 5.6.0 (content refused)
  DATA containing "HANG-UP" -> 250, then the server closes the connection

Usage: smtp_server.py DIR [--tls none|starttls|implicit] [--auth USER:PASSWORD]
Prints "READY <port> <ca.pem or ->" on stdout once it listens; stops when stdin closes.
"""

import argparse
import asyncio
import base64
import email
import email.policy
import itertools
import json
import logging
import os
import socket
import ssl
import subprocess
import sys
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def certificates(directory):
    """A throwaway CA and a certificate for 127.0.0.1/localhost signed by it."""
    ca_key, ca = os.path.join(directory, "ca.key"), os.path.join(directory, "ca.pem")
    key, csr, cert = (os.path.join(directory, n) for n in ("server.key", "server.csr", "server.pem"))
    ext = os.path.join(directory, "server.ext")
    quiet = {"check": True, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key,
                    "-out", ca, "-days", "2", "-subj", "/CN=cascade test CA"], **quiet)
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
                    "-subj", "/CN=localhost"], **quiet)
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n")
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key,
                    "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext], **quiet)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return ca, context


class Handler:
    def __init__(self, directory):
        self.directory = directory
        self.count = itertools.count(1)
        self.sessions = {}

    def session_number(self, session):
        return self.sessions.setdefault(id(session), len(self.sessions) + 1)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        if local == "nobody":
            return "550 5.1.1 <%s>: no such mailbox" % address
        if local == "busy":
            return "451 4.3.0 mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        if b"REJECT-ME" in raw:
            return "554 5.6.0 message content refused"
        if b"HANG-UP" in raw:
            asyncio.get_running_loop().call_later(0.1, server.transport.close)
        message = email.message_from_bytes(raw, policy=email.policy.default)
        text = html = None
        attachments = []
        for part in message.walk():
            if part.is_multipart():
                continue
            if part.get_content_disposition() == "attachment":
                attachments.append({
                    "filename": part.get_filename(),
                    "content_type": part.get_content_type(),
                    "base64": base64.b64encode(part.get_payload(decode=True)).decode(),
                })
            elif part.get_content_type() == "text/plain" and text is None:
                text = part.get_content()
            elif part.get_content_type() == "text/html" and html is None:
                html = part.get_content()
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "headers": {k.lower(): str(v) for k, v in message.items()},
            "text": text,
            "html": html,
            "attachments": attachments,
            "encrypted": session.ssl is not None
            or server.transport.get_extra_info("ssl_object") is not None,
            "authenticated": bool(session.authenticated),
            "session": self.session_number(session),
        }
        path = os.path.join(self.directory, "%d.json" % next(self.count))
        with open(path + ".tmp", "w") as f:
            json.dump(record, f)
        os.replace(path + ".tmp", path)
        return "250 2.0.0 OK: queued"


class Authenticator:
    def __init__(self, user, password):
        self.user, self.password = user.encode(), password.encode()

    def __call__(self, server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and \
            auth_data.login == self.user and auth_data.password == self.password
        return AuthResult(success=ok, handled=False)


class TestController(Controller):
    def __init__(self, handler, port, starttls, auth, **kwargs):
        self.starttls_context, self.auth = starttls, auth
        super().__init__(handler, hostname="127.0.0.1", port=port, **kwargs)

    def factory(self):
        options = {"tls_context": self.starttls_context, "auth_require_tls": False}
        if self.auth:
            options.update(authenticator=Authenticator(*self.auth), auth_required=True)
        return SMTP(self.handler, **options)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    parser.add_argument("--tls", choices=["none", "starttls", "implicit"], default="none")
    parser.add_argument("--auth")
    args = parser.parse_args()
    ca, context = certificates(args.dir) if args.tls != "none" else ("-", None)
    auth = args.auth.split(":", 1) if args.auth else None
    port = free_port()
    controller = TestController(
        Handler(args.dir), port,
        starttls=context if args.tls == "starttls" else None,
        auth=auth,
        ssl_context=context if args.tls == "implicit" else None,
    )
    controller.start()
    print("READY %d %s" % (port, ca), flush=True)
    sys.stdin.read()
    controller.stop()


if __name__ == "__main__":
    main()

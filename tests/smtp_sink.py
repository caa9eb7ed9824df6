#!/usr/bin/env python3
"""An SMTP sink for ferry's tests that can be told to refuse.

Listens on 127.0.0.1 (--port, 0 for any free port), prints the port on stdout once it
listens, and appends one JSON line per accepted message to --out:
{"from", "to", "message_id", "subject", "data", "auth"}.

  --tempfail ADDR:N   answer RCPT TO:<ADDR> with 451 the first N times, then accept
  --reject ADDR       answer RCPT TO:<ADDR> with 550 always
  --auth USER:PASS    require AUTH (PLAIN or LOGIN) with these credentials (no TLS: tests)
  --out -             count only (for benchmarks)
"""
import argparse
import asyncio
import email
import email.policy
import json
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Sink:
    def __init__(self, out, tempfail, reject):
        self.out = None if out == "-" else open(out, "a", buffering=1)
        self.tempfail = tempfail
        self.reject = reject
        self.accepted = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        key = address.lower()
        if key in self.reject:
            return f"550 5.1.1 <{address}>: Recipient address rejected: mailbox unavailable"
        if self.tempfail.get(key, 0) > 0:
            self.tempfail[key] -= 1
            return f"451 4.7.1 <{address}>: Recipient address deferred: try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        self.accepted += 1
        if self.out is not None:
            msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
            login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
            self.out.write(json.dumps({
                "from": envelope.mail_from,
                "to": envelope.rcpt_tos,
                "message_id": msg["Message-ID"],
                "subject": msg["Subject"],
                "data": envelope.original_content.decode("utf-8", "replace"),
                "auth": login,
            }) + "\n")
        return f"250 2.0.0 Ok: queued as {self.accepted}"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--tempfail", action="append", default=[])
    p.add_argument("--reject", action="append", default=[])
    p.add_argument("--auth")
    a = p.parse_args()
    tempfail = {}
    for t in a.tempfail:
        addr, n = t.rsplit(":", 1)
        tempfail[addr.lower()] = int(n)
    handler = Sink(a.out, tempfail, {r.lower() for r in a.reject})
    options = {"hostname": "sink.test", "ident": "ferry test sink"}
    if a.auth:
        user, password = a.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (isinstance(auth_data, LoginPassword)
                  and auth_data.login.decode() == user and auth_data.password.decode() == password)
            return AuthResult(success=ok, handled=False, auth_data=auth_data)

        options.update(authenticator=authenticator, auth_required=True, auth_require_tls=False)
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(
        loop.create_server(lambda: SMTP(handler, **options), host="127.0.0.1", port=a.port))
    print(server.sockets[0].getsockname()[1], flush=True)
    try:
        loop.run_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())

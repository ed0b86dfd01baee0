#!/usr/bin/env python3
"""fulfil_receiver.py — a fulfilment service for the tests of HTTP fulfilment.

A threaded HTTP/1.1 server (keep-alive) on 127.0.0.1 that answers each POSTed
order according to its customer_id, and records every request it gets as one
JSON line in LOG: the headers orderd sent, the body, whether the Standard
Webhooks signature verified (webhook_verify.py, with the secrets of
--secrets), the connection's client port (to see keep-alive reuse), and how
many requests were being answered when it came, itself included (in_flight).

customer_id decides the answer:
  ok...          200 {"shipment_id": "S-<order_id>"}
  text...        200 with a body that is not JSON
  reject...      422 {"error": "unknown customer"}
  retry...       503 with Retry-After: 1 the first time an order comes, then 200
  limited...     429 with Retry-After: 1 the first time, then 200
  fail...        500 "boom" always
  slow<MS>...    sleeps MS milliseconds, then 200
  hang...        never answers (until the client gives up)
  redirect...    302 to /elsewhere
  big...         200 with a 200 KiB body

Usage: fulfil_receiver.py PORTFILE LOG [--secrets FILE] [--cert PEM --key PEM]
The chosen port is written to PORTFILE once the server listens.
"""
import argparse
import json
import os
import re
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import webhook_verify  # noqa: E402  (next to this file)

SEEN = {}
SEEN_LOCK = threading.Lock()
IN_FLIGHT = [0]
LOG_LOCK = threading.Lock()


def times_seen(order_id):
    with SEEN_LOCK:
        SEEN[order_id] = SEEN.get(order_id, 0) + 1
        return SEEN[order_id]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fulfil-receiver"

    def log_message(self, fmt, *args):  # quiet
        pass

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def record(self, body, order, verified, in_flight):
        entry = {
            "in_flight": in_flight,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode("utf-8", "replace"),
            "order_id": order.get("order_id"),
            "verified": verified,
            "client_port": self.client_address[1],
            "time": time.time(),
        }
        with LOG_LOCK, open(self.server.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")

    def verify(self, body):
        if not self.server.secrets:
            return None
        h = self.headers
        try:
            return webhook_verify.verify(
                self.server.secrets, h.get("webhook-id", ""), h.get("webhook-timestamp", ""),
                body, h.get("webhook-signature", ""))
        except Exception:  # a malformed header is a failed verification
            return False

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        try:
            order = json.loads(body)
        except ValueError:
            order = {}
        with SEEN_LOCK:
            IN_FLIGHT[0] += 1
            in_flight = IN_FLIGHT[0]
        try:
            self.record(body, order, self.verify(body), in_flight)
            self.answer(order)
        finally:
            with SEEN_LOCK:
                IN_FLIGHT[0] -= 1

    def answer(self, order):
        cid = str(order.get("customer_id", ""))
        oid = str(order.get("order_id", ""))
        if cid.startswith("ok"):
            self.reply(200, json.dumps({"shipment_id": "S-" + oid}).encode(),
                       [("Content-Type", "application/json")])
        elif cid.startswith("text"):
            self.reply(200, b"shipped, thanks")
        elif cid.startswith("reject"):
            self.reply(422, b'{"error": "unknown customer"}',
                       [("Content-Type", "application/json")])
        elif cid.startswith("retry") or cid.startswith("limited"):
            status = 503 if cid.startswith("retry") else 429
            if times_seen(oid) == 1:
                self.reply(status, b"later", [("Retry-After", "1")])
            else:
                self.reply(200, b'{"ok": true}', [("Content-Type", "application/json")])
        elif cid.startswith("fail"):
            self.reply(500, b"boom")
        elif cid.startswith("slow"):
            m = re.match(r"slow(\d+)", cid)
            time.sleep(int(m.group(1)) / 1000.0 if m else 0.05)
            self.reply(200, b'{"slow": true}', [("Content-Type", "application/json")])
        elif cid.startswith("hang"):
            time.sleep(3600)
        elif cid.startswith("redirect"):
            self.reply(302, b"", [("Location", "/elsewhere")])
        elif cid.startswith("big"):
            self.reply(200, b"x" * (200 * 1024))
        else:
            self.reply(400, b"no rule for this customer")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("portfile")
    ap.add_argument("log")
    ap.add_argument("--secrets")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    a = ap.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.log_path = a.log
    srv.secrets = []
    if a.secrets:
        with open(a.secrets, encoding="utf-8") as f:
            srv.secrets = [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]
    if a.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.cert, a.key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    tmp = a.portfile + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(str(srv.server_address[1]))
    os.rename(tmp, a.portfile)
    srv.serve_forever()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""otlp_receiver.py — an OpenTelemetry collector's OTLP/HTTP receiver, for the
tracing tests: it takes what orderd exports and checks it strictly.

  otlp_receiver.py serve PORTFILE LOG [--fail-first N] [--fail-status CODE]
      A threaded HTTP/1.1 server on 127.0.0.1 (keep-alive) answering
      POST /v1/traces. Every request is one JSON line in LOG: its time, path,
      headers, the status answered, the shape errors found, and its spans.
      The body must be OTLP's JSON encoding of an ExportTraceServiceRequest
      (gzip accepted), checked field by field:
        resourceSpans[] > resource.attributes (service.name a string) and
        scopeSpans[] > scope, spans[]; each span: traceId 32 and spanId 16
        lower-case hex digits, not all zero; parentSpanId absent, "" or 16
        hex digits not all zero; name a non-empty string; kind an integer
        1..5; startTimeUnixNano and endTimeUnixNano strings of digits, end >=
        start, within a day of now; attributes [{key, value: {stringValue |
        intValue (digits, as a string or a number) | doubleValue | boolValue}}];
        status {code 0..2, message} when present.
      A valid request is answered 200 {} (the first N ones with CODE, default
      503, and Retry-After: 1, when --fail-first N); one with shape errors
      400, so the exporter counts a refusal. The chosen port is written to
      PORTFILE once the server listens.

  otlp_receiver.py spans LOG      every span received, one compact JSON line
      each: {"trace","span","parent","name","kind","start","end","status",
      "message","service","attrs":{key: value}}, in the order received
  otlp_receiver.py errors LOG     every shape error, one a line; exit 1 if any
  otlp_receiver.py requests LOG   how many requests came, and how many of
      them were answered 200: "N M"
"""
import gzip
import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")
DIGITS = re.compile(r"^[0-9]+$")
DAY_NS = 86400 * 10**9
LOG_LOCK = threading.Lock()
COUNT_LOCK = threading.Lock()


# ---- the shape of an export ---------------------------------------------------

def check_id(errors, where, value, pattern, what):
    if not isinstance(value, str) or not pattern.match(value):
        errors.append(f"{where}: {what} {value!r} is not lower-case hex of the right length")
    elif set(value) == {"0"}:
        errors.append(f"{where}: {what} is all zero")


def check_time(errors, where, span, key, now_ns):
    v = span.get(key)
    if not isinstance(v, str) or not DIGITS.match(v):
        errors.append(f"{where}: {key} {v!r} is not a string of digits")
        return None
    n = int(v)
    if abs(n - now_ns) > DAY_NS:
        errors.append(f"{where}: {key} {v} is not within a day of now")
    return n


def attr_value(errors, where, value):
    if not isinstance(value, dict) or len(value) != 1:
        errors.append(f"{where}: value {value!r} is not an AnyValue with one member")
        return None
    (kind, v), = value.items()
    if kind == "stringValue" and isinstance(v, str):
        return v
    if kind == "intValue" and (isinstance(v, int) and not isinstance(v, bool)
                               or isinstance(v, str) and re.match(r"^-?[0-9]+$", v)):
        return int(v)
    if kind == "doubleValue" and isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if kind == "boolValue" and isinstance(v, bool):
        return v
    errors.append(f"{where}: {kind} {v!r} is not a value of that type")
    return None


def check_attributes(errors, where, attrs):
    out = {}
    if attrs is None:
        return out
    if not isinstance(attrs, list):
        errors.append(f"{where}: attributes is not a list")
        return out
    for i, a in enumerate(attrs):
        w = f"{where}.attributes[{i}]"
        if not isinstance(a, dict) or not isinstance(a.get("key"), str) or not a["key"]:
            errors.append(f"{w}: no key")
            continue
        if a["key"] in out:
            errors.append(f"{w}: {a['key']} twice")
        out[a["key"]] = attr_value(errors, w, a.get("value"))
    return out


def check_span(errors, where, span, service, now_ns):
    if not isinstance(span, dict):
        errors.append(f"{where}: not an object")
        return None
    check_id(errors, where, span.get("traceId"), HEX32, "traceId")
    check_id(errors, where, span.get("spanId"), HEX16, "spanId")
    parent = span.get("parentSpanId", "")
    if parent != "":
        check_id(errors, where, parent, HEX16, "parentSpanId")
    name = span.get("name")
    if not isinstance(name, str) or not name:
        errors.append(f"{where}: name {name!r} is not a non-empty string")
    kind = span.get("kind")
    if not isinstance(kind, int) or isinstance(kind, bool) or not 1 <= kind <= 5:
        errors.append(f"{where}: kind {kind!r} is not an integer from 1 to 5")
    start = check_time(errors, where, span, "startTimeUnixNano", now_ns)
    end = check_time(errors, where, span, "endTimeUnixNano", now_ns)
    if start is not None and end is not None and end < start:
        errors.append(f"{where}: ends ({end}) before it starts ({start})")
    attrs = check_attributes(errors, where, span.get("attributes"))
    status = span.get("status", {})
    code, message = 0, ""
    if not isinstance(status, dict):
        errors.append(f"{where}: status is not an object")
    else:
        code = status.get("code", 0)
        message = status.get("message", "")
        if not isinstance(code, int) or isinstance(code, bool) or not 0 <= code <= 2:
            errors.append(f"{where}: status.code {code!r} is not 0, 1 or 2")
        if not isinstance(message, str):
            errors.append(f"{where}: status.message is not a string")
    return {"trace": span.get("traceId"), "span": span.get("spanId"), "parent": parent,
            "name": name, "kind": kind, "start": start, "end": end, "status": code,
            "message": message, "service": service, "attrs": attrs}


def check_export(body):
    """(spans, errors) of one ExportTraceServiceRequest."""
    errors, spans = [], []
    now_ns = time.time_ns()
    try:
        doc = json.loads(body)
    except ValueError as e:
        return [], [f"the body is not JSON: {e}"]
    if not isinstance(doc, dict) or not isinstance(doc.get("resourceSpans"), list) \
            or not doc["resourceSpans"]:
        return [], ["no resourceSpans list"]
    for r, rs in enumerate(doc["resourceSpans"]):
        where = f"resourceSpans[{r}]"
        if not isinstance(rs, dict):
            errors.append(f"{where}: not an object")
            continue
        resource = rs.get("resource")
        rattrs = check_attributes(errors, where + ".resource",
                                  resource.get("attributes") if isinstance(resource, dict) else None)
        service = rattrs.get("service.name")
        if not isinstance(service, str) or not service:
            errors.append(f"{where}: resource has no service.name string")
        scopes = rs.get("scopeSpans")
        if not isinstance(scopes, list) or not scopes:
            errors.append(f"{where}: no scopeSpans list")
            continue
        for s, ss in enumerate(scopes):
            w = f"{where}.scopeSpans[{s}]"
            if not isinstance(ss, dict) or not isinstance(ss.get("spans"), list):
                errors.append(f"{w}: no spans list")
                continue
            scope = ss.get("scope", {})
            if not isinstance(scope, dict) or not isinstance(scope.get("name", ""), str):
                errors.append(f"{w}: scope is not an InstrumentationScope")
            for i, span in enumerate(ss["spans"]):
                flat = check_span(errors, f"{w}.spans[{i}]", span, service, now_ns)
                if flat is not None:
                    spans.append(flat)
    return spans, errors


# ---- the server -----------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "otlp-receiver"

    def log_message(self, fmt, *args):  # quiet
        pass

    def reply(self, status, body=b"{}", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        errors = []
        if self.path != "/v1/traces":
            errors.append(f"POST to {self.path}, not /v1/traces")
        ctype = self.headers.get("Content-Type", "")
        if ctype.split(";")[0].strip().lower() != "application/json":
            errors.append(f"Content-Type {ctype!r}, not application/json")
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            try:
                body = gzip.decompress(body)
            except OSError as e:
                errors.append(f"Content-Encoding gzip, but: {e}")
        spans, shape = check_export(body)
        errors += shape
        with COUNT_LOCK:
            self.server.seen += 1
            failing = self.server.seen <= self.server.fail_first
        status = 400 if errors else (self.server.fail_status if failing else 200)
        entry = {"time": time.time(), "path": self.path,
                 "headers": {k.lower(): v for k, v in self.headers.items()},
                 "status": status, "errors": errors, "spans": spans}
        with LOG_LOCK, open(self.server.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry, separators=(",", ":")) + "\n")
        if status == 400:
            self.reply(400, json.dumps({"error": errors[:5]}).encode())
        elif status != 200:
            self.reply(status, b'{"error":"try later"}', [("Retry-After", "1")])
        else:
            self.reply(200)


def serve(args):
    portfile, log = args[0], args[1]
    fail_first, fail_status = 0, 503
    rest = args[2:]
    while rest:
        if rest[0] == "--fail-first":
            fail_first = int(rest[1])
        elif rest[0] == "--fail-status":
            fail_status = int(rest[1])
        else:
            sys.exit(f"unknown option {rest[0]}")
        rest = rest[2:]
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.log_path = log
    srv.seen = 0
    srv.fail_first = fail_first
    srv.fail_status = fail_status
    open(log, "a", encoding="utf-8").close()
    tmp = portfile + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(str(srv.server_address[1]))
    os.rename(tmp, portfile)
    srv.serve_forever()


# ---- queries ------------------------------------------------------------------------

def entries(log):
    with open(log, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "serve":
        serve(args)
    elif cmd == "spans":
        for e in entries(args[0]):
            if e["status"] == 200:
                for s in e["spans"]:
                    print(json.dumps(s, separators=(",", ":")))
    elif cmd == "errors":
        bad = [err for e in entries(args[0]) for err in e["errors"]]
        for err in bad:
            print(err)
        sys.exit(1 if bad else 0)
    elif cmd == "requests":
        all_ = list(entries(args[0]))
        print(len(all_), sum(1 for e in all_ if e["status"] == 200))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()

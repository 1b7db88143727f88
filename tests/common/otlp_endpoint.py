"""An OTLP/HTTP logs endpoint for the tests (tests/common/otlp.rs).

Requests are decoded with the OpenTelemetry project's own generated classes (PyPI
`opentelemetry-proto`) and protobuf's JSON parser, never with the exporter's code: binary
protobuf or OTLP/JSON, gzip or not, as the OTLP/HTTP specification describes them. Answers are
what a collector answers: an ExportLogsServiceResponse in the request's encoding, or a
google.rpc.Status with the status the test scripted.

  POST /v1/logs            an export request
  GET  /records            every stored record, flattened to JSON (one object per record)
  GET  /requests           every request: content type and encoding, record count, status
  POST /admin/fail         {"status": 503, "times": 2, "retryAfter": "1", "message": "…"}
  POST /admin/partial      {"reject": 2, "message": "…"}: the next request's last 2 records
                           are not stored and the answer says so in partialSuccess
  GET  /                   200, for readiness
"""

import argparse
import base64
import gzip
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2

LOCK = threading.Lock()
RECORDS = []
REQUESTS = []
FAULTS = []  # scripted answers, consumed one per request
PARTIAL = []  # scripted partial successes


def any_value(v):
    """An AnyValue as plain JSON."""
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "string_value":
        return v.string_value
    if kind == "bool_value":
        return v.bool_value
    if kind == "int_value":
        return v.int_value
    if kind == "double_value":
        return v.double_value
    if kind == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    raise ValueError(f"unknown AnyValue {kind}")


def attributes(kvs):
    out = {}
    for kv in kvs:
        if kv.key in out:
            raise ValueError(f"attribute {kv.key} twice")
        out[kv.key] = any_value(kv.value)
    return out


def flatten(req):
    records = []
    for rl in req.resource_logs:
        resource = attributes(rl.resource.attributes)
        for sl in rl.scope_logs:
            for r in sl.log_records:
                records.append(
                    {
                        "resource": resource,
                        "scope": {"name": sl.scope.name, "version": sl.scope.version},
                        "timeUnixNano": r.time_unix_nano,
                        "observedTimeUnixNano": r.observed_time_unix_nano,
                        "severityNumber": r.severity_number,
                        "severityText": r.severity_text,
                        "body": any_value(r.body) if r.HasField("body") else None,
                        "attributes": attributes(r.attributes),
                    }
                )
    return records


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def status_body(code, message, as_json):
    """A google.rpc.Status (code = 1, message = 2)."""
    if as_json:
        return json.dumps({"code": code, "message": message}).encode()
    m = message.encode()
    return b"\x08" + varint(code) + b"\x12" + varint(len(m)) + m


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def answer(self, status, body, content_type, headers=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def read_body(self):
        n = int(self.headers.get("Content-Length", "0"))
        return self.rfile.read(n)

    def do_GET(self):
        with LOCK:
            if self.path == "/records":
                body = json.dumps(RECORDS).encode()
            elif self.path == "/requests":
                body = json.dumps(REQUESTS).encode()
            else:
                body = b"{}"
        self.answer(200, body, "application/json")

    def do_POST(self):
        raw = self.read_body()
        if self.path == "/admin/fail":
            f = json.loads(raw)
            with LOCK:
                FAULTS.extend([f] * f.get("times", 1))
            return self.answer(200, b"{}", "application/json")
        if self.path == "/admin/partial":
            with LOCK:
                PARTIAL.append(json.loads(raw))
            return self.answer(200, b"{}", "application/json")
        if self.path != "/v1/logs":
            return self.answer(404, b"not found", "text/plain")
        content_type = self.headers.get("Content-Type", "")
        encoding = self.headers.get("Content-Encoding")
        as_json = content_type.startswith("application/json")
        reply_type = "application/json" if as_json else "application/x-protobuf"
        entry = {
            "at": time.time(),
            "contentType": content_type,
            "contentEncoding": encoding,
            "headers": {k.lower(): v for k, v in self.headers.items()},
        }
        try:
            if encoding == "gzip":
                raw = gzip.decompress(raw)
            elif encoding not in (None, "identity"):
                raise ValueError(f"unsupported Content-Encoding {encoding}")
            req = logs_service_pb2.ExportLogsServiceRequest()
            if as_json:
                json_format.Parse(raw.decode(), req)
            elif content_type == "application/x-protobuf":
                req.ParseFromString(raw)
            else:
                raise ValueError(f"unsupported Content-Type {content_type!r}")
            records = flatten(req)
        except Exception as e:  # a malformed request is the client's fault: 400
            entry.update(status=400, records=0, error=str(e))
            with LOCK:
                REQUESTS.append(entry)
            return self.answer(400, status_body(3, str(e), as_json), reply_type)
        with LOCK:
            fault = FAULTS.pop(0) if FAULTS else None
            partial = PARTIAL.pop(0) if (PARTIAL and not fault) else None
        if fault:
            entry.update(status=fault["status"], records=len(records))
            with LOCK:
                REQUESTS.append(entry)
            headers = []
            if "retryAfter" in fault:
                headers.append(("Retry-After", fault["retryAfter"]))
            body = status_body(14, fault.get("message", "scripted failure"), as_json)
            return self.answer(fault["status"], body, reply_type, headers)
        resp = logs_service_pb2.ExportLogsServiceResponse()
        if partial:
            n = min(partial["reject"], len(records))
            records = records[: len(records) - n]
            resp.partial_success.rejected_log_records = n
            resp.partial_success.error_message = partial.get("message", "")
        entry.update(status=200, records=len(records))
        with LOCK:
            RECORDS.extend(records)
            REQUESTS.append(entry)
        if as_json:
            body = json_format.MessageToJson(resp).encode()
        else:
            body = resp.SerializeToString()
        self.answer(200, body, reply_type)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()

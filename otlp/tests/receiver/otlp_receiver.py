#!/usr/bin/env python3
"""A real OTLP metrics receiver for surge-otlp's tests.

Serves OTLP/HTTP protobuf (POST any path, gzip or plain) and OTLP/gRPC (MetricsService/Export) with
the official `opentelemetry-proto` package's generated code and `grpcio`, decodes every request, and
appends one JSON line per data point (and one per request) to --out, so the Rust test can check every
point: values, timestamps, attributes, resource attributes, temporality and flags.

    python otlp_receiver.py --out points.jsonl [--tls-cert C --tls-key K] [--fail-first N]

Prints `READY http=<port> grpc=<port>` once both listen. --fail-first N answers the first N requests
of each transport with HTTP 503 + Retry-After: 0 / gRPC UNAVAILABLE (for the retry tests).
"""

import argparse
import gzip
import json
import ssl
import sys
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as ms
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as ms_grpc

LOCK = threading.Lock()
OUT = None
FAILURES = {"http": 0, "grpc": 0}
FAIL_FIRST = 0


def any_value(v):
    kind = v.WhichOneof("value")
    return None if kind is None else getattr(v, kind)


def attrs(kvs):
    return {kv.key: any_value(kv.value) for kv in kvs}


def num(p):
    kind = p.WhichOneof("value")
    return None if kind is None else getattr(p, kind)


def points(req):
    """Every data point of an ExportMetricsServiceRequest as a flat dict."""
    for rm in req.resource_metrics:
        resource = attrs(rm.resource.attributes)
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                data = getattr(m, kind)
                base = {
                    "resource": resource,
                    "scope": sm.scope.name,
                    "metric": m.name,
                    "type": kind,
                }
                if kind in ("sum", "histogram"):
                    base["temporality"] = data.aggregation_temporality
                if kind == "sum":
                    base["monotonic"] = data.is_monotonic
                for p in data.data_points:
                    d = dict(base)
                    d.update(
                        attributes=attrs(p.attributes),
                        start=p.start_time_unix_nano,
                        time=p.time_unix_nano,
                        flags=p.flags,
                    )
                    if kind in ("gauge", "sum"):
                        v = num(p)
                        # JSON has no NaN; keep it readable.
                        d["value"] = "NaN" if isinstance(v, float) and v != v else v
                    elif kind == "histogram":
                        d.update(
                            count=p.count,
                            sum=p.sum if p.HasField("sum") else None,
                            bounds=list(p.explicit_bounds),
                            buckets=list(p.bucket_counts),
                        )
                    elif kind == "summary":
                        d.update(
                            count=p.count,
                            sum=p.sum,
                            quantiles=[[q.quantile, q.value] for q in p.quantile_values],
                        )
                    yield d


def record(transport, req, headers):
    n = 0
    with LOCK:
        for d in points(req):
            d["transport"] = transport
            OUT.write(json.dumps(d) + "\n")
            n += 1
        OUT.write(json.dumps({"request": transport, "points": n, "headers": headers}) + "\n")
        OUT.flush()


def should_fail(transport):
    with LOCK:
        if FAILURES[transport] < FAIL_FIRST:
            FAILURES[transport] += 1
            return True
    return False


class HttpHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if should_fail("http"):
            self.send_response(503)
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        req = ms.ExportMetricsServiceRequest()
        try:
            req.ParseFromString(body)
        except Exception as e:  # a body that does not decode fails the test through the 400
            self.send_response(400)
            msg = str(e).encode()
            self.send_header("Content-Length", str(len(msg)))
            self.end_headers()
            self.wfile.write(msg)
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        headers["path"] = self.path
        record("http", req, headers)
        out = ms.ExportMetricsServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


class MetricsService(ms_grpc.MetricsServiceServicer):
    def Export(self, request, context):
        if should_fail("grpc"):
            context.abort(grpc.StatusCode.UNAVAILABLE, "injected failure")
        headers = {k: v for k, v in context.invocation_metadata()}
        record("grpc", request, headers)
        return ms.ExportMetricsServiceResponse()


def main():
    global OUT, FAIL_FIRST
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--fail-first", type=int, default=0)
    ap.add_argument(
        "--grpc-identity-only",
        action="store_true",
        help="refuse compressed gRPC requests (UNIMPLEMENTED), to prove a client compresses",
    )
    a = ap.parse_args()
    FAIL_FIRST = a.fail_first
    OUT = open(a.out, "a", encoding="utf-8")

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), HttpHandler)
    options = [("grpc.compression_enabled_algorithms_bitset", 1)] if a.grpc_identity_only else []
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=options)
    ms_grpc.add_MetricsServiceServicer_to_server(MetricsService(), server)
    if a.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.tls_cert, a.tls_key)
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
        with open(a.tls_cert, "rb") as c, open(a.tls_key, "rb") as k:
            creds = grpc.ssl_server_credentials([(k.read(), c.read())])
        grpc_port = server.add_secure_port("127.0.0.1:0", creds)
    else:
        grpc_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    print(f"READY http={httpd.server_address[1]} grpc={grpc_port}", flush=True)
    # Until the test closes stdin (or is killed).
    sys.stdin.read()
    server.stop(0)
    httpd.shutdown()


if __name__ == "__main__":
    main()

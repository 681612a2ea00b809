#!/usr/bin/env python3
"""Cold start and peak memory of each Lambda binary, under a Lambda Runtime API of our
own (the HTTP contract every custom runtime speaks: GET .../invocation/next, POST
.../invocation/<id>/response or /error, POST .../init/error).

For each function of shared/routes.json: spawn its binary with the environment the CDK
app gives it (only what its `access` names), serve its fixture event from
scripts/fixtures, and time

- init: process start to the runtime's first GET /next (ports built, runtime ready);
- first: process start to the first event's response (the cold invocation);
- warm: the median of the next invocations' round trips.

Peak memory is the process's maximum resident set size (wait4's ru_maxrss). Each cold
start is repeated `--runs` times; the median is printed as a Markdown table.

    scripts/cold_start.py --bin-dir DIR --endpoint URL --prefix P [--runs 5] [--warm 20]
"""

import argparse
import json
import os
import queue
import signal
import statistics
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROUTES = ROOT / "shared" / "routes.json"
FIXTURES = ROOT / "scripts" / "fixtures"
API = "/2018-06-01/runtime"


class Runtime:
    """One function's Runtime API: hands out queued events, collects the answers."""

    def __init__(self):
        self.events = queue.Queue()
        self.answers = queue.Queue()
        self.first_next = None
        self.init_error = None
        server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        server.daemon_threads = True
        self.server = server
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def _handler(self):
        runtime = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_):
                pass

            def do_GET(self):
                if self.path != f"{API}/invocation/next":
                    self.send_error(404)
                    return
                if runtime.first_next is None:
                    runtime.first_next = time.monotonic()
                body = runtime.events.get()
                if body is None:  # the run is over: hold the runtime until it is killed
                    time.sleep(3600)
                    return
                request_id = str(uuid.uuid4())
                deadline = int((time.time() + 30) * 1000)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
                self.send_header("Lambda-Runtime-Deadline-Ms", str(deadline))
                self.send_header(
                    "Lambda-Runtime-Invoked-Function-Arn",
                    "arn:aws:lambda:us-east-1:123456789012:function:cold-start",
                )
                self.send_header("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.path == f"{API}/init/error":
                    runtime.init_error = body.decode(errors="replace")
                    runtime.answers.put(("init-error", body, time.monotonic()))
                elif self.path.endswith("/response"):
                    runtime.answers.put(("ok", body, time.monotonic()))
                elif self.path.endswith("/error"):
                    runtime.answers.put(("error", body, time.monotonic()))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler

    def close(self):
        self.server.shutdown()


def function_env(access, prefix, endpoint):
    """The variables the CDK app sets for this access (infra/cdk/lib/functions-stack.ts)."""
    env = {"RUST_LOG": "warn"}
    if access.get("twins"):
        env["MIR_TWINS_TABLE"] = f"{prefix}-twins"
    if access.get("schemas"):
        env["MIR_SCHEMAS_TABLE"] = f"{prefix}-schemas"
    if access.get("commands"):
        env["MIR_COMMANDS_TABLE"] = f"{prefix}-commands"
        env["MIR_COMMANDS_TTL_DAYS"] = "7"
    if access.get("events"):
        env["MIR_EVENTS_TABLE"] = f"{prefix}-events"
        env["MIR_EVENTS_TTL_DAYS"] = "30"
    if access.get("telemetry"):
        env["MIR_TELEMETRY_SINK"] = "dynamodb"
        env["MIR_TELEMETRY_TABLE"] = f"{prefix}-telemetry"
    # The IoT data endpoint is AWS_ENDPOINT_URL here (moto serves iot-data too).
    env["AWS_ENDPOINT_URL"] = endpoint
    return env


def fixture(function):
    for name in (f"{function}-event.json", f"{function}-request.json"):
        path = FIXTURES / name
        if path.exists():
            return path.read_bytes()
    raise SystemExit(f"no fixture for {function} in {FIXTURES}")


def outcome(kind, body):
    """A short word for the answer: ok, refused, http <status>, error."""
    if kind != "ok":
        return kind
    try:
        doc = json.loads(body)
    except ValueError:
        return "ok"
    if isinstance(doc, dict) and "statusCode" in doc:
        return f"http {doc['statusCode']}"
    if isinstance(doc, dict) and "refused" in doc:
        return "refused"
    return "ok"


def one_cold_start(binary, env, event, warm):
    runtime = Runtime()
    for _ in range(1 + warm):
        runtime.events.put(event)
    full_env = dict(os.environ)
    full_env.update(env)
    full_env.update(
        {
            "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{runtime.port}",
            "AWS_LAMBDA_FUNCTION_NAME": binary.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_STREAM_NAME": "cold-start",
            "AWS_LAMBDA_LOG_GROUP_NAME": "cold-start",
        }
    )
    start = time.monotonic()
    proc = subprocess.Popen(
        [str(binary)], env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        kind, body, at = runtime.answers.get(timeout=60)
    except queue.Empty:
        proc.kill()
        raise SystemExit(f"{binary.name}: no answer within 60 s")
    if kind == "init-error":
        proc.kill()
        raise SystemExit(f"{binary.name}: init failed: {body!r}")
    first = at - start
    init = (runtime.first_next or at) - start
    result = outcome(kind, body)
    rounds = []
    last = at
    for _ in range(warm):
        kind, body, at = runtime.answers.get(timeout=60)
        rounds.append(at - last)
        last = at
    runtime.events.put(None)
    proc.send_signal(signal.SIGKILL)
    _, _, usage = os.wait4(proc.pid, 0)
    proc.returncode = -9
    runtime.close()
    return {
        "init": init,
        "first": first,
        "warm": statistics.median(rounds) if rounds else None,
        "rss_kb": usage.ru_maxrss,
        "result": result,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True, type=Path)
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--warm", type=int, default=20)
    args = ap.parse_args()
    routes = json.loads(ROUTES.read_text())["functions"]
    print("| function | binary | init (ms) | first event (ms) | warm (ms) | peak RSS (MB) | answer |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for f in routes:
        binary = args.bin_dir / f["crate"]
        env = function_env(f["access"], args.prefix, args.endpoint)
        event = fixture(f["name"])
        runs = [one_cold_start(binary, env, event, args.warm) for _ in range(args.runs)]
        med = lambda k: statistics.median(r[k] for r in runs)  # noqa: E731
        size_mb = binary.stat().st_size / 1e6
        warm = med("warm") * 1000 if runs[0]["warm"] is not None else float("nan")
        print(
            f"| {f['name']} | {size_mb:.1f} MB | {med('init') * 1000:.1f} | {med('first') * 1000:.1f} "
            f"| {warm:.1f} | {med('rss_kb') / 1024:.1f} | {runs[0]['result']} |",
            flush=True,
        )


if __name__ == "__main__":
    main()

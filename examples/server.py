"""A tiny HTTP service for the pm3 quick start: each instance binds 3000 + PM3_INSTANCE_ID."""
import http.server
import os
import sys

instance = int(os.environ.get("PM3_INSTANCE_ID", "0"))
count = int(os.environ.get("PM3_INSTANCE_COUNT", "1"))
port = int(os.environ.get("BASE_PORT", "3000")) + instance


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"hello from instance {instance} of {count} (pid {os.getpid()})\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print(f"instance {instance}: {self.command} {self.path}", flush=True)


print(f"instance {instance}/{count} listening on 127.0.0.1:{port}", flush=True)
try:
    http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
except OSError as e:
    print(f"cannot listen on port {port}: {e}", file=sys.stderr, flush=True)
    sys.exit(1)

"""A tiny HTTP service for the pm3 quick start: each instance binds its own PORT (pm3 gives
instance i the value 3000 + i through `increment_var`) and answers /health for its health check."""
import http.server
import os
import sys

instance = int(os.environ.get("PM3_INSTANCE_ID", "0"))
count = int(os.environ.get("PM3_INSTANCE_COUNT", "1"))
port = int(os.environ.get("PORT", "3000"))


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            body = b"ok\n"
        else:
            body = f"hello from instance {instance} of {count} (pid {os.getpid()})\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        if self.path != "/health":
            print(f"instance {instance}: {self.command} {self.path}", flush=True)


print(f"instance {instance}/{count} listening on 127.0.0.1:{port}", flush=True)
try:
    http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
except OSError as e:
    print(f"cannot listen on port {port}: {e}", file=sys.stderr, flush=True)
    sys.exit(1)

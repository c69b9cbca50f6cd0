"""A web app that takes its listening socket from pm3 (the systemd protocol).

pm3 binds `listen` once and hands the socket to every instance as descriptor 3, with
LISTEN_FDS (how many), LISTEN_PID (this process's pid) and LISTEN_FDNAMES. Started any other
way, the app binds 127.0.0.1:$PORT itself (with SO_REUSEPORT when REUSEPORT=1, so that several
copies can share the port the usual way).

On SIGTERM it drains: it stops accepting, finishes the requests in flight, then exits. The
connections still waiting on the shared socket are accepted by the other instances.
"""

import os
import signal
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def inherited():
    """Descriptor 3, when pm3 (or systemd) passed it to this very process."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    if int(os.environ.get("LISTEN_FDS", "0")) < 1:
        return None
    return socket.socket(fileno=3)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self):
        body = ("hello from pid %d\n" % os.getpid()).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    # Requests in flight finish before the process exits.
    daemon_threads = False
    block_on_close = True


sock = inherited()
if sock is not None:
    server = Server(("127.0.0.1", 0), Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    where = "fd 3 (%s)" % os.environ.get("LISTEN_FDNAMES", "?")
else:
    Server.allow_reuse_port = os.environ.get("REUSEPORT") == "1"
    server = Server(("127.0.0.1", int(os.environ.get("PORT", "8080"))), Handler)
    where = "port %s" % os.environ.get("PORT", "8080")
# Several processes wait on the same socket: one that loses the race for a connection must
# not block in accept().
server.socket.setblocking(False)


def drain(signum, frame):
    threading.Thread(target=server.shutdown).start()


signal.signal(signal.SIGTERM, drain)
print("pid %d serving on %s" % (os.getpid(), where), flush=True)
server.serve_forever(poll_interval=0.05)
server.server_close()
print("pid %d drained" % os.getpid(), flush=True)
sys.exit(0)

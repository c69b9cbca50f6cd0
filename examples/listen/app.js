// A Node web app that takes its listening socket from pm3: descriptor 3 (the systemd
// protocol; LISTEN_FDS says how many, LISTEN_PID that they are for this process).
// On SIGTERM it stops accepting, lets the requests in flight finish, and exits.
const http = require("http");

const server = http.createServer((req, res) => {
  res.end(`hello from pid ${process.pid}\n`);
});

const fromPm3 = process.env.LISTEN_PID === String(process.pid) && Number(process.env.LISTEN_FDS) >= 1;
if (fromPm3) {
  server.listen({ fd: 3 }, () => console.log(`pid ${process.pid} serving on fd 3`));
} else {
  const port = Number(process.env.PORT || 8081);
  server.listen(port, "127.0.0.1", () => console.log(`pid ${process.pid} serving on port ${port}`));
}

process.on("SIGTERM", () => {
  server.close(() => process.exit(0));
});

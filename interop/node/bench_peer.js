// The official Node peers of the at-scale benchmarks (benchmarks/_peers.py starts this).
//
//   node bench_peer.js sio PING_INTERVAL_MS   a socket.io server (its defaults otherwise)
//   node bench_peer.js ws PING_INTERVAL_MS    a plain `ws` WebSocket server (the library
//                                             socket.io itself runs on)
//
// Prints the port (127.0.0.1, ephemeral) on the first line of stdout, serves until stdin closes.
// Both do what the Python peers do:
//   sio: every client joins the room "room" on connect; "echo"(text, ack) acknowledges with
//        text; "burst"(n, text) broadcasts the event "msg"(text) n times to "room";
//   ws:  echoes every message; pings every client each PING_INTERVAL_MS (`ws` has no
//        keepalive of its own: this is the loop its README recommends), 0 = no pings.
const http = require("http");

const kind = process.argv[2];
const pingInterval = Number(process.argv[3] || 25000);
const httpServer = http.createServer();

if (kind === "sio") {
  const { Server } = require("socket.io");
  const io = new Server(httpServer, { pingInterval, pingTimeout: Math.max(20000, pingInterval) });
  io.on("connection", (socket) => {
    socket.join("room");
    socket.on("echo", (text, ack) => { if (typeof ack === "function") ack(text); });
    socket.on("burst", (n, text) => {
      for (let i = 0; i < n; i++) io.to("room").emit("msg", text);
    });
  });
} else if (kind === "ws") {
  const { WebSocketServer } = require("ws");
  const wss = new WebSocketServer({ server: httpServer, perMessageDeflate: false });
  wss.on("connection", (ws) => {
    ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
  if (pingInterval > 0) {
    setInterval(() => { for (const ws of wss.clients) ws.ping(); }, pingInterval);
  }
} else {
  console.error(`usage: node bench_peer.js sio|ws PING_INTERVAL_MS`);
  process.exit(2);
}

httpServer.listen(0, "127.0.0.1", () => {
  process.stdout.write(`${httpServer.address().port}\n`);
});
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();

// The official socket.io server with connectionStateRecovery, driven line by line.
//
//   node recovery_server.js '{"maxDisconnectionDuration": 60000, "skipMiddlewares": true}' [REDIS_URL]
//
// With REDIS_URL the server uses the official @socket.io/redis-streams-adapter there: sessions
// in sio:session:<pid>, the packets in the stream "socket.io", offsets are its entry ids.
//
// stdout: one JSON object per line.  First {"ready": true, "port": N} (127.0.0.1:N).  Then
//   {"middleware": id}                          the io.use() middleware ran
//   {"connection": id, "recovered": bool, "rooms": [...]}   a new socket joins "blue" unless recovered
//   {"disconnect": id, "reason": r}
//   {"order": message}                         each "order" event received; the first copy of
//                                              each message id is not acknowledged (a lost ack),
//                                              the next ones are acknowledged with "ok"
// stdin: {"cmd": "broadcast", "event": "e", "args": [...], "rooms": [...]}  (answers {"sent": n})
//        {"cmd": "exit"}
const http = require("http");
const readline = require("readline");
const { Server } = require("socket.io");

const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

async function main() {
  const recovery = JSON.parse(process.argv[2] || "{}");
  const httpServer = http.createServer();
  const options = { connectionStateRecovery: recovery };
  if (process.argv[3]) {
    const { createClient } = require("redis");
    const { createAdapter } = require("@socket.io/redis-streams-adapter");
    const redisClient = createClient({ url: process.argv[3] });
    await redisClient.connect();
    options.adapter = createAdapter(redisClient);
  }
  const io = new Server(httpServer, options);
  io.use((socket, next) => {
    say({ middleware: socket.id });
    next();
  });
  const seen = new Set();
  io.on("connection", (socket) => {
    if (!socket.recovered) socket.join("blue");
    say({ connection: socket.id, recovered: socket.recovered, rooms: [...socket.rooms] });
    socket.on("disconnect", (reason) => say({ disconnect: socket.id, reason }));
    socket.on("order", (message, callback) => {
      say({ order: message });
      if (!seen.has(message.id)) {
        seen.add(message.id);
        return;   // the first copy: no ack
      }
      if (typeof callback === "function") callback("ok");
    });
  });
  await new Promise((resolve) => httpServer.listen(0, "127.0.0.1", resolve));
  say({ ready: true, port: httpServer.address().port });
  let sent = 0;
  readline.createInterface({ input: process.stdin }).on("line", (line) => {
    const command = JSON.parse(line);
    if (command.cmd === "broadcast") {
      const target = command.rooms && command.rooms.length ? io.to(command.rooms) : io;
      target.emit(command.event, ...command.args);
      say({ sent: ++sent });
    } else if (command.cmd === "exit") {
      io.close();
      process.exit(0);
    }
  });
}

main().catch((err) => {
  say({ error: String(err && err.stack || err) });
  process.exit(1);
});

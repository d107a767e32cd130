// The official socket.io-client, driven line by line, for the recovery and retries interop tests.
//
//   node recovery_client.js http://127.0.0.1:PORT '{"retries": 3, "ackTimeout": 200}'
//
// The second argument is merged into the client options (websocket only, fast reconnection).
// stdout: one JSON object per line:
//   {"connect": id, "recovered": bool}   {"disconnect": reason}   {"connect_error": message}
//   {"event": name, "args": [...]}        every event received (the offset is the last argument)
//   {"ack": n, "err": message|null, "args": [...]}   the answer to the n-th emit command
// stdin: one command per line:
//   {"cmd": "emit", "event": "e", "args": [...]}   emit with an ack callback (err, ...args)
//   {"cmd": "closeEngine"}                          socket.io.engine.close(): a lost connection
//   {"cmd": "exit"}
const readline = require("readline");
const { io } = require("socket.io-client");

const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const url = process.argv[2];
const extra = JSON.parse(process.argv[3] || "{}");
const socket = io(url, {
  transports: ["websocket"],
  reconnectionDelay: 100,
  reconnectionDelayMax: 200,
  randomizationFactor: 0,
  ...extra,
});
socket.on("connect", () => say({ connect: socket.id, recovered: socket.recovered }));
socket.on("disconnect", (reason) => say({ disconnect: reason }));
socket.on("connect_error", (err) => say({ connect_error: err.message }));
socket.onAny((event, ...args) => say({ event, args }));

let emits = 0;
readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const command = JSON.parse(line);
  if (command.cmd === "emit") {
    const n = emits++;
    socket.emit(command.event, ...command.args, (err, ...args) =>
      say({ ack: n, err: err ? err.message : null, args }));
  } else if (command.cmd === "closeEngine") {
    socket.io.engine.close();
  } else if (command.cmd === "exit") {
    socket.close();
    process.exit(0);
  }
});

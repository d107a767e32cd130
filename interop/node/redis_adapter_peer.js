// A Node socket.io server with the official @socket.io/redis-adapter, driven line by line.
//
//   node redis_adapter_peer.js redis://127.0.0.1:PORT
//
// stdout: one JSON object per line.  First {"ready": true, "uid": <adapter uid>, "port": N}
// (the socket.io server listens on 127.0.0.1:N).  {"joined": room, "sid": id} for each join.  Then, for each command read on stdin (one JSON
// object per line), the result; and every event a client started here receives.
//
// Commands:
//   {"cmd": "broadcast", "rooms": [...], "except": [...], "event": "e", "args": [...]}
//   {"cmd": "fetchSockets", "rooms": [...]}
//   {"cmd": "serverSideEmit", "event": "e", "args": [...]}
//   {"cmd": "broadcastWithAck", "rooms": [...], "timeout": ms, "event": "e", "args": [...]}
//   {"cmd": "connectClient", "name": "a", "rooms": [...], "url": u}   a socket.io-client joining
//        rooms (of this server, or of the server at url: auth {"rooms": [...]} asks it to)
//   {"cmd": "serverSideEmitWithAck", "event": "e", "args": [...]}   -> {"serverAcks": [...]}
//   {"cmd": "socketsJoin", "to": [...], "rooms": [...]}  /  "socketsLeave"  /  "disconnectSockets"
//   {"cmd": "exit"}
// A client answers an "ask" event with "<name> got <first arg>".  A server-side event from
// another server prints {"serverSideEvent": e, "args": [...]} and is answered "node says hi".
// Each socket of this server has data {"server": "node"}.
// Binary values travel in JSON as {"$bin": "<hex>"} both ways.
const http = require("http");
const { Server } = require("socket.io");
const { io: connect } = require("socket.io-client");
const { createClient } = require("redis");
const { createAdapter } = require("@socket.io/redis-adapter");

const toJSON = (value) => {
  if (Buffer.isBuffer(value)) return { $bin: value.toString("hex") };
  if (value instanceof ArrayBuffer) return { $bin: Buffer.from(value).toString("hex") };
  if (Array.isArray(value)) return value.map(toJSON);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toJSON(v)]));
  }
  return value;
};
const fromJSON = (value) => {
  if (Array.isArray(value)) return value.map(fromJSON);
  if (value && typeof value === "object") {
    if (typeof value.$bin === "string") return Buffer.from(value.$bin, "hex");
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fromJSON(v)]));
  }
  return value;
};
const say = (obj) => process.stdout.write(JSON.stringify(toJSON(obj)) + "\n");

async function main() {
  const url = process.argv[2];
  const pubClient = createClient({ url });
  const subClient = pubClient.duplicate();
  pubClient.on("error", (err) => say({ error: String(err) }));
  subClient.on("error", (err) => say({ error: String(err) }));
  await Promise.all([pubClient.connect(), subClient.connect()]);

  const httpServer = http.createServer();
  const io = new Server(httpServer, { adapter: createAdapter(pubClient, subClient) });
  io.use((socket, next) => {            // join the rooms the client asked for, before CONNECT
    socket.join(socket.handshake.auth.rooms || []);
    socket.data = { server: "node" };
    next();
  });
  await new Promise((resolve) => httpServer.listen(0, "127.0.0.1", resolve));
  const adapter = io.of("/").adapter;
  adapter.on("join-room", (room, sid) => {   // also joins made on request of another server
    if (room !== sid) say({ joined: room, sid });
  });
  // The adapter subscribes without waiting: wait until Redis counts its subscriptions.
  for (;;) {
    const [, numsub] = await pubClient.sendCommand(["PUBSUB", "NUMSUB", adapter.requestChannel]);
    const numpat = await pubClient.sendCommand(["PUBSUB", "NUMPAT"]);
    if (numsub >= 1 && numpat >= 1) break;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  for (const event of ["hello", "hello-node"]) {   // events from the other servers
    io.on(event, (...args) => {
      const ack = typeof args[args.length - 1] === "function" ? args.pop() : null;
      say({ serverSideEvent: event, args });
      if (ack) ack("node says hi");
    });
  }
  say({ ready: true, uid: adapter.uid, port: httpServer.address().port });

  const clients = [];
  const commands = {
    async broadcast(c) {
      io.to(c.rooms || []).except(c.except || []).emit(c.event, ...fromJSON(c.args || []));
      return { done: "broadcast" };
    },
    async serverSideEmit(c) {
      io.serverSideEmit(c.event, ...fromJSON(c.args || []));
      return { done: "serverSideEmit" };
    },
    async broadcastWithAck(c) {            // an emit that waits for the clients' acks
      io.to(c.rooms || []).timeout(c.timeout).emit(c.event, ...fromJSON(c.args || []),
        (err, responses) => say({ acks: toJSON(responses || []), error_: err && String(err) }));
      return { done: "broadcastWithAck" };
    },
    async fetchSockets(c) {
      const sockets = await io.in(c.rooms || []).fetchSockets();
      return { fetched: sockets.map((s) => ({ id: s.id, rooms: [...s.rooms], data: s.data,
                                              auth: s.handshake.auth })) };
    },
    async serverSideEmitWithAck(c) {
      return { serverAcks: await io.serverSideEmitWithAck(c.event, ...fromJSON(c.args || [])) };
    },
    async socketsJoin(c) {
      io.in(c.to || []).socketsJoin(c.rooms);
      return { done: "socketsJoin" };
    },
    async socketsLeave(c) {
      io.in(c.to || []).socketsLeave(c.rooms);
      return { done: "socketsLeave" };
    },
    async disconnectSockets(c) {
      io.in(c.to || []).disconnectSockets(!!c.close);
      return { done: "disconnectSockets" };
    },
    async connectClient(c) {
      const client = connect(c.url || `http://127.0.0.1:${httpServer.address().port}`, {
        auth: { rooms: c.rooms || [] }, transports: ["websocket"], reconnection: false,
      });
      clients.push(client);
      client.onAny((event, ...args) => {
        if (typeof args[args.length - 1] === "function") args.pop();   // the ack callback
        say({ client: c.name, event, args });
      });
      client.on("ask", (arg, ack) => ack(`${c.name} got ${arg}`));
      client.on("disconnect", (reason) => say({ client: c.name, disconnected: reason }));
      await new Promise((resolve, reject) => {
        client.on("connect", resolve);
        client.on("connect_error", reject);
      });
      return { connected: c.name, sid: client.id };
    },
    async exit() {
      clients.forEach((client) => client.close());
      io.close();
      await Promise.allSettled([pubClient.quit(), subClient.quit()]);
      say({ done: "exit" });
      process.exit(0);
    },
  };

  let buffered = "";
  process.stdin.setEncoding("utf8");
  process.stdin.on("data", async (chunk) => {
    buffered += chunk;
    let newline;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      const command = JSON.parse(line);
      try {
        say(await commands[command.cmd](command));
      } catch (err) {
        say({ error: String(err), cmd: command.cmd });
      }
    }
  });
  process.stdin.on("end", () => commands.exit());
}

main().catch((err) => {
  say({ error: String(err && err.stack || err) });
  process.exit(1);
});

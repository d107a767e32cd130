// Prints the versions of the Node packages lablib's interop tests run against (one JSON line).
const names = ["socket.io", "socket.io-client", "@socket.io/redis-adapter", "redis"];
const versions = {};
for (const name of names) {
  versions[name] = require(`${name}/package.json`).version;
}
versions.node = process.versions.node;
console.log(JSON.stringify(versions));

// node-consul (the `consul` npm package) against the registry's Consul read API.
//
//   node check.js HOST:PORT SERVICE
//
// Prints one JSON object per line as it goes, then exits 0 (1 with an
// {"event": "error"} line on any failure):
//   {"event": "services", ...}  catalog.service.list()
//   {"event": "nodes", ...}     catalog.service.nodes(SERVICE)
//   {"event": "health", ...}    health.service({service, passing: true}) and its X-Consul-Index
//   {"event": "blocked", ...}   the same call with that index and wait "10s", just sent
//   {"event": "woken", ...}     its answer, once something changed (or the wait ran out)
// tests/api/consul/test_node_consul.py registers a tool after "blocked".
//
// node-consul hands back the response (and so its headers) when the call's
// `ctx` is an EventEmitter with `includeResponse` set: the call then resolves
// to [response, body], and Consul.parseQueryMeta(response).LastIndex is the
// X-Consul-Index. Its own Watch reads the index this way.
"use strict";

const { EventEmitter } = require("node:events");
const Consul = require("consul");

const WAIT = "10s";
const TIMEOUT_MS = 30000; // per request: above the wait and its jitter (10 s / 16)

function emit(event, fields) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");
}

async function withMeta(call, opts) {
  const ctx = new EventEmitter();
  ctx.includeResponse = true;
  const [response, body] = await call({ ...opts, ctx, timeout: TIMEOUT_MS });
  return { meta: Consul.parseQueryMeta(response), body };
}

function instance(entry) {
  return {
    ID: entry.Service.ID,
    Address: entry.Service.Address,
    Port: entry.Service.Port,
    Checks: entry.Checks.map((c) => [c.CheckID, c.Status]),
  };
}

async function main() {
  const [address, service] = process.argv.slice(2);
  if (!address || !service) throw new Error("usage: node check.js HOST:PORT SERVICE");
  const split = address.lastIndexOf(":");
  const consul = new Consul({
    host: address.slice(0, split),
    port: Number(address.slice(split + 1)),
  });
  try {
    const services = await withMeta((o) => consul.catalog.service.list(o), {});
    emit("services", { index: services.meta.LastIndex, services: services.body });

    const nodes = await withMeta((o) => consul.catalog.service.nodes(o), { service });
    emit("nodes", {
      index: nodes.meta.LastIndex,
      nodes: nodes.body.map((n) => ({
        Node: n.Node,
        ServiceID: n.ServiceID,
        ServiceName: n.ServiceName,
        ServiceAddress: n.ServiceAddress,
        ServicePort: n.ServicePort,
        ServiceTags: n.ServiceTags,
      })),
    });

    const health = (o) => consul.health.service(o);
    const first = await withMeta(health, { service, passing: true });
    emit("health", {
      index: first.meta.LastIndex,
      knownLeader: first.meta.KnownLeader,
      lastContact: first.meta.LastContact,
      entries: first.body.map(instance),
    });

    const started = process.hrtime.bigint();
    const blocked = withMeta(health, { service, passing: true, index: first.meta.LastIndex, wait: WAIT });
    emit("blocked", { index: first.meta.LastIndex, wait: WAIT });
    const woken = await blocked;
    emit("woken", {
      index: woken.meta.LastIndex,
      elapsedMs: Number(process.hrtime.bigint() - started) / 1e6,
      entries: woken.body.map(instance),
    });
  } finally {
    consul.destroy(); // its keep-alive agent would hold the process open
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    emit("error", { message: String((err && err.message) || err), status: err && err.statusCode });
    process.exit(1);
  },
);

// make bench's fan-out driver: `node driver.mjs '<config JSON>'` (bench/fanout.py runs it).
//
// Opens `clients` WebSocket connections with the graphql-ws client (graphql-transport-ws),
// each subscribed to `orderBook(symbol, depth)`, and one plain Redis connection subscribed
// to the channel the matching worker publishes the book's deltas on. A delta's publish time
// is when that Redis connection hears it; its receipt time is when a client gets the DELTA
// with the same `sequence`. Both are read from this process's one clock (performance.now),
// so no clock skew enters; the price is that a driver busy with its clients hears Redis late
// too, which hides a little latency rather than adding any.
//
// Talks to the harness by lines: on stdout JSON lines {"event": "ready" | "result", ...};
// on stdin `start` (publishes from now on are measured; answered by {"event": "started"}),
// `stop` (none after the next 0.5 s is; wait until every client has the last one, or
// `drain_s`, then report and exit).

import net from "node:net";
import readline from "node:readline";
import { performance } from "node:perf_hooks";
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const config = JSON.parse(process.argv[2]);
const {
  url,
  redis_url: redisUrl,
  channel,
  symbol,
  depth,
  clients: count,
  connect_concurrency: concurrency = 50,
  drain_s: drainSeconds = 10,
} = config;

const QUERY = `subscription { orderBook(symbol: ${JSON.stringify(symbol)}, depth: ${depth}) {
  type sequence bids { price quantity orders } asks { price quantity orders } } }`;

const emit = (event, fields) => process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");

// --- Redis: just enough RESP for SUBSCRIBE and its pushes -----------------------------------

function redisConnection(address) {
  const parsed = new URL(address);
  if (parsed.protocol === "unix:") return { socket: net.createConnection(parsed.pathname) };
  const db = parsed.pathname.replace("/", "");
  return {
    socket: net.createConnection(Number(parsed.port || 6379), parsed.hostname || "127.0.0.1"),
    password: parsed.password ? decodeURIComponent(parsed.password) : null,
    username: parsed.username ? decodeURIComponent(parsed.username) : null,
    db,
  };
}

function command(...args) {
  const parts = args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`);
  return `*${args.length}\r\n${parts.join("")}`;
}

// Parses one RESP value at `at`; returns [value, next offset] or null if incomplete.
function parse(buffer, at) {
  const end = buffer.indexOf("\r\n", at);
  if (end < 0) return null;
  const kind = String.fromCharCode(buffer[at]);
  const line = buffer.toString("utf8", at + 1, end);
  if (kind === "+" || kind === "-" || kind === ":") return [line, end + 2];
  if (kind === "$") {
    const size = Number(line);
    if (size < 0) return [null, end + 2];
    if (buffer.length < end + 2 + size + 2) return null;
    return [buffer.toString("utf8", end + 2, end + 2 + size), end + 2 + size + 2];
  }
  if (kind === "*" || kind === ">") {
    const items = [];
    let next = end + 2;
    for (let i = 0; i < Number(line); i++) {
      const item = parse(buffer, next);
      if (item === null) return null;
      items.push(item[0]);
      next = item[1];
    }
    return [items, next];
  }
  throw new Error(`unexpected RESP ${kind}`);
}

const published = new Map(); // sequence -> publish time (ms), measured window only
let measuring = false;
let lastPublished = 0;
let publishes = 0;

function listenToRedis() {
  return new Promise((resolve, reject) => {
    const { socket, password, username, db } = redisConnection(redisUrl);
    let pending = Buffer.alloc(0);
    socket.on("error", reject);
    socket.on("connect", () => {
      if (password) socket.write(username ? command("AUTH", username, password) : command("AUTH", password));
      if (db) socket.write(command("SELECT", db));
      socket.write(command("SUBSCRIBE", channel));
    });
    socket.on("data", (chunk) => {
      const now = performance.now();
      pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
      let at = 0;
      for (;;) {
        const item = parse(pending, at);
        if (item === null) break;
        at = item[1];
        const value = item[0];
        if (!Array.isArray(value)) continue;
        if (value[0] === "subscribe") resolve(socket);
        if (value[0] !== "message" || !measuring) continue;
        const message = JSON.parse(value[2]);
        for (const level of message.levels || []) {
          published.set(level.sequence, now);
          lastPublished = Math.max(lastPublished, level.sequence);
          publishes += 1;
        }
      }
      pending = pending.subarray(at);
    });
  });
}

// --- the subscribers -------------------------------------------------------------------------

const latencies = []; // ms, one per DELTA received for a measured sequence
const early = []; // [sequence, receipt time] of DELTAs received before Redis was heard
const subscribers = [];

function subscriber() {
  const state = { ready: false, latest: 0, received: 0, snapshots: 0, error: null, client: null };
  return new Promise((resolve) => {
    state.client = createClient({
      url,
      webSocketImpl: WebSocket,
      retryAttempts: 0,
      lazy: false,
      onNonLazyError: (error) => {
        state.error = String(error?.code ?? error?.message ?? error);
        resolve(state);
      },
    });
    state.client.subscribe(
      { query: QUERY },
      {
        next: ({ data, errors }) => {
          const now = performance.now();
          if (errors) {
            state.error = JSON.stringify(errors);
            return;
          }
          const update = data.orderBook;
          if (update.type === "SNAPSHOT") {
            state.snapshots += 1;
            state.latest = Math.max(state.latest, update.sequence);
            if (!state.ready) {
              state.ready = true;
              resolve(state);
            }
            return;
          }
          state.latest = Math.max(state.latest, update.sequence);
          const sent = published.get(update.sequence);
          if (sent !== undefined) {
            latencies.push(now - sent);
            state.received += 1;
          } else if (measuring) {
            early.push([update.sequence, now, state]);
          }
        },
        error: (error) => {
          state.error = String(error?.code ?? error?.message ?? error);
          resolve(state);
        },
        complete: () => resolve(state),
      },
    );
  });
}

async function connectAll() {
  let next = 0;
  async function lane() {
    while (next < count) {
      next += 1;
      subscribers.push(await subscriber());
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, lane));
}

function quantile(sorted, q) {
  if (!sorted.length) return null;
  return sorted[Math.max(1, Math.ceil(q * sorted.length)) - 1];
}

function report(drainedIn) {
  for (const [sequence, at, state] of early) {
    const sent = published.get(sequence);
    if (sent !== undefined) {
      latencies.push(at - sent);
      state.received += 1;
    }
  }
  const sorted = Float64Array.from(latencies).sort();
  const live = subscribers.filter((s) => s.ready && !s.error);
  const expected = published.size * live.length;
  const cpu = process.cpuUsage();
  emit("result", {
    clients: count,
    connected: subscribers.filter((s) => s.ready).length,
    errors: subscribers.filter((s) => s.error).length,
    error_sample: subscribers.find((s) => s.error)?.error ?? null,
    published_updates: published.size,
    published_messages: publishes,
    received_updates: latencies.length,
    received_fraction: expected ? latencies.length / expected : 0,
    // With coalescing a client may skip updates yet be current: who has the last one.
    caught_up_fraction: live.length ? live.filter((s) => s.latest >= lastPublished).length / live.length : 0,
    resync_snapshots: subscribers.reduce((n, s) => n + Math.max(0, s.snapshots - 1), 0),
    latency_ms: sorted.length
      ? {
          p50: quantile(sorted, 0.5),
          p90: quantile(sorted, 0.9),
          p99: quantile(sorted, 0.99),
          "p99.9": quantile(sorted, 0.999),
          max: sorted[sorted.length - 1],
          mean: sorted.reduce((a, b) => a + b, 0) / sorted.length,
        }
      : {},
    drain_s: drainedIn,
    driver_cpu_s: (cpu.user + cpu.system) / 1e6,
  });
}

async function main() {
  const redis = await listenToRedis();
  const connectStarted = performance.now();
  await connectAll();
  emit("ready", {
    connected: subscribers.filter((s) => s.ready).length,
    errors: subscribers.filter((s) => s.error).length,
    error_sample: subscribers.find((s) => s.error)?.error ?? null,
    connect_s: (performance.now() - connectStarted) / 1000,
  });
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (line.trim() === "start") {
      measuring = true;
      emit("started", {});
    }
    if (line.trim() !== "stop") continue;
    // The last publishes may still be on their way from Redis (the harness says stop when
    // the worker has answered, which it does right after publishing): hear them first.
    await new Promise((r) => setTimeout(r, 500));
    measuring = false;
    const stopped = performance.now();
    const live = subscribers.filter((s) => s.ready && !s.error);
    while (performance.now() - stopped < drainSeconds * 1000) {
      if (live.every((s) => s.latest >= lastPublished)) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    report((performance.now() - stopped) / 1000);
    break;
  }
  redis.destroy();
  await Promise.all(subscribers.map((s) => s.client?.dispose()));
  process.exit(0);
}

main().catch((error) => {
  emit("failed", { error: String(error?.stack ?? error) });
  process.exit(1);
});

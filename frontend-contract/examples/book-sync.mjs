// Keeps a depth view of a TradeGraph book in sync, as the README's procedure says, and
// proves every update with the checksum. Node 20: `npm ci && node book-sync.mjs`.
//
//   TRADEGRAPH_URL   ws://127.0.0.1:8000/graphql (default)
//   SYMBOL / DEPTH   BTC-USDT / 10
//   UPDATES          stop after this many updates (default: run until Ctrl-C)
//
// Each update is printed as one JSON line: {type, sequence, checksumOk, bestBid, bestAsk}.
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const url = process.env.TRADEGRAPH_URL ?? "ws://127.0.0.1:8000/graphql";
const symbol = process.env.SYMBOL ?? "BTC-USDT";
const depth = Number(process.env.DEPTH ?? 10);
const stopAfter = Number(process.env.UPDATES ?? Infinity);

// CRC32 (IEEE), as zlib computes it; read as a signed 32-bit integer like the server's.
const TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(text) {
  let crc = 0xffffffff;
  for (const byte of new TextEncoder().encode(text)) crc = TABLE[(crc ^ byte) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) | 0;
}

// The view: price string -> level, per side. Prices are exact decimal strings: compare
// them as numbers only to sort (Number is fine for ordering, never for amounts).
const book = { bids: new Map(), asks: new Map() };
let sequence = null;

function sorted(side) {
  const levels = [...book[side].values()];
  levels.sort((a, b) => (side === "bids" ? Number(b.price) - Number(a.price) : Number(a.price) - Number(b.price)));
  return levels;
}

function checksum() {
  const bids = sorted("bids");
  const asks = sorted("asks");
  const parts = [];
  for (let i = 0; i < Math.max(bids.length, asks.length); i++) {
    if (i < bids.length) parts.push(`${bids[i].price}:${bids[i].quantity}`);
    if (i < asks.length) parts.push(`${asks[i].price}:${asks[i].quantity}`);
  }
  return crc32(parts.join(":"));
}

// Returns false when the client must resubscribe (a missed update or a wrong copy).
function apply(update) {
  if (update.type === "SNAPSHOT" || update.type === "RESYNC") {
    for (const side of ["bids", "asks"]) book[side] = new Map(update[side].map((l) => [l.price, l]));
  } else {
    if (update.prevSequence !== sequence) return false;
    for (const side of ["bids", "asks"]) {
      for (const level of update[side]) {
        if (level.quantity === "0") book[side].delete(level.price);
        else book[side].set(level.price, level);
      }
    }
  }
  sequence = update.sequence;
  return checksum() === update.checksum;
}

const query = `subscription($symbol: String!, $depth: Int!) {
  orderBook(symbol: $symbol, depth: $depth) {
    type sequence prevSequence checksum
    bids { price quantity orders } asks { price quantity orders } } }`;

const client = createClient({ url, webSocketImpl: WebSocket, lazy: false });
let seen = 0;
let failed = false;
await new Promise((resolve, reject) => {
  const stop = client.subscribe(
    { query, variables: { symbol, depth } },
    {
      next({ data, errors }) {
        if (errors) return reject(new Error(JSON.stringify(errors)));
        const update = data.orderBook;
        const checksumOk = apply(update);
        if (!checksumOk) failed = true; // a real client resubscribes here
        const [bid] = sorted("bids");
        const [ask] = sorted("asks");
        console.log(JSON.stringify({ type: update.type, sequence, checksumOk, bestBid: bid?.price ?? null, bestAsk: ask?.price ?? null }));
        if (++seen >= stopAfter) {
          stop();
          resolve();
        }
      },
      error: reject,
      complete: resolve,
    },
  );
});
await client.dispose();
process.exit(failed ? 1 : 0);

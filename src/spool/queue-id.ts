/**
 * Queue ids: 18 characters of Crockford base32 (upper case, no I, L, O, U).
 *
 *   TTTTTTTTTT RRRRRRRR
 *   10 chars: milliseconds since the epoch (50 bits, good until year 37 000)
 *    8 chars: 40 random bits
 *
 * Fixed width, so lexicographic order is time order (to the millisecond).
 * Within one process, ids minted in the same millisecond increment the random
 * part instead of drawing a new one (as ULID's monotonic mode does), so they
 * are unique and sort in minting order; across processes, 40 random bits per
 * millisecond make a collision negligible.
 */
import { randomBytes } from "node:crypto";
import type { QueueId } from "./spool.ts";

const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const TIME_CHARS = 10;
const RANDOM_CHARS = 8;
const RANDOM_BYTES = 5; // 40 bits = 8 base32 chars
const RANDOM_LIMIT = 2 ** 40;
const TIME_LIMIT = 2 ** 50;

const QUEUE_ID_PATTERN = /^[0-9A-HJKMNP-TV-Z]{18}$/;

let lastTime = -1;
let lastRandom = 0;

function encode(value: number, chars: number): string {
  let out = "";
  for (let i = 0; i < chars; i++) {
    out = ALPHABET[value % 32] + out;
    value = Math.floor(value / 32);
  }
  return out;
}

/** A new queue id for a message arriving at `now` (ms since epoch). */
export function newQueueId(
  now: number = Date.now(),
  random: (size: number) => Buffer = randomBytes,
): QueueId {
  const time = Math.floor(now);
  if (!(time >= 0 && time < TIME_LIMIT)) throw new RangeError(`queue id time out of range: ${now}`);
  let rand: number;
  if (time === lastTime && lastRandom + 1 < RANDOM_LIMIT) {
    rand = lastRandom + 1;
  } else {
    rand = random(RANDOM_BYTES).readUIntBE(0, RANDOM_BYTES);
  }
  lastTime = time;
  lastRandom = rand;
  return encode(time, TIME_CHARS) + encode(rand, RANDOM_CHARS);
}

/**
 * True when `s` is exactly a well-formed queue id. Anything that names a file
 * from outside (CLI, admin API) must pass this first: it admits no "/", "."
 * or anything else that could leave the spool directory.
 */
export function isQueueId(s: unknown): s is QueueId {
  return typeof s === "string" && QUEUE_ID_PATTERN.test(s);
}

/** The arrival time (ms since epoch) encoded in a queue id. */
export function queueIdTime(id: QueueId): number {
  return queueIdKey(id).hi;
}

/**
 * A queue id as two numbers that compare as the id does: its 10 time
 * characters (< 2^50) and its 8 random characters (< 2^40), both exact in a
 * double. The journal spool keeps a million ids in typed arrays this way
 * (16 bytes each instead of a string of ~40).
 */
export interface QueueIdKey {
  readonly hi: number;
  readonly lo: number;
}

export function queueIdKey(id: QueueId): QueueIdKey {
  let hi = 0;
  for (let i = 0; i < TIME_CHARS; i++) hi = hi * 32 + ALPHABET.indexOf(id[i]);
  let lo = 0;
  for (let i = TIME_CHARS; i < TIME_CHARS + RANDOM_CHARS; i++) lo = lo * 32 + ALPHABET.indexOf(id[i]);
  return { hi, lo };
}

/** Each ASCII code's value in ALPHABET, -1 for a character that is not in it. */
const VALUE = new Int8Array(128).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) VALUE[ALPHABET.charCodeAt(i)] = i;

/**
 * The key of the queue id written in ASCII at `bytes[at…at+18]`, into
 * `out[0]` (hi) and `out[1]` (lo), without making a string (recovery reads a
 * million of them); false when those bytes are not a queue id.
 */
export function queueIdKeyAt(bytes: Uint8Array, at: number, out: Float64Array): boolean {
  let hi = 0;
  for (let i = 0; i < TIME_CHARS; i++) {
    const v = VALUE[bytes[at + i]] ?? -1;
    if (v < 0) return false;
    hi = hi * 32 + v;
  }
  let lo = 0;
  for (let i = TIME_CHARS; i < TIME_CHARS + RANDOM_CHARS; i++) {
    const v = VALUE[bytes[at + i]] ?? -1;
    if (v < 0) return false;
    lo = lo * 32 + v;
  }
  out[0] = hi;
  out[1] = lo;
  return true;
}

export function queueIdFromKey(hi: number, lo: number): QueueId {
  return encode(hi, TIME_CHARS) + encode(lo, RANDOM_CHARS);
}

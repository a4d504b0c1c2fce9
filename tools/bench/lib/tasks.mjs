/**
 * The benchmark workload: the "typical task" of the baselines and its pre-encoded frames.
 *
 *   task  = {cmd: 10, uid, node_id: 1, conn_id: uid, [ts], body}
 *   body  = msgpack {cmd: 'battle.attack', sn, data: bin(100)}
 *
 * ~1,000 players (uids 100001 … 101000) are drawn by a seeded xorshift32, so every process that
 * knows (n, seed, uids) rebuilds the same sequence; `sn` counts 1, 2, 3 … per uid, which is what
 * the order checker (`order.mjs`) verifies. Everything is plain msgpack: map keys are strings,
 * integers are msgpack ints (uids and sn stay below 2^32), the body is a bin. Tasks are
 * assembled byte by byte around bodies packed by msgpackr `new Packr({useRecords: false})`, so
 * the baselines and Peony receive the very same bytes.
 *
 * Latency runs stamp each task just before it is sent: the first 8 bytes of `data` get the send
 * time as a float64 (big-endian, ms since the epoch, `performance.timeOrigin + performance.now()`),
 * and `ts` (protocol §1.1, int ms) gets its integer part.
 */
import { Packr } from 'msgpackr'

/** Defaults of the workload. */
export const TASK_DEFAULTS = Object.freeze({ uids: 1000, seed: 1, uidBase: 100_000, dataBytes: 100 })

const packr = new Packr({ useRecords: false })
const SLAB_BYTES = 8 * 1024 * 1024
const te = new TextEncoder()

/** msgpack of a fixstr key. */
function key(s) {
  const b = te.encode(s)
  return Uint8Array.from([0xa0 | b.length, ...b])
}
const K_CMD = key('cmd')
const K_UID = key('uid')
const K_NODE = key('node_id')
const K_CONN = key('conn_id')
const K_TS = key('ts')
const K_BODY = key('body')

/**
 * The uid of every task, in send order: a seeded xorshift32 draw among `uids` players.
 * @param {number} n number of tasks
 * @param {{uids?: number, seed?: number, uidBase?: number}} [opts]
 * @returns {Uint32Array}
 */
export function uidSequence(n, opts = {}) {
  const { uids, seed, uidBase } = { ...TASK_DEFAULTS, ...opts }
  const out = new Uint32Array(n)
  let x = seed >>> 0 || 1
  for (let i = 0; i < n; i++) {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    out[i] = uidBase + 1 + (x % uids)
  }
  return out
}

/**
 * How many tasks each uid gets (= the last `sn` it must reach).
 * @param {number} n
 * @param {{uids?: number, seed?: number, uidBase?: number}} [opts]
 * @returns {Map<number, number>}
 */
export function expectedPerUid(n, opts = {}) {
  const seq = uidSequence(n, opts)
  const m = new Map()
  for (let i = 0; i < n; i++) m.set(seq[i], (m.get(seq[i]) ?? 0) + 1)
  return m
}

/**
 * The typical task as a plain object (for reading and for tests; the sender uses `encodeFrames`).
 * @param {number} uid
 * @param {number} sn
 * @param {number} [i] task index (varies the data bytes)
 */
export function typicalTask(uid, sn, i = 0) {
  const data = Buffer.alloc(TASK_DEFAULTS.dataBytes)
  for (let k = 0; k < data.length; k++) data[k] = (k * 31 + i) & 0xff
  return { cmd: 10, uid, node_id: 1, conn_id: uid, body: packr.pack({ cmd: 'battle.attack', sn, data }) }
}

function putU32(b, p, v) {
  b[p] = 0xce
  b[p + 1] = v >>> 24
  b[p + 2] = (v >>> 16) & 0xff
  b[p + 3] = (v >>> 8) & 0xff
  b[p + 4] = v & 0xff
  return p + 5
}

/**
 * Pre-encodes `n` typical tasks into frames of `batch` tasks (batch 1 = one task map per frame,
 * otherwise a msgpack array of up to `batch` maps). With `stamp`, each task gets a `ts` field and
 * `offsets[f]` lists, per task of frame f, [data offset, ts value offset] for `stampFrame`.
 * @param {number} n
 * @param {number} batch
 * @param {{uids?: number, seed?: number, uidBase?: number, stamp?: boolean}} [opts]
 * @returns {{frames: Buffer[], offsets: Int32Array[] | null, bytes: number}}
 */
export function encodeFrames(n, batch, opts = {}) {
  const o = { ...TASK_DEFAULTS, ...opts }
  const stamp = opts.stamp === true
  const seq = uidSequence(n, o)
  const sn = new Map()
  const data = Buffer.alloc(o.dataBytes)
  const frames = []
  const offsets = stamp ? [] : null
  let bytes = 0
  let scratch = new Uint8Array(1 << 16)
  let slab = Buffer.alloc(0)
  let slabPos = 0
  for (let f = 0; f * batch < n; f++) {
    const count = Math.min(batch, n - f * batch)
    const need = 8 + count * (64 + o.dataBytes + 48)
    if (scratch.length < need) scratch = new Uint8Array(need * 2)
    const b = scratch
    let p = 0
    if (batch > 1) {
      if (count < 16) b[p++] = 0x90 | count
      else {
        b[p++] = 0xdc
        b[p++] = count >>> 8
        b[p++] = count & 0xff
      }
    }
    const offs = stamp ? new Int32Array(count * 2) : null
    for (let k = 0; k < count; k++) {
      const i = f * batch + k
      const uid = seq[i]
      const s = (sn.get(uid) ?? 0) + 1
      sn.set(uid, s)
      for (let j = 0; j < data.length; j++) data[j] = (j * 31 + i) & 0xff
      const body = packr.pack({ cmd: 'battle.attack', sn: s, data })
      b[p++] = 0x80 | (stamp ? 6 : 5)
      b.set(K_CMD, p)
      p += K_CMD.length
      b[p++] = 10
      b.set(K_UID, p)
      p += K_UID.length
      p = putU32(b, p, uid)
      b.set(K_NODE, p)
      p += K_NODE.length
      b[p++] = 1
      b.set(K_CONN, p)
      p += K_CONN.length
      p = putU32(b, p, uid)
      if (stamp) {
        b.set(K_TS, p)
        p += K_TS.length
        b[p++] = 0xcf // uint64, patched at send time
        offs[2 * k + 1] = p
        b.fill(0, p, p + 8)
        p += 8
      }
      b.set(K_BODY, p)
      p += K_BODY.length
      if (body.length > 255) throw new RangeError('body too large for bin8')
      b[p++] = 0xc4
      b[p++] = body.length
      b.set(body, p)
      p += body.length
      // `data` is the last value of the body, which is the last value of the task.
      if (stamp) offs[2 * k] = p - o.dataBytes
    }
    // Frames are views into large shared slabs: few backing stores, little GC work in the sender.
    if (slabPos + p > slab.length) {
      slab = Buffer.allocUnsafeSlow(Math.max(SLAB_BYTES, p))
      slabPos = 0
    }
    const frame = slab.subarray(slabPos, slabPos + p)
    slabPos += p
    frame.set(b.subarray(0, p))
    frames.push(frame)
    if (stamp) offsets.push(offs)
    bytes += p
  }
  return { frames, offsets, bytes }
}

/**
 * Writes the send time into every task of a pre-encoded frame: float64 ms in the first 8 bytes of
 * `data`, and its integer part as the uint64 `ts`.
 * @param {Buffer} frame
 * @param {Int32Array} offs from `encodeFrames(…, {stamp: true}).offsets[f]`
 * @param {number} nowMs `performance.timeOrigin + performance.now()`
 */
export function stampFrame(frame, offs, nowMs) {
  const ts = BigInt(Math.floor(nowMs))
  for (let k = 0; k < offs.length; k += 2) {
    frame.writeDoubleBE(nowMs, offs[k])
    frame.writeBigUInt64BE(ts, offs[k + 1])
  }
}

/**
 * The send time a latency run stamped into a task's `data` (see `stampFrame`).
 * @param {Uint8Array} data
 */
export function readStamp(data) {
  return new DataView(data.buffer, data.byteOffset, 8).getFloat64(0)
}

/** Milliseconds since the epoch with sub-ms precision, comparable across processes and threads of one host. */
export function nowMs() {
  return performance.timeOrigin + performance.now()
}

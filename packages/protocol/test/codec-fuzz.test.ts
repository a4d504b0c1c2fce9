/**
 * Property-based tests of the envelope codec (fast-check, 10,000 runs each):
 *  (a) any bytes → decoders return values or coded rejections, never throw, and never let an
 *      invalid task/message through;
 *  (b) valid batches with exactly one field of one element mutated → that element alone is
 *      rejected with the right code and key, the others come through intact;
 *  (c) encode → decode round trips, 64-bit exact.
 */
import { isDeepStrictEqual } from 'node:util'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { KEY_NAMES } from '../src/codec/decode-fields.ts'
import {
  BrokerErrorCode,
  decodeAck,
  decodeEgress,
  decodeTasks,
  type EgressMessage,
  encodeEgress,
  encodeEgressBatch,
  encodeTask,
  encodeTaskFrames,
  encodeTasks,
  type Int64,
  msgpackBodyCodec,
  packValue,
  type Sequenced,
  type Task,
  type UsersRow,
} from '@peony/protocol'

/** 10,000 runs per property (PEONY_FUZZ_RUNS may raise it for a soak run; lower is for local iteration only). */
const RUNS = Number(process.env.PEONY_FUZZ_RUNS ?? 10_000)
const CODES = new Set<string>(Object.values(BrokerErrorCode))
const INT64_MAX = 2n ** 63n - 1n
const INT64_MIN = -(2n ** 63n)
const utf8Len = (s: string): number => Buffer.byteLength(s, 'utf8')

// ---- arbitraries: valid values ----------------------------------------------------------------

/** bigints inside the safe range become numbers, as the decoder returns them. */
const norm = (v: bigint | number): Int64 => (typeof v === 'bigint' && v >= -(2n ** 53n - 1n) && v <= 2n ** 53n - 1n ? Number(v) : v)

const int32 = fc.oneof(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), fc.constantFrom(0, 127, 128, -32, -33, 255, 256, -(2 ** 31), 2 ** 31 - 1))
const int64 = fc
  .oneof(
    fc.integer({ min: -1000, max: 1000 }),
    fc.integer(),
    fc.bigInt({ min: INT64_MIN, max: INT64_MAX }),
    fc.constantFrom<bigint | number>(2 ** 32, 2 ** 32 - 1, 2 ** 40, 2 ** 53 - 1, -(2 ** 53 - 1), 2n ** 53n, 2n ** 53n + 1n, -(2n ** 53n), INT64_MAX, INT64_MIN),
  )
  .map(norm)
const uidInt = fc
  .oneof(
    fc.integer({ min: 1, max: 2 ** 31 }),
    fc.bigInt({ min: 1n, max: INT64_MAX }),
    fc.constantFrom<bigint | number>(1, 2 ** 40, 2 ** 53 - 1, 2n ** 53n + 1n, INT64_MAX),
  )
  .map(norm)
/** Strings of min…maxBytes UTF-8 bytes: short Unicode ones, and ASCII ones up to the limit. */
const str = (min: number, maxBytes: number): fc.Arbitrary<string> =>
  fc.oneof(
    fc.string({ unit: 'grapheme', minLength: min, maxLength: 12 }).filter((s) => utf8Len(s) >= min && utf8Len(s) <= maxBytes),
    fc.integer({ min, max: maxBytes }).map((n) => 'x'.repeat(n)),
  )
const uidStr = str(1, 128)
const uid = fc.oneof(uidInt, uidStr)
const bin = fc.uint8Array({ maxLength: 40 })

const task: fc.Arbitrary<Task> = fc.record(
  {
    cmd: int32,
    uid,
    nodeId: int32,
    connId: int64,
    tag: int32,
    userdata: int64,
    custom: int64,
    flags: fc.integer({ min: 0, max: 0xffff }),
    clientIp: str(0, 64),
    ret: int32,
    body: bin,
    ts: int64,
  },
  { requiredKeys: ['cmd'] },
)

const listUid = fc.oneof(uidInt, fc.constantFrom(-1, -2, -3, 0))
const row: fc.Arbitrary<UsersRow> = fc.record(
  { uids: fc.array(listUid, { maxLength: 6 }), body: bin, userdata: int64, exclude: fc.array(listUid, { maxLength: 4 }) },
  { requiredKeys: ['uids', 'body'] },
)
const seqd = { sender: fc.string({ maxLength: 20 }), seq: fc.oneof(fc.nat(), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })).map(norm) }
const egress: fc.Arbitrary<EgressMessage & Sequenced> = fc.oneof(
  fc.record(
    { cmd: fc.constant(220 as const), nodeId: int32, connId: int64, body: bin, tag: int32, ret: int32, ...seqd },
    { requiredKeys: ['cmd', 'nodeId', 'connId', 'body'] },
  ),
  fc.record({ cmd: fc.constant(230 as const), rows: fc.array(row, { maxLength: 3 }), ...seqd }, { requiredKeys: ['cmd', 'rows'] }),
  fc.record(
    { cmd: fc.constantFrom(240 as const, 270 as const, 280 as const), nodeId: int32, connId: int64, ...seqd },
    { requiredKeys: ['cmd', 'nodeId', 'connId'] },
  ),
  fc.record(
    { cmd: fc.constant(250 as const), uids: fc.array(listUid, { maxLength: 6 }), userdata: int64, exclude: fc.array(listUid, { maxLength: 3 }), ...seqd },
    { requiredKeys: ['cmd', 'uids'] },
  ),
  fc.record(
    { cmd: fc.constant(260 as const), nodeId: int32, connId: int64, uid, userdata: int64, ...seqd },
    { requiredKeys: ['cmd', 'nodeId', 'connId', 'uid'] },
  ),
  fc.record({ cmd: fc.constant(100 as const), uid, body: bin, ...seqd }, { requiredKeys: ['cmd', 'uid', 'body'] }),
  fc.record({ cmd: fc.constant(100 as const), nodeId: int32, connId: int64, body: bin, ...seqd }, { requiredKeys: ['cmd', 'nodeId', 'connId', 'body'] }),
)

// ---- raw msgpack pieces -------------------------------------------------------------------------

const cat = (...parts: Uint8Array[]): Uint8Array => new Uint8Array(Buffer.concat(parts))
function f64(x: number): Uint8Array {
  const b = Buffer.alloc(9)
  b[0] = 0xcb
  b.writeDoubleBE(x, 1)
  return new Uint8Array(b)
}
function f32(x: number): Uint8Array {
  const b = Buffer.alloc(5)
  b[0] = 0xca
  b.writeFloatBE(x, 1)
  return new Uint8Array(b)
}
function ext(type: number, data: Uint8Array): Uint8Array {
  const fixed: Record<number, number> = { 1: 0xd4, 2: 0xd5, 4: 0xd6, 8: 0xd7, 16: 0xd8 }
  const t = fixed[data.length]
  if (t !== undefined) return cat(new Uint8Array([t, type & 0xff]), data)
  return cat(new Uint8Array([0xc7, data.length, type & 0xff]), data)
}
function mapHeader(n: number): Uint8Array {
  return n < 16 ? new Uint8Array([0x80 | n]) : new Uint8Array([0xde, n >> 8, n & 0xff])
}
function arrayHeader(n: number): Uint8Array {
  return n < 16 ? new Uint8Array([0x90 | n]) : new Uint8Array([0xdc, n >> 8, n & 0xff])
}

const WIRE: Record<string, string> = { nodeId: 'node_id', connId: 'conn_id', clientIp: 'client_ip' }
const wireKey = (k: string): string => WIRE[k] ?? k

/** A task map with `field` replaced by raw value bytes (or left out when `value` is null). */
function taskWith(t: Task, field: string, value: Uint8Array | null, first: boolean): Uint8Array {
  const entries: Uint8Array[] = []
  for (const [k, v] of Object.entries(t)) {
    if (v === undefined || k === field) continue
    entries.push(cat(packValue(wireKey(k)), packValue(v)))
  }
  if (value !== null) {
    const e = cat(packValue(wireKey(field)), value)
    if (first) entries.unshift(e)
    else entries.push(e)
  }
  return cat(mapHeader(entries.length), ...entries)
}

/** Deep equality that tells a bigint from a number, ignoring properties that hold undefined. */
function defined<T>(v: T): T {
  if (Array.isArray(v)) return v.map(defined) as T
  if (v !== null && typeof v === 'object' && !(v instanceof Uint8Array)) {
    const out: Record<string, unknown> = {}
    for (const [k, x] of Object.entries(v)) if (x !== undefined) out[k] = defined(x)
    return out as T
  }
  return v
}
/** toEqual, but fast when it holds (vitest's deep equality is too slow for 10,000 runs). */
function same(actual: unknown, expected: unknown): void {
  if (!isDeepStrictEqual(defined(actual), defined(expected))) expect(actual).toEqual(expected)
}
function pick(o: object | undefined, keys: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const k of keys) out[k] = (o as Record<string, unknown> | undefined)?.[k]
  return out
}
/** expect(ok).toBe(true) without the cost of an expect per field when it holds. */
function ok(cond: boolean, what: () => unknown): void {
  if (!cond) expect.fail(`invalid value got through: ${String(what())}`)
}

/** Any msgpack value that is not an int and not nil (for "wrong type" in an int field). */
const notInt = fc.oneof(
  fc.double().map(f64),
  fc.integer({ min: -(2 ** 40), max: 2 ** 40 }).map((x) => f64(x)), // integral floats: still wrong
  fc.float().map(f32),
  fc.string({ maxLength: 10 }).map((s) => packValue(s)),
  fc.uint8Array({ maxLength: 10 }).map((b) => packValue(b)),
  fc.boolean().map((b) => packValue(b)),
  fc.array(fc.integer(), { maxLength: 3 }).map((a) => packValue(a)),
  fc.constant(packValue({ a: 1 })),
  fc.tuple(fc.integer({ min: -128, max: 127 }), fc.uint8Array({ maxLength: 20 })).map(([t, d]) => ext(t, d)),
)
const notStr = fc.oneof(
  notInt.filter((b) => !((b[0]! >= 0xa0 && b[0]! <= 0xbf) || b[0] === 0xd9 || b[0] === 0xda)),
  int64.map((v) => packValue(v)),
)
const notBin = fc.oneof(
  notInt.filter((b) => !(b[0] === 0xc4 || b[0] === 0xc5)),
  int64.map((v) => packValue(v)),
)
const outsideInt32 = fc
  .oneof(
    fc.integer({ min: 2 ** 31, max: Number.MAX_SAFE_INTEGER }),
    fc.integer({ min: Number.MIN_SAFE_INTEGER, max: -(2 ** 31) - 1 }),
    fc.bigInt({ min: 2n ** 53n, max: 2n ** 64n - 1n }),
    fc.bigInt({ min: INT64_MIN, max: -(2n ** 53n) }),
  )
  .map((v) => packValue(v))
const aboveInt64 = fc.bigInt({ min: 2n ** 63n, max: 2n ** 64n - 1n }).map((v) => packValue(v))
/** Huge strings (str16 / str32), packed once. */
const HUGE_UID = packValue('u'.repeat(70_000))
const HUGE_IP = packValue('9'.repeat(100_000))
const W = BrokerErrorCode.WRONG_TYPE
const O = BrokerErrorCode.OUT_OF_RANGE

interface Mutation {
  field: string
  value: Uint8Array | null
  code: string
}
const mut = (field: string, code: string, values: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Mutation> => values.map((value) => ({ field, value, code }))
const int32Field = (f: string): fc.Arbitrary<Mutation>[] => [mut(f, W, notInt), mut(f, O, outsideInt32)]
const int64Field = (f: string): fc.Arbitrary<Mutation>[] => [mut(f, W, notInt), mut(f, O, aboveInt64)]

const taskMutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.constant<Mutation>({ field: 'cmd', value: null, code: BrokerErrorCode.MISSING_FIELD }),
  ...int32Field('cmd'),
  mut(
    'uid',
    W,
    notInt.filter((b) => !((b[0]! >= 0xa0 && b[0]! <= 0xbf) || b[0] === 0xd9)),
  ),
  mut(
    'uid',
    O,
    fc
      .oneof(fc.integer({ min: Number.MIN_SAFE_INTEGER, max: -1 }), fc.bigInt({ min: INT64_MIN, max: -1n }), fc.bigInt({ min: 2n ** 63n, max: 2n ** 64n - 1n }))
      .map((v) => packValue(v)),
  ),
  mut(
    'uid',
    O,
    fc.oneof(
      fc.integer({ min: 129, max: 400 }).map((n) => packValue('u'.repeat(n))),
      fc.constant(HUGE_UID),
    ),
  ),
  ...int32Field('nodeId'),
  ...int64Field('connId'),
  ...int32Field('tag'),
  ...int64Field('userdata'),
  ...int64Field('custom'),
  mut('flags', W, notInt),
  mut(
    'flags',
    O,
    fc.oneof(fc.integer({ min: 0x10000, max: Number.MAX_SAFE_INTEGER }), fc.integer({ min: Number.MIN_SAFE_INTEGER, max: -1 })).map((v) => packValue(v)),
  ),
  mut('clientIp', W, notStr),
  mut(
    'clientIp',
    O,
    fc.oneof(
      fc.integer({ min: 65, max: 300 }).map((n) => packValue('9'.repeat(n))),
      fc.constant(HUGE_IP),
    ),
  ),
  ...int32Field('ret'),
  mut('body', W, notBin),
  ...int64Field('ts'),
)

// ---- oracles: nothing invalid gets through -----------------------------------------------------

function isInt32(v: unknown): boolean {
  return typeof v === 'number' && Number.isInteger(v) && v >= -(2 ** 31) && v <= 2 ** 31 - 1
}
/** number when safe, bigint only beyond the safe range, within [min, max]. */
function isInt64(v: unknown, min = INT64_MIN, max = INT64_MAX): boolean {
  if (typeof v === 'number') return Number.isSafeInteger(v) && BigInt(v) >= min && BigInt(v) <= max
  if (typeof v === 'bigint') return (v > 2n ** 53n - 1n || v < -(2n ** 53n - 1n)) && v >= min && v <= max
  return false
}
function checkUid(u: unknown): void {
  if (typeof u === 'string') ok(utf8Len(u) >= 1 && utf8Len(u) <= 128, () => u)
  else ok(isInt64(u, 1n), () => u)
}
function checkTask(t: Task): void {
  ok(isInt32(t.cmd), () => t)
  if (t.uid !== undefined) checkUid(t.uid)
  for (const k of ['nodeId', 'tag', 'ret'] as const) if (t[k] !== undefined) ok(isInt32(t[k]), () => t)
  for (const k of ['connId', 'userdata', 'custom', 'ts'] as const) if (t[k] !== undefined) ok(isInt64(t[k]), () => t)
  if (t.flags !== undefined) ok(Number.isInteger(t.flags) && t.flags >= 0 && t.flags <= 0xffff, () => t)
  if (t.clientIp !== undefined) ok(typeof t.clientIp === 'string' && utf8Len(t.clientIp) <= 64, () => t)
  if (t.body !== undefined) ok(t.body instanceof Uint8Array, () => t.body)
}
function checkEgress(m: EgressMessage & Sequenced): void {
  ok([100, 220, 230, 240, 250, 260, 270, 280].includes(m.cmd), () => m.cmd)
  const any = m as unknown as Record<string, unknown>
  if ('nodeId' in m && m.nodeId !== undefined) ok(isInt32(m.nodeId), () => m)
  if ('connId' in m && m.connId !== undefined) ok(isInt64(m.connId), () => m)
  if ('uid' in m && m.uid !== undefined) checkUid(m.uid)
  if (m.seq !== undefined) ok(isInt64(m.seq, 0n, 2n ** 64n - 1n), () => m)
  if (m.sender !== undefined) ok(typeof m.sender === 'string', () => m.sender)
  if (m.cmd === 220 || m.cmd === 100) ok(m.body instanceof Uint8Array, () => m.body)
  if (m.cmd !== 230 && m.cmd !== 250 && m.cmd !== 100) ok(any.nodeId !== undefined && any.connId !== undefined, () => m)
  const lists = m.cmd === 230 ? m.rows.flatMap((r) => [r.uids, r.exclude ?? []]) : m.cmd === 250 ? [m.uids, m.exclude ?? []] : []
  for (const l of lists) for (const u of l) ok(isInt64(u, -3n), () => m)
}
function checkRejects(rejects: { code: string; index: number }[]): void {
  for (const r of rejects) {
    ok(CODES.has(r.code) && r.index >= -1, () => r)
  }
}

// ---- arbitrary frames ---------------------------------------------------------------------------

// The envelope's known keys, as the decoder's field reader names them.
const KEYS = KEY_NAMES
/** Any single msgpack value, valid or not for the envelope (well-formed msgpack). */
const anyValue: fc.Arbitrary<Uint8Array> = fc.oneof(
  notInt,
  int64.map((v) => packValue(v)),
  aboveInt64,
  fc.constant(new Uint8Array([0xc0])),
  fc.constantFrom(...[10, 15, 20, 100, 220, 230, 240, 250, 260, 270, 280].map((n) => packValue(n))),
  fc.array(fc.oneof(int64, fc.constantFrom(-1, -2, -3)), { maxLength: 4 }).map((a) => packValue(a)),
  fc.jsonValue({ maxDepth: 1 }).map((v) => packValue(v)),
)
const anyKey = fc.oneof(
  fc.constantFrom(...KEYS).map((k) => packValue(k)),
  fc.string({ maxLength: 12 }).map((k) => packValue(k)),
  anyValue,
)
const anyMap = fc.array(fc.tuple(anyKey, anyValue), { maxLength: 14 }).map((es) => cat(mapHeader(es.length), ...es.flat()))
const rowsValue = fc.array(anyMap, { maxLength: 3 }).map((ms) => cat(packValue('rows'), arrayHeader(ms.length), ...ms))
const anyMapWithRows = fc.tuple(anyMap, rowsValue).map(([m, r]) => {
  const n = m[0]! & 0x0f
  return n < 15 ? cat(new Uint8Array([0x80 | (n + 1)]), m.subarray(1), r) : m
})
/** Well-formed frames: a map, or an array of maps and other values. */
const wellFormed = fc.oneof(
  anyMap,
  anyMapWithRows,
  fc.array(fc.oneof(anyMap, anyMapWithRows, anyValue), { maxLength: 8 }).map((xs) => cat(arrayHeader(xs.length), ...xs)),
  anyValue,
)
/** Bytes: random, or a valid frame damaged (bytes overwritten, cut, grown). */
const damaged = fc
  .tuple(
    fc.oneof(
      fc.array(task, { maxLength: 4 }).map((ts) => encodeTasks(ts)),
      fc.array(egress, { maxLength: 3 }).map((ms) => encodeEgressBatch(ms)),
      wellFormed,
    ),
    fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
    fc.option(fc.nat(), { nil: undefined }),
    fc.uint8Array({ maxLength: 4 }),
  )
  .map(([frame, edits, cut, tail]) => {
    const b = new Uint8Array(frame)
    for (const [pos, v] of edits) if (b.length > 0) b[pos % b.length] = v
    const end = cut === undefined || b.length === 0 ? b.length : cut % (b.length + 1)
    return cat(b.subarray(0, end), tail)
  })
const anyBytes = fc.oneof(fc.uint8Array({ maxLength: 300 }), damaged)

// ---- (a) never throws ---------------------------------------------------------------------------

describe('(a) arbitrary bytes', () => {
  it('decodeTasks never throws and lets no invalid task through', () => {
    fc.assert(
      fc.property(anyBytes, (bytes) => {
        const res = decodeTasks(bytes)
        checkRejects(res.rejects)
        res.tasks.forEach(checkTask)
      }),
      { numRuns: RUNS },
    )
  })

  it('decodeTasks on well-formed msgpack: never MALFORMED, every element accounted for', () => {
    fc.assert(
      fc.property(wellFormed, (bytes) => {
        const res = decodeTasks(bytes)
        checkRejects(res.rejects)
        res.tasks.forEach(checkTask)
        ok(!res.rejects.some((r) => r.code === BrokerErrorCode.MALFORMED), () => JSON.stringify(res.rejects))
        if (bytes[0]! >= 0x90 && bytes[0]! <= 0x9f) same(res.tasks.length + res.rejects.length, bytes[0]! & 0x0f)
      }),
      { numRuns: RUNS },
    )
  })

  it('decodeEgress / decodeAck never throw and let no invalid message through', () => {
    fc.assert(
      fc.property(fc.oneof(anyBytes, wellFormed), (bytes) => {
        const res = decodeEgress(bytes)
        checkRejects(res.rejects)
        res.messages.forEach(checkEgress)
        const ack = decodeAck(bytes)
        if (ack !== undefined) ok(ack >= 0n && ack < 2n ** 64n, () => ack)
      }),
      { numRuns: RUNS },
    )
  })

  it('peekRequest never throws; decodeRequest throws only BODY_UNDECODABLE', () => {
    fc.assert(
      fc.property(fc.oneof(anyBytes, wellFormed), (bytes) => {
        const peek = msgpackBodyCodec.peekRequest(bytes)
        ok(
          Object.keys(peek).every((k) => k === 'cmd' || k === 'sn'),
          () => JSON.stringify(peek),
        )
        if (peek.cmd !== undefined) ok(typeof peek.cmd === 'string' || Number.isInteger(peek.cmd), () => peek.cmd)
        try {
          const req = msgpackBodyCodec.decodeRequest(bytes)
          same(req.cmd, peek.cmd)
        } catch (err) {
          same((err as { code?: unknown }).code, 'PEONY_BROKER_BODY_UNDECODABLE')
        }
      }),
      { numRuns: RUNS },
    )
  })
})

// ---- (b) one field mutated ----------------------------------------------------------------------

describe('(b) one mutated field rejects that element only', () => {
  it('tasks', () => {
    fc.assert(
      fc.property(fc.array(task, { minLength: 1, maxLength: 6 }), fc.nat(), taskMutation, fc.boolean(), (tasks, at, m, first) => {
        const i = at % tasks.length
        const elements = tasks.map((t, j) => (j === i ? taskWith(t, m.field, m.value, first) : encodeTask(t)))
        const frame = cat(arrayHeader(elements.length), ...elements)
        const res = decodeTasks(frame)
        same(
          res.tasks,
          tasks.filter((_, j) => j !== i),
        )
        same(res.rejects.length, 1)
        const r = res.rejects[0]!
        same({ code: r.code, index: r.index, key: r.key }, { code: m.code, index: i, key: wireKey(m.field) })
        // the rest of the element is in the partial
        const rest: Record<string, unknown> = { ...tasks[i]! }
        delete rest[m.field]
        same(pick(r.partial, Object.keys(rest)), rest)
        same((r.partial as Record<string, unknown>)[m.field], undefined)
      }),
      { numRuns: RUNS },
    )
  })

  it('egress', () => {
    const egressMutation = (msg: EgressMessage & Sequenced): fc.Arbitrary<Mutation> => {
      const fields = Object.keys(msg).filter((k) => k !== 'cmd' && (msg as unknown as Record<string, unknown>)[k] !== undefined)
      return fc.constantFrom(...fields).chain((f): fc.Arbitrary<Mutation> => {
        if (f === 'body') return mut(f, W, notBin)
        if (f === 'sender') return mut(f, W, notStr)
        if (f === 'uid')
          return mut(
            f,
            O,
            fc.integer({ min: Number.MIN_SAFE_INTEGER, max: -1 }).map((v) => packValue(v)),
          )
        if (f === 'uids' || f === 'exclude') return mut(f, W, fc.constantFrom(packValue('x'), packValue(['x']), packValue([1.5]), f64(1)))
        if (f === 'rows') return mut(f, W, fc.constantFrom(packValue(1), packValue([1]), packValue([{ uids: 'x', body: new Uint8Array(0) }])))
        if (f === 'seq')
          return mut(
            f,
            O,
            fc.integer({ min: Number.MIN_SAFE_INTEGER, max: -1 }).map((v) => packValue(v)),
          )
        if (f === 'nodeId' || f === 'tag' || f === 'ret') return fc.oneof(...int32Field(f))
        return fc.oneof(...int64Field(f))
      })
    }
    const arb = fc
      .array(egress, { minLength: 1, maxLength: 4 })
      .chain((msgs) => fc.nat({ max: msgs.length - 1 }).chain((i) => fc.tuple(fc.constant(msgs), fc.constant(i), egressMutation(msgs[i]!))))
    fc.assert(
      fc.property(arb, ([msgs, i, m]) => {
        const elements = msgs.map((x, j) => {
          if (j !== i) return encodeEgress(x)
          const entries: Uint8Array[] = []
          for (const [k, v] of Object.entries(x)) {
            if (v === undefined) continue
            const value =
              k === m.field
                ? m.value!
                : k === 'rows'
                  ? packValue((v as UsersRow[]).map((r) => Object.fromEntries(Object.entries(r).filter(([, y]) => y !== undefined))))
                  : packValue(v)
            entries.push(cat(packValue(wireKey(k)), value))
          }
          return cat(mapHeader(entries.length), ...entries)
        })
        const res = decodeEgress(cat(arrayHeader(elements.length), ...elements))
        same(
          res.messages,
          msgs.filter((_, j) => j !== i),
        )
        same(res.rejects.length, 1)
        const r = res.rejects[0]!
        same({ code: r.code, index: r.index }, { code: m.code, index: i })
        ok(r.key === wireKey(m.field) || r.key?.startsWith('rows[') === true, () => r.key)
      }),
      { numRuns: RUNS },
    )
  })
})

// ---- (c) round trips ----------------------------------------------------------------------------

describe('(c) round trips, 64-bit exact', () => {
  it('encodeTasks → decodeTasks', () => {
    fc.assert(
      fc.property(fc.array(task, { maxLength: 8 }), (tasks) => {
        const res = decodeTasks(encodeTasks(tasks))
        same(res.rejects, [])
        same(res.tasks, tasks)
        for (const t of tasks) same(decodeTasks(encodeTask(t)).tasks, [t])
      }),
      { numRuns: RUNS },
    )
  })

  it('encodeTaskFrames: every frame within the limit, all tasks in order', () => {
    fc.assert(
      // the largest generated task is ~330 bytes, so every limit here fits any single task
      fc.property(fc.array(task, { maxLength: 24 }), fc.integer({ min: 400, max: 3000 }), (tasks, limit) => {
        const frames = encodeTaskFrames(tasks, limit)
        const out: Task[] = []
        for (const f of frames) {
          ok(f.length <= limit, () => f.length)
          const res = decodeTasks(f, { maxFrameBytes: limit })
          same(res.rejects, [])
          out.push(...res.tasks)
        }
        same(out, tasks)
        if (tasks.length === 0) same(frames, [])
      }),
      { numRuns: RUNS },
    )
  })

  it('encodeEgress(Batch) → decodeEgress', () => {
    fc.assert(
      fc.property(fc.array(egress, { maxLength: 6 }), (msgs) => {
        const res = decodeEgress(encodeEgressBatch(msgs))
        same(res.rejects, [])
        same(res.messages, msgs)
        for (const m of msgs) same(decodeEgress(encodeEgress(m)).messages, [m])
      }),
      { numRuns: RUNS },
    )
  })
})

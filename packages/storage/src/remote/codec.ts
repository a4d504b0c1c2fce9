/**
 * The messages between RemoteStorage and serveStorage, and how bulk data crosses the port.
 *
 * Many values travel as ONE ArrayBuffer (their bytes back to back) plus an Int32Array of lengths
 * (-1: a missing value or a delete), both transferred, never cloned. Many keys travel as one
 * string joined with '\0', which no key can contain. So a writeFenced of 100,000 ops is a handful
 * of objects on the port, whatever the number of values. Once a batch or writeFenced has
 * succeeded (the storage no longer reads its values: a driver keeps no reference to a value past
 * its call), the host hands the values buffer back with the answer, and the client packs later
 * calls into it: a flush's calls reuse a few buffers instead of mapping a new one each.
 */
import { PeonyError, isPeonyError } from '@peony/protocol'
import { StorageError, StorageErrorCode, isNotApplied, type StorageErrorCode as Code } from '../errors.ts'
import type { BatchOp, FencedWrite, StorageSupports } from '../storage.ts'

/** Keys joined with '\0'. */
export type PackedKeys = string

/** Values back to back from the start of `data` (which may be longer); `lens[i]` is the length of value i, or -1 for none. */
export interface PackedValues {
  lens: Int32Array
  data: ArrayBuffer
}

/** Ops: their keys, and their values as PackedValues (-1: a delete). */
export interface PackedOps extends PackedValues {
  keys: PackedKeys
}

/**
 * A writeFenced call: the fences, each write's generation, handle (-1: none) and op count, and all
 * the ops. An op whose key is its write's fence (a session's record) goes as '' (no key is empty),
 * so the host uses the fence's string for it.
 */
export interface PackedWrites {
  fences: PackedKeys
  gens: Float64Array
  handles: Float64Array
  counts: Uint32Array
  ops: PackedOps
}

/** Client → host. */
export type Request =
  | { i: number; op: 'hello' }
  | { i: number; op: 'get'; key: string }
  | { i: number; op: 'getMany'; keys: PackedKeys }
  | { i: number; op: 'put'; key: string; value: ArrayBuffer }
  | { i: number; op: 'del'; key: string }
  | { i: number; op: 'batch'; ops: PackedOps }
  | { i: number; op: 'acquire'; fence: string }
  | { i: number; op: 'claim'; fence: string; keys: PackedKeys }
  | ({ i: number; op: 'writeFenced' } & PackedWrites)

/**
 * Host → client. `b`: the values buffer of the request (a `batch` or `writeFenced` that
 * succeeded), handed back so that the client packs a later call's values into it.
 */
export type Response = { i: number; ok: true; r: unknown; b?: ArrayBuffer } | { i: number; ok: false; e: WireError }

/** The answer to `hello`. */
export interface Hello {
  supports: StorageSupports
}

/** An error as it crosses the port: its code, flag and causes survive (structured clone would drop them). */
export interface WireError {
  name: string
  message: string
  code?: string
  retryable?: boolean
  /** StorageError.notApplied. */
  notApplied?: boolean
  /** The error's `cause` (a driver's own error, say), so the log on the other side still shows it. */
  cause?: WireCause
}

/** A cause as it crosses the port: what a log needs of it. */
export interface WireCause {
  name: string
  message: string
  code?: string
  /** Where it was raised (in the host's thread). */
  stack?: string
  cause?: WireCause
}

export function packKeys(keys: readonly string[]): PackedKeys {
  return keys.join('\0')
}

/** The keys back ('' is no key: a key is never empty). */
export function unpackKeys(keys: PackedKeys): string[] {
  return keys === '' ? [] : keys.split('\0')
}

/** Packs values (undefined allowed) into one buffer. */
export function packValues(values: readonly (Uint8Array | undefined)[]): PackedValues {
  let total = 0
  for (const v of values) if (v !== undefined) total += v.byteLength
  const lens = new Int32Array(values.length)
  const data = bytes(total)
  let off = 0
  for (let i = 0; i < values.length; i++) {
    const v = values[i]
    if (v === undefined) {
      lens[i] = -1
      continue
    }
    data.set(v, off)
    lens[i] = v.byteLength
    off += v.byteLength
  }
  return { lens, data: data.buffer as ArrayBuffer }
}

/** Views into the transferred buffer (no copy; the buffer belongs to the receiver). */
export function unpackValues(p: PackedValues): (Uint8Array | undefined)[] {
  const out = new Array<Uint8Array | undefined>(p.lens.length)
  let off = 0
  for (let i = 0; i < p.lens.length; i++) {
    const len = p.lens[i]!
    if (len < 0) {
      out[i] = undefined
      continue
    }
    out[i] = new Uint8Array(p.data, off, len)
    off += len
  }
  return out
}

/**
 * Packs a batch's ops. The values are copied into `spare`'s smallest buffer that holds them,
 * taken out of `spare` (a buffer the host handed back after an earlier write: memory already
 * mapped, no allocation), else into a new buffer.
 */
export function packOps(ops: readonly BatchOp[], spare?: ArrayBuffer[]): PackedOps {
  return packOpLists([ops], undefined, spare)
}

/** Packs a writeFenced call (see PackedWrites; values as packOps packs them). */
export function packWrites(writes: readonly FencedWrite[], spare?: ArrayBuffer[]): PackedWrites {
  const n = writes.length
  const fences = new Array<string>(n)
  const gens = new Float64Array(n)
  const handles = new Float64Array(n)
  const counts = new Uint32Array(n)
  const lists = new Array<readonly BatchOp[]>(n)
  for (let i = 0; i < n; i++) {
    const w = writes[i]!
    fences[i] = w.fence
    gens[i] = w.generation
    handles[i] = w.handle ?? -1
    counts[i] = w.ops.length
    lists[i] = w.ops
  }
  return { fences: fences.join('\0'), gens, handles, counts, ops: packOpLists(lists, fences, spare) }
}

/**
 * The ops of `lists`, in order, as one PackedOps. With `fences` (one per list), an op whose key
 * is its list's fence goes as ''. Values that lie back to back in one buffer (a caller that built
 * them in one buffer, as session flushes do) are copied with one set() instead of one per value.
 */
function packOpLists(lists: readonly (readonly BatchOp[])[], fences: readonly string[] | undefined, spare: ArrayBuffer[] | undefined): PackedOps {
  let n = 0
  let total = 0
  let buf: ArrayBufferLike | undefined
  let start = 0
  let contiguous = true
  for (let i = 0; i < lists.length; i++) {
    const ops = lists[i]!
    n += ops.length
    for (let k = 0; k < ops.length; k++) {
      const op = ops[k]!
      if (op.type !== 'put') continue
      const v = op.value
      if (buf === undefined) {
        buf = v.buffer
        start = v.byteOffset
      } else if (contiguous && (v.byteOffset !== start + total || v.buffer !== buf)) {
        contiguous = false
      }
      total += v.byteLength
    }
  }
  const keys = new Array<string>(n)
  const lens = new Int32Array(n)
  const data = spareFor(spare, total) ?? bytes(total >= SPARE_MIN_BYTES ? Math.ceil(total / SPARE_MIN_BYTES) * SPARE_MIN_BYTES : total)
  if (contiguous && buf !== undefined) data.set(new Uint8Array(buf, start, total))
  let j = 0
  let off = 0
  for (let i = 0; i < lists.length; i++) {
    const ops = lists[i]!
    const fence = fences?.[i]
    for (let k = 0; k < ops.length; k++) {
      const op = ops[k]!
      keys[j] = op.key === fence ? '' : op.key
      if (op.type === 'put') {
        const len = op.value.byteLength
        if (!contiguous) data.set(op.value, off)
        lens[j] = len
        off += len
      } else {
        lens[j] = -1
      }
      j++
    }
  }
  return { keys: keys.join('\0'), lens, data: data.buffer as ArrayBuffer }
}

/** The writes back; values as views into the transferred buffer, an op key '' as its write's fence. */
export function unpackWrites(p: PackedWrites): FencedWrite[] {
  const fences = unpackKeys(p.fences)
  const ops = unpackOps(p.ops)
  const writes = new Array<FencedWrite>(fences.length)
  let o = 0
  for (let w = 0; w < fences.length; w++) {
    const fence = fences[w]!
    const mine = ops.slice(o, (o += p.counts[w]!))
    for (const op of mine) if (op.key === '') op.key = fence
    const h = p.handles[w]!
    writes[w] = { fence, generation: p.gens[w]!, ops: mine, handle: h < 0 ? undefined : h }
  }
  return writes
}

/** Buffers smaller than this are not kept for reuse (allocating them is cheap); new ones at least this big are rounded up to a multiple of it. */
export const SPARE_MIN_BYTES = 64 * 1024
/** Buffers kept for reuse, at most this many and… */
export const SPARE_MAX_COUNT = 4
/** …each at most this big (one huge write does not pin its memory). */
export const SPARE_MAX_BYTES = 8 * 1024 * 1024

/** Keeps `b` in `spare` for a later packOps, if it is worth keeping and there is room. */
export function keepSpare(spare: ArrayBuffer[], b: unknown): void {
  if (!(b instanceof ArrayBuffer) || b.byteLength < SPARE_MIN_BYTES || b.byteLength > SPARE_MAX_BYTES || spare.length >= SPARE_MAX_COUNT) return
  spare.push(b)
}

/** Takes the smallest buffer of `spare` that holds `total` bytes out of it (none for small totals). */
function spareFor(spare: ArrayBuffer[] | undefined, total: number): Uint8Array | undefined {
  if (spare === undefined || total === 0) return undefined
  let best = -1
  for (let i = 0; i < spare.length; i++) {
    const len = spare[i]!.byteLength
    if (len >= total && (best < 0 || len < spare[best]!.byteLength)) best = i
  }
  if (best < 0) return undefined
  const b = spare[best]!
  spare[best] = spare[spare.length - 1]!
  spare.pop()
  return new Uint8Array(b)
}

/** The ops back, values as views into the transferred buffer. */
export function unpackOps(p: PackedOps): BatchOp[] {
  const keys = p.lens.length === 0 ? [] : p.keys.split('\0')
  const out = new Array<BatchOp>(keys.length)
  let off = 0
  for (let i = 0; i < keys.length; i++) {
    const len = p.lens[i]!
    if (len < 0) {
      out[i] = { type: 'del', key: keys[i]! }
    } else {
      out[i] = { type: 'put', key: keys[i]!, value: new Uint8Array(p.data, off, len) }
      off += len
    }
  }
  return out
}

/** The buffers of a packed structure, for the transfer list. */
export function transferOf(p: PackedValues): ArrayBuffer[] {
  return [p.lens.buffer as ArrayBuffer, p.data]
}

/** A copy of `v` in a buffer of its own (to transfer). */
export function ownBuffer(v: Uint8Array): ArrayBuffer {
  const u = bytes(v.byteLength)
  u.set(v)
  return u.buffer as ArrayBuffer
}

export function toWireError(err: unknown): WireError {
  if (isPeonyError(err)) {
    const w: WireError = { name: err.name, message: err.message, code: err.code, retryable: err.retryable }
    if (isNotApplied(err)) w.notApplied = true
    return withCause(w, err)
  }
  if (err instanceof TypeError || err instanceof RangeError) return { name: err.name, message: err.message }
  return withCause(
    { name: 'StorageError', message: 'the storage host failed the call (its error is the cause)', code: StorageErrorCode.FAILED, retryable: false },
    { cause: err },
  )
}

export function fromWireError(e: WireError): Error {
  if (e.code === undefined) return e.name === 'RangeError' ? new RangeError(e.message) : new TypeError(e.message)
  const options = { retryable: e.retryable ?? false, notApplied: e.notApplied === true, ...(e.cause === undefined ? {} : { cause: fromWireCause(e.cause) }) }
  if (e.code.startsWith('PEONY_STORAGE_')) return new StorageError(e.code as Code, e.message, options)
  return new PeonyError(e.code, e.message, options)
}

/** Causes kept across the port, at most this deep. */
const CAUSE_DEPTH = 4

/** `w` with the cause chain of `err` (name, message, code and stack of each). */
function withCause<W extends WireError | WireCause>(w: W, err: { cause?: unknown }, depth = 0): W {
  const c = err.cause
  if (c === undefined || c === null || depth >= CAUSE_DEPTH) return w
  const cause: WireCause =
    c instanceof Error ? { name: c.name, message: c.message, ...(c.stack === undefined ? {} : { stack: c.stack }) } : { name: 'Error', message: String(c) }
  const code = (c as { code?: unknown }).code
  if (typeof code === 'string') cause.code = code
  w.cause = typeof c === 'object' ? withCause(cause, c as { cause?: unknown }, depth + 1) : cause
  return w
}

function fromWireCause(c: WireCause): Error {
  const e = new Error(c.message, c.cause === undefined ? undefined : { cause: fromWireCause(c.cause) })
  e.name = c.name
  // Its own stack, from the host's thread (this one's would point at the port's message handler).
  e.stack = c.stack ?? `${c.name}: ${c.message}`
  if (c.code !== undefined) (e as { code?: string }).code = c.code
  return e
}

/** Uninitialized bytes in an ArrayBuffer of exactly `n` bytes (not Buffer's shared pool, so it can be transferred). */
function bytes(n: number): Uint8Array {
  return Buffer.allocUnsafeSlow(n)
}

/**
 * A small msgpack writer and a generic reader that keep protocol v1's integer rules
 * (docs/protocol.md §0): an integer is always a msgpack int in its smallest encoding (never a
 * float, at any size up to 64 bits), a non-integral number is a float64, and an int beyond
 * ±(2^53 − 1) reads back as a `bigint`. The envelope codecs (tasks, egress) build on the
 * `Writer` here; application data inside bodies goes through `packValue`/`unpackValue`.
 *
 * Value mapping of the generic reader/writer:
 *   nil ↔ null (undefined packs as nil; an object property holding undefined is left out)
 *   bool ↔ boolean · int ↔ number (safe) | bigint · float32/float64 → number, number → float64
 *   str ↔ string · bin ↔ Uint8Array (any ArrayBufferView/ArrayBuffer packs as bin)
 *   array ↔ Array · map with only string keys ↔ plain object · map with any other key → Map
 * Extension types are not application data (§0): they are refused both ways.
 */
import { BrokerErrorCode, PeonyError } from '../errors.ts'

const TWO32 = 0x1_0000_0000
const INT64_MIN = -(2n ** 63n)
const UINT64_MAX = 2n ** 64n - 1n

/** Largest nesting depth `unpackValue` accepts before it reports the value as malformed. */
export const MAX_DEPTH = 512

function encodeFailed(message: string): PeonyError {
  return new PeonyError(BrokerErrorCode.ENCODE_FAILED, message)
}

/** UTF-8 byte length of a JS string (lone surrogates count as U+FFFD, 3 bytes, as TextEncoder writes them). */
export function utf8Length(s: string): number {
  const n = s.length
  let len = n
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x80) continue
    if (c < 0x800) {
      len += 1
    } else if (c >= 0xd800 && c <= 0xdbff && i + 1 < n) {
      const d = s.charCodeAt(i + 1)
      if (d >= 0xdc00 && d <= 0xdfff) {
        len += 2 // 4 bytes for 2 code units
        i++
      } else {
        len += 2
      }
    } else {
      len += 2
    }
  }
  return len
}

const textEncoder = new TextEncoder()

/**
 * A growable msgpack output buffer. `finish()` returns an exact-size copy that owns its memory
 * (safe to transfer or keep), and resets the writer for the next message.
 */
export class Writer {
  buf: Uint8Array
  view: DataView
  pos = 0

  constructor(size = 1024) {
    this.buf = new Uint8Array(size)
    this.view = new DataView(this.buf.buffer)
  }

  /** Makes room for `n` more bytes. */
  ensure(n: number): void {
    const need = this.pos + n
    if (need <= this.buf.length) return
    let size = this.buf.length * 2
    while (size < need) size *= 2
    const next = new Uint8Array(size)
    next.set(this.buf.subarray(0, this.pos))
    this.buf = next
    this.view = new DataView(next.buffer)
  }

  /** An exact-size copy of what was written; the writer is empty afterwards. */
  finish(): Uint8Array {
    const out = this.buf.slice(0, this.pos)
    this.reset()
    return out
  }

  /** Drops what was written (and a buffer grown beyond 4 MiB, so one huge message does not pin memory). */
  reset(): void {
    this.pos = 0
    if (this.buf.length > 4 * 1024 * 1024) {
      this.buf = new Uint8Array(64 * 1024)
      this.view = new DataView(this.buf.buffer)
    }
  }

  nil(): void {
    this.ensure(1)
    this.buf[this.pos++] = 0xc0
  }

  bool(v: boolean): void {
    this.ensure(1)
    this.buf[this.pos++] = v ? 0xc3 : 0xc2
  }

  /** A safe integer in its smallest msgpack int encoding (positive → uint family, negative → int family, as msgpack-python does). */
  int(n: number): void {
    this.ensure(9)
    const b = this.buf
    let p = this.pos
    if (n >= 0) {
      if (n < 0x80) {
        b[p++] = n
      } else if (n < 0x100) {
        b[p++] = 0xcc
        b[p++] = n
      } else if (n < 0x10000) {
        b[p++] = 0xcd
        b[p++] = n >>> 8
        b[p++] = n & 0xff
      } else if (n < TWO32) {
        b[p++] = 0xce
        this.view.setUint32(p, n)
        p += 4
      } else {
        b[p++] = 0xcf
        this.view.setUint32(p, Math.floor(n / TWO32))
        this.view.setUint32(p + 4, n >>> 0)
        p += 8
      }
    } else if (n >= -0x20) {
      b[p++] = n & 0xff
    } else if (n >= -0x80) {
      b[p++] = 0xd0
      b[p++] = n & 0xff
    } else if (n >= -0x8000) {
      b[p++] = 0xd1
      b[p++] = (n >> 8) & 0xff
      b[p++] = n & 0xff
    } else if (n >= -0x80000000) {
      b[p++] = 0xd2
      this.view.setInt32(p, n)
      p += 4
    } else {
      const hi = Math.floor(n / TWO32)
      b[p++] = 0xd3
      this.view.setInt32(p, hi)
      this.view.setUint32(p + 4, n - hi * TWO32)
      p += 8
    }
    this.pos = p
  }

  /** A bigint in the smallest msgpack int encoding; throws ENCODE_FAILED outside int64 ∪ uint64. */
  bigint(v: bigint): void {
    if (v >= -9007199254740991n && v <= 9007199254740991n) {
      this.int(Number(v))
      return
    }
    this.ensure(9)
    if (v > 0n) {
      if (v > UINT64_MAX) throw encodeFailed(`integer ${v} does not fit in uint64`)
      this.buf[this.pos] = 0xcf
      this.view.setBigUint64(this.pos + 1, v)
    } else {
      if (v < INT64_MIN) throw encodeFailed(`integer ${v} does not fit in int64`)
      this.buf[this.pos] = 0xd3
      this.view.setBigInt64(this.pos + 1, v)
    }
    this.pos += 9
  }

  float64(v: number): void {
    this.ensure(9)
    this.buf[this.pos] = 0xcb
    this.view.setFloat64(this.pos + 1, v)
    this.pos += 9
  }

  /** A str in the smallest header (fixstr, str8, str16, str32), UTF-8. */
  str(s: string): void {
    const n = s.length
    if (n < 64) {
      const len = utf8Length(s)
      this.strHeader(len)
      this.ensure(len)
      const b = this.buf
      let p = this.pos
      for (let i = 0; i < n; i++) {
        let c = s.charCodeAt(i)
        if (c < 0x80) {
          b[p++] = c
        } else if (c < 0x800) {
          b[p++] = 0xc0 | (c >> 6)
          b[p++] = 0x80 | (c & 0x3f)
        } else {
          if (c >= 0xd800 && c <= 0xdfff) {
            const d = i + 1 < n ? s.charCodeAt(i + 1) : 0
            if (c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff) {
              c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00)
              i++
              b[p++] = 0xf0 | (c >> 18)
              b[p++] = 0x80 | ((c >> 12) & 0x3f)
              b[p++] = 0x80 | ((c >> 6) & 0x3f)
              b[p++] = 0x80 | (c & 0x3f)
              continue
            }
            c = 0xfffd
          }
          b[p++] = 0xe0 | (c >> 12)
          b[p++] = 0x80 | ((c >> 6) & 0x3f)
          b[p++] = 0x80 | (c & 0x3f)
        }
      }
      this.pos = p
      return
    }
    const len = Buffer.byteLength(s, 'utf8')
    this.strHeader(len)
    this.ensure(len)
    textEncoder.encodeInto(s, this.buf.subarray(this.pos, this.pos + len))
    this.pos += len
  }

  /** A str whose UTF-8 bytes are given. */
  strBytes(bytes: Uint8Array): void {
    this.strHeader(bytes.length)
    this.raw(bytes)
  }

  strHeader(len: number): void {
    this.ensure(5)
    const b = this.buf
    if (len < 32) {
      b[this.pos++] = 0xa0 | len
    } else if (len < 0x100) {
      b[this.pos++] = 0xd9
      b[this.pos++] = len
    } else if (len < 0x10000) {
      b[this.pos++] = 0xda
      b[this.pos++] = len >>> 8
      b[this.pos++] = len & 0xff
    } else {
      b[this.pos++] = 0xdb
      this.view.setUint32(this.pos, len)
      this.pos += 4
    }
  }

  /** A bin in the smallest header (bin8, bin16, bin32). */
  bin(bytes: Uint8Array): void {
    const len = bytes.length
    this.ensure(5 + len)
    const b = this.buf
    if (len < 0x100) {
      b[this.pos++] = 0xc4
      b[this.pos++] = len
    } else if (len < 0x10000) {
      b[this.pos++] = 0xc5
      b[this.pos++] = len >>> 8
      b[this.pos++] = len & 0xff
    } else {
      b[this.pos++] = 0xc6
      this.view.setUint32(this.pos, len)
      this.pos += 4
    }
    b.set(bytes, this.pos)
    this.pos += len
  }

  /** Bytes copied as they are (an already-encoded msgpack value, say). */
  raw(bytes: Uint8Array): void {
    this.ensure(bytes.length)
    this.buf.set(bytes, this.pos)
    this.pos += bytes.length
  }

  arrayHeader(n: number): void {
    this.ensure(5)
    const b = this.buf
    if (n < 16) {
      b[this.pos++] = 0x90 | n
    } else if (n < 0x10000) {
      b[this.pos++] = 0xdc
      b[this.pos++] = n >>> 8
      b[this.pos++] = n & 0xff
    } else {
      b[this.pos++] = 0xdd
      this.view.setUint32(this.pos, n)
      this.pos += 4
    }
  }

  mapHeader(n: number): void {
    this.ensure(5)
    const b = this.buf
    if (n < 16) {
      b[this.pos++] = 0x80 | n
    } else if (n < 0x10000) {
      b[this.pos++] = 0xde
      b[this.pos++] = n >>> 8
      b[this.pos++] = n & 0xff
    } else {
      b[this.pos++] = 0xdf
      this.view.setUint32(this.pos, n)
      this.pos += 4
    }
  }

  /** Any supported value (see the module comment); throws ENCODE_FAILED on anything else. */
  value(v: unknown, depth = 0): void {
    if (depth > MAX_DEPTH) throw encodeFailed(`value nested deeper than ${MAX_DEPTH} levels (or cyclic)`)
    switch (typeof v) {
      case 'number':
        if (Number.isSafeInteger(v)) this.int(v)
        else this.float64(v)
        return
      case 'string':
        this.str(v)
        return
      case 'boolean':
        this.bool(v)
        return
      case 'bigint':
        this.bigint(v)
        return
      case 'undefined':
        this.nil()
        return
      case 'object':
        break
      default:
        throw encodeFailed(`cannot encode a ${typeof v}`)
    }
    if (v === null) {
      this.nil()
      return
    }
    if (Array.isArray(v)) {
      const n = v.length
      this.arrayHeader(n)
      for (let i = 0; i < n; i++) this.value(v[i], depth + 1)
      return
    }
    if (v instanceof Uint8Array) {
      this.bin(v)
      return
    }
    if (ArrayBuffer.isView(v)) {
      this.bin(new Uint8Array(v.buffer, v.byteOffset, v.byteLength))
      return
    }
    if (v instanceof ArrayBuffer) {
      this.bin(new Uint8Array(v))
      return
    }
    if (v instanceof Map) {
      this.mapHeader(v.size)
      for (const [k, x] of v) {
        this.value(k, depth + 1)
        this.value(x, depth + 1)
      }
      return
    }
    if (v instanceof Date || v instanceof RegExp || v instanceof Set || v instanceof Promise) {
      throw encodeFailed(`cannot encode a ${v.constructor.name}`)
    }
    const obj = v as Record<string, unknown>
    const keys = Object.keys(obj)
    let count = 0
    for (const k of keys) if (obj[k] !== undefined) count++
    this.mapHeader(count)
    for (const k of keys) {
      const x = obj[k]
      if (x === undefined) continue
      this.str(k)
      this.value(x, depth + 1)
    }
  }
}

let shared: Writer | undefined
let sharedBusy = false

/**
 * Runs `fn` with a reusable writer and returns the exact-size bytes it wrote. Re-entrant calls
 * (a getter that packs, say) get a fresh writer.
 */
export function withWriter(fn: (w: Writer) => void): Uint8Array {
  if (sharedBusy) {
    const w = new Writer(256)
    fn(w)
    return w.finish()
  }
  const w = (shared ??= new Writer(64 * 1024))
  sharedBusy = true
  try {
    fn(w)
    return w.finish()
  } finally {
    w.reset()
    sharedBusy = false
  }
}

/**
 * Packs any supported value as msgpack with protocol v1's integer rules: a safe integer becomes
 * a msgpack int of the smallest size, any other number a float64, a bigint an int64/uint64
 * (smallest size). Throws PeonyError `PEONY_BROKER_ENCODE_FAILED` for unsupported values
 * (functions, symbols, Dates, ints beyond uint64/int64, cycles).
 */
export function packValue(value: unknown): Uint8Array {
  return withWriter((w) => w.value(value))
}

// ---------------------------------------------------------------------------------------------
// Generic reader

/**
 * Thrown (internally) when bytes are not a well-formed msgpack value. Deliberately not an Error:
 * a peer can send malformed frames at will, and capturing a stack trace for each would make every
 * rejection several times more expensive. It never escapes the codec.
 */
export class MalformedError {
  readonly name = 'MalformedError'
  readonly message: string
  constructor(message: string) {
    this.message = message
  }
}

const fatalDecoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

/**
 * Decodes `len` bytes of UTF-8 at `start`; returns undefined when they are not valid UTF-8.
 * ASCII strings up to 32 bytes skip TextDecoder.
 */
export function decodeUtf8(b: Uint8Array, start: number, len: number): string | undefined {
  if (len <= 32) {
    let s = ''
    let i = start
    const end = start + len
    for (; i < end; i++) {
      const c = b[i]!
      if (c >= 0x80) break
      s += String.fromCharCode(c)
    }
    if (i === end) return s
  }
  try {
    return fatalDecoder.decode(b.subarray(start, start + len))
  } catch {
    return undefined
  }
}

// Copies of small bins share 8 KiB slabs, as Node's Buffer pool does: one typed-array view per
// copy instead of an ArrayBuffer (a separate backing store) each, which cost ~1 µs per bin in
// the worker's hot path. A copy kept alive keeps its slab (at most 8 KiB) alive; bins of 4 KiB
// and more get a buffer of their own.
const POOL_SIZE = 8192
let pool = new ArrayBuffer(POOL_SIZE)
let poolOffset = 0

/** A copy of `len` bytes of `b` from `start`: its own bytes, not a view of `b`. */
function copyBytes(b: Uint8Array, start: number, len: number): Uint8Array {
  if (len >= POOL_SIZE >>> 1 || len === 0) {
    const out = new Uint8Array(len)
    if (len > 0) out.set(b.subarray(start, start + len))
    return out
  }
  if (poolOffset + len > POOL_SIZE) {
    pool = new ArrayBuffer(POOL_SIZE)
    poolOffset = 0
  }
  const out = new Uint8Array(pool, poolOffset, len)
  out.set(b.subarray(start, start + len))
  poolOffset = (poolOffset + len + 7) & ~7
  return out
}

/** A cursor over msgpack bytes: the generic, allocation-friendly value reader. */
export class Reader {
  b: Uint8Array
  p: number
  e: number
  private dv: DataView | undefined

  constructor(b: Uint8Array, start = 0, end = b.length) {
    this.b = b
    this.p = start
    this.e = end
  }

  need(n: number): void {
    if (this.p + n > this.e) throw new MalformedError('truncated msgpack value')
  }

  view(): DataView {
    return (this.dv ??= new DataView(this.b.buffer, this.b.byteOffset, this.b.byteLength))
  }

  u8(): number {
    this.need(1)
    return this.b[this.p++]!
  }

  u16(): number {
    this.need(2)
    const b = this.b
    const v = (b[this.p]! << 8) | b[this.p + 1]!
    this.p += 2
    return v
  }

  u32(): number {
    this.need(4)
    const b = this.b
    const p = this.p
    const v = b[p]! * 0x1000000 + ((b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!)
    this.p = p + 4
    return v
  }

  /** uint64 at the cursor: a number when safe, else a bigint. */
  u64(): number | bigint {
    const hi = this.u32()
    const lo = this.u32()
    const v = hi * TWO32 + lo
    if (v <= Number.MAX_SAFE_INTEGER) return v
    return (BigInt(hi) << 32n) | BigInt(lo)
  }

  /** int64 at the cursor: a number when safe, else a bigint. */
  i64(): number | bigint {
    const hi = this.u32() | 0
    const lo = this.u32()
    const v = hi * TWO32 + lo
    if (Number.isSafeInteger(v)) return v
    return (BigInt(hi) << 32n) + BigInt(lo)
  }

  /** Skips one whole value, iteratively (no recursion, so hostile nesting cannot overflow the stack). */
  skip(): void {
    const b = this.b
    let rem = 1
    while (rem > 0) {
      rem--
      if (this.p >= this.e) throw new MalformedError('truncated msgpack value')
      const t = b[this.p++]!
      if (t < 0x80 || t >= 0xe0) continue
      if (t < 0x90) {
        rem += 2 * (t & 0x0f)
      } else if (t < 0xa0) {
        rem += t & 0x0f
      } else if (t < 0xc0) {
        this.need(t & 0x1f)
        this.p += t & 0x1f
      } else {
        switch (t) {
          case 0xc0:
          case 0xc2:
          case 0xc3:
            break
          case 0xc4:
          case 0xd9: {
            const n = this.u8()
            this.need(n)
            this.p += n
            break
          }
          case 0xc5:
          case 0xda: {
            const n = this.u16()
            this.need(n)
            this.p += n
            break
          }
          case 0xc6:
          case 0xdb: {
            const n = this.u32()
            this.need(n)
            this.p += n
            break
          }
          case 0xc7: {
            const n = this.u8() + 1
            this.need(n)
            this.p += n
            break
          }
          case 0xc8: {
            const n = this.u16() + 1
            this.need(n)
            this.p += n
            break
          }
          case 0xc9: {
            const n = this.u32() + 1
            this.need(n)
            this.p += n
            break
          }
          case 0xcc:
          case 0xd0:
            this.need(1)
            this.p += 1
            break
          case 0xcd:
          case 0xd1:
            this.need(2)
            this.p += 2
            break
          case 0xca:
          case 0xce:
          case 0xd2:
            this.need(4)
            this.p += 4
            break
          case 0xcb:
          case 0xcf:
          case 0xd3:
            this.need(8)
            this.p += 8
            break
          case 0xd4:
            this.need(2)
            this.p += 2
            break
          case 0xd5:
            this.need(3)
            this.p += 3
            break
          case 0xd6:
            this.need(5)
            this.p += 5
            break
          case 0xd7:
            this.need(9)
            this.p += 9
            break
          case 0xd8:
            this.need(17)
            this.p += 17
            break
          case 0xdc:
            rem += this.u16()
            break
          case 0xdd:
            rem += this.u32()
            break
          case 0xde:
            rem += 2 * this.u16()
            break
          case 0xdf:
            rem += 2 * this.u32()
            break
          default: // 0xc1: never used
            throw new MalformedError(`invalid msgpack type byte 0x${t.toString(16)}`)
        }
      }
      // Every pending value needs at least one byte: a count beyond that is a lie.
      if (rem > this.e - this.p) throw new MalformedError('msgpack container longer than the frame')
    }
  }

  /**
   * The length of the map whose header is at the cursor (cursor moved past it), or -1 (cursor
   * not moved) when the value there is not a map.
   */
  mapHeader(): number {
    this.need(1)
    const t = this.b[this.p]!
    if (t >= 0x80 && t < 0x90) {
      this.p++
      return t & 0x0f
    }
    if (t === 0xde) {
      this.p++
      return this.u16()
    }
    if (t === 0xdf) {
      this.p++
      return this.u32()
    }
    return -1
  }

  /** Like mapHeader, for arrays. */
  arrayHeader(): number {
    this.need(1)
    const t = this.b[this.p]!
    if (t >= 0x90 && t < 0xa0) {
      this.p++
      return t & 0x0f
    }
    if (t === 0xdc) {
      this.p++
      return this.u16()
    }
    if (t === 0xdd) {
      this.p++
      return this.u32()
    }
    return -1
  }

  /** Length of the str whose header is at the cursor (cursor moved past the header), or -1 (not moved) when it is not a str. */
  strHeader(): number {
    this.need(1)
    const t = this.b[this.p]!
    if (t >= 0xa0 && t < 0xc0) {
      this.p++
      return t & 0x1f
    }
    if (t === 0xd9) {
      this.p++
      return this.u8()
    }
    if (t === 0xda) {
      this.p++
      return this.u16()
    }
    if (t === 0xdb) {
      this.p++
      return this.u32()
    }
    return -1
  }

  /** Like strHeader, for bin. */
  binHeader(): number {
    this.need(1)
    const t = this.b[this.p]!
    if (t === 0xc4) {
      this.p++
      return this.u8()
    }
    if (t === 0xc5) {
      this.p++
      return this.u16()
    }
    if (t === 0xc6) {
      this.p++
      return this.u32()
    }
    return -1
  }

  /**
   * Reads one value (see the module comment for the mapping). Throws MalformedError for bytes
   * that are not msgpack, an extension type, invalid UTF-8 in a str, or nesting beyond MAX_DEPTH.
   * `copyBin` false returns bin values as views into the input.
   */
  value(copyBin = true, depth = 0): unknown {
    if (this.p >= this.e) throw new MalformedError('truncated msgpack value')
    const b = this.b
    const t = b[this.p++]!
    if (t < 0x80) return t
    if (t >= 0xe0) return t - 0x100
    if (t < 0x90) return this.map(t & 0x0f, copyBin, depth)
    if (t < 0xa0) return this.array(t & 0x0f, copyBin, depth)
    if (t < 0xc0) return this.str(t & 0x1f)
    switch (t) {
      case 0xc0:
        return null
      case 0xc2:
        return false
      case 0xc3:
        return true
      case 0xc4:
        return this.bin(this.u8(), copyBin)
      case 0xc5:
        return this.bin(this.u16(), copyBin)
      case 0xc6:
        return this.bin(this.u32(), copyBin)
      case 0xca: {
        this.need(4)
        const v = this.view().getFloat32(this.p)
        this.p += 4
        return v
      }
      case 0xcb: {
        this.need(8)
        const v = this.view().getFloat64(this.p)
        this.p += 8
        return v
      }
      case 0xcc:
        return this.u8()
      case 0xcd:
        return this.u16()
      case 0xce:
        return this.u32()
      case 0xcf:
        return this.u64()
      case 0xd0:
        return (this.u8() << 24) >> 24
      case 0xd1:
        return (this.u16() << 16) >> 16
      case 0xd2:
        return this.u32() | 0
      case 0xd3:
        return this.i64()
      case 0xd9:
        return this.str(this.u8())
      case 0xda:
        return this.str(this.u16())
      case 0xdb:
        return this.str(this.u32())
      case 0xdc:
        return this.array(this.u16(), copyBin, depth)
      case 0xdd:
        return this.array(this.u32(), copyBin, depth)
      case 0xde:
        return this.map(this.u16(), copyBin, depth)
      case 0xdf:
        return this.map(this.u32(), copyBin, depth)
      default:
        if (t === 0xc1) throw new MalformedError('invalid msgpack type byte 0xc1')
        throw new MalformedError('msgpack extension types are not allowed in application data')
    }
  }

  str(len: number): string {
    this.need(len)
    const s = decodeUtf8(this.b, this.p, len)
    if (s === undefined) throw new MalformedError('str is not valid UTF-8')
    this.p += len
    return s
  }

  bin(len: number, copy: boolean): Uint8Array {
    this.need(len)
    const start = this.p
    this.p += len
    // Plain Uint8Arrays either way (a Buffer input would make subarray/slice return Buffer
    // views, and Buffer#slice does not copy).
    if (!copy) return new Uint8Array(this.b.buffer, this.b.byteOffset + start, len)
    return copyBytes(this.b, start, len)
  }

  array(n: number, copyBin: boolean, depth: number): unknown[] {
    if (depth >= MAX_DEPTH) throw new MalformedError(`msgpack value nested deeper than ${MAX_DEPTH} levels`)
    if (n > this.e - this.p) throw new MalformedError('msgpack array longer than the frame')
    const out = new Array<unknown>(n)
    for (let i = 0; i < n; i++) out[i] = this.value(copyBin, depth + 1)
    return out
  }

  map(n: number, copyBin: boolean, depth: number): Record<string, unknown> | Map<unknown, unknown> {
    if (depth >= MAX_DEPTH) throw new MalformedError(`msgpack value nested deeper than ${MAX_DEPTH} levels`)
    if (2 * n > this.e - this.p) throw new MalformedError('msgpack map longer than the frame')
    const obj: Record<string, unknown> = {}
    for (let i = 0; i < n; i++) {
      const k = this.value(copyBin, depth + 1)
      if (typeof k !== 'string') return this.mapFrom(obj, k, n - i, copyBin, depth)
      const v = this.value(copyBin, depth + 1)
      if (k === '__proto__') Object.defineProperty(obj, k, { value: v, enumerable: true, writable: true, configurable: true })
      else obj[k] = v
    }
    return obj
  }

  /** Continues a map as a `Map` once a non-string key shows up. */
  private mapFrom(obj: Record<string, unknown>, key: unknown, left: number, copyBin: boolean, depth: number): Map<unknown, unknown> {
    const m = new Map<unknown, unknown>(Object.entries(obj))
    m.set(key, this.value(copyBin, depth + 1))
    for (let i = 1; i < left; i++) {
      const k = this.value(copyBin, depth + 1)
      m.set(k, this.value(copyBin, depth + 1))
    }
    return m
  }
}

/**
 * Reads exactly one msgpack value from `bytes` (trailing bytes are an error). Ints beyond
 * ±(2^53 − 1) come back as bigint; bin values are copies. Throws PeonyError
 * `PEONY_BROKER_MALFORMED` for anything that is not one well-formed value, an extension type,
 * invalid UTF-8, or nesting deeper than MAX_DEPTH.
 */
export function unpackValue(bytes: Uint8Array): unknown {
  const r = new Reader(bytes)
  try {
    const v = r.value()
    if (r.p !== r.e) throw new MalformedError(`${r.e - r.p} trailing bytes after the msgpack value`)
    return v
  } catch (err) {
    if (err instanceof MalformedError) throw new PeonyError(BrokerErrorCode.MALFORMED, err.message)
    throw new PeonyError(BrokerErrorCode.MALFORMED, 'msgpack value could not be read', { cause: err })
  }
}

/**
 * The msgpack writer of protocol v1 (docs/protocol.md §0): an integer is always a msgpack int in
 * its smallest encoding (never a float, at any size up to 64 bits), a non-integral number is a
 * float64, a bigint an int64/uint64. The envelope encoders (tasks, egress) build on the `Writer`
 * here; application data inside bodies goes through `packValue` (read back by `unpackValue` in
 * msgpack-reader.ts).
 *
 * Value mapping (the reader's is the inverse):
 *   nil ← null, undefined (an object property holding undefined is left out)
 *   bool ← boolean · int ← safe-integer number | bigint · float64 ← any other number
 *   str ← string · bin ← Uint8Array (any ArrayBufferView/ArrayBuffer packs as bin)
 *   array ← Array · map ← plain object (string keys) | Map
 * Extension types are not application data (§0): they are refused.
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
    // Longer strings: TextEncoder writes them in one pass into the worst case (3 bytes per UTF-16
    // unit) after the largest header that case needs; when the real length takes a smaller header,
    // the bytes move back to meet it (n ≥ 64, so the length is ≥ 64: never a fixstr).
    const max = n * 3
    const room = max < 0x100 ? 2 : max < 0x10000 ? 3 : 5
    this.ensure(room + max)
    const start = this.pos + room
    const len = textEncoder.encodeInto(s, this.buf.subarray(start, start + max)).written
    this.strHeader(len)
    if (this.pos !== start) this.buf.copyWithin(this.pos, start, start + len)
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

/**
 * The generic msgpack reader of protocol v1 (docs/protocol.md §0): an int beyond ±(2^53 − 1)
 * reads back as a `bigint`, every other int as a `number`, so integers stay exact at every size
 * up to 64 bits. The envelope decoders and the body codec read through its `Reader`;
 * application data comes back from `unpackValue`.
 *
 * Value mapping (the writer's, msgpack-writer.ts, is the inverse):
 *   nil → null · bool → boolean · int → number (safe) | bigint · float32/float64 → number
 *   str → string · bin → Uint8Array (a copy) · array → Array
 *   map with only string keys → plain object · map with any other key → Map
 * Extension types are not application data (§0): they are refused.
 */
import { BrokerErrorCode, PeonyError } from '../errors.ts'
import { MAX_DEPTH } from './msgpack-writer.ts'

const TWO32 = 0x1_0000_0000

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

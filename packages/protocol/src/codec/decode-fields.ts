/**
 * The field reader behind the envelope decoders (decode-tasks.ts, decode-egress.ts): a cursor over
 * one frame, key matching without allocation, integer reads that tell an int from a float at
 * every size, the per-element error state, and one reader per field kind (int32, int64, uint64,
 * str, uid, bin) that validates and records a coded error instead of throwing.
 *
 * Decoding rules: non-string map keys are ignored, the last of duplicate keys wins, unknown keys
 * are skipped without allocating, `nil` is absent. 64-bit values are a `number` when they are
 * safe integers and a `bigint` otherwise. `body` is a zero-copy view into the frame.
 *
 * Implementation note: the decoder keeps its cursor in module state (one frame at a time; no
 * user code runs during a decode, so there is no re-entrance).
 */
import { BrokerErrorCode } from '../errors.ts'
import type { Int64, Task, Uid } from '../task.ts'
import type { Rejection } from './decode-frame.ts'
import { MalformedError, Reader, decodeUtf8 } from './msgpack-reader.ts'

// Field ids: task fields in protocol table order (§1.1), then egress-only keys.
export const F_CMD = 0
export const F_UID = 1
export const F_NODE_ID = 2
export const F_CONN_ID = 3
export const F_TAG = 4
export const F_USERDATA = 5
export const F_CUSTOM = 6
export const F_FLAGS = 7
export const F_CLIENT_IP = 8
export const F_RET = 9
export const F_BODY = 10
export const F_TS = 11
export const F_UIDS = 12
export const F_EXCLUDE = 13
export const F_ROWS = 14
export const F_SENDER = 15
export const F_SEQ = 16
export const F_ACK = 17

export const KEY_NAMES = [
  'cmd',
  'uid',
  'node_id',
  'conn_id',
  'tag',
  'userdata',
  'custom',
  'flags',
  'client_ip',
  'ret',
  'body',
  'ts',
  'uids',
  'exclude',
  'rows',
  'sender',
  'seq',
  'ack',
] as const

export const TASK_KEYS = (1 << 12) - 1

/** Big-endian value of up to 4 ASCII chars of `s` from `at` (the key-matching words). */
function word(s: string, at: number, n = 4): number {
  let w = 0
  for (let i = 0; i < n; i++) w = w * 256 + s.charCodeAt(at + i)
  return w
}
const W_CMD = word('cmd', 0, 3)
const W_UID = word('uid', 0, 3)
const W_TAG = word('tag', 0, 3)
const W_RET = word('ret', 0, 3)
const W_SEQ = word('seq', 0, 3)
const W_ACK = word('ack', 0, 3)
const W_TS = word('ts', 0, 2)
const W_BODY = word('body', 0)
const W_UIDS = word('uids', 0)
const W_ROWS = word('rows', 0)
const W_NODE = word('node', 0)
const W_CONN = word('conn', 0)
const W__ID = word('_id', 0, 3)
const W_EXCL = word('excl', 0)
const W_UDE = word('ude', 0, 3)
const W_USER = word('user', 0)
const W_DATA = word('data', 0)
const W_CLIE = word('clie', 0)
const W_NT_I = word('nt_i', 0)
const W_CUST = word('cust', 0)
const W_SEND = word('send', 0)
const W_OM = word('om', 0, 2)
const W_ER = word('er', 0, 2)
const W_FLAG = word('flag', 0)

// ---- cursor ----------------------------------------------------------------------------------

const EMPTY = new Uint8Array(0)
export const r = new Reader(EMPTY)
let b: Uint8Array = EMPTY

export function begin(frame: Uint8Array): void {
  b = frame
  r.b = frame
  r.p = 0
  r.e = frame.length
}

export function end(): void {
  b = EMPTY
  r.b = EMPTY
  r.p = 0
  r.e = 0
}

/** Field id of the key bytes at [p, p+len) (all inside the frame), or −1. */
function keyId(p: number, len: number): number {
  if (len === 3) {
    const w = (b[p]! << 16) | (b[p + 1]! << 8) | b[p + 2]!
    if (w === W_CMD) return F_CMD
    if (w === W_UID) return F_UID
    if (w === W_TAG) return F_TAG
    if (w === W_RET) return F_RET
    if (w === W_SEQ) return F_SEQ
    if (w === W_ACK) return F_ACK
    return -1
  }
  if (len < 4) return len === 2 && ((b[p]! << 8) | b[p + 1]!) === W_TS ? F_TS : -1
  const w = b[p]! * 0x1000000 + ((b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!)
  switch (len) {
    case 4:
      if (w === W_BODY) return F_BODY
      if (w === W_UIDS) return F_UIDS
      if (w === W_ROWS) return F_ROWS
      return -1
    case 7: {
      const v = (b[p + 4]! << 16) | (b[p + 5]! << 8) | b[p + 6]!
      if (w === W_NODE) return v === W__ID ? F_NODE_ID : -1
      if (w === W_CONN) return v === W__ID ? F_CONN_ID : -1
      if (w === W_EXCL) return v === W_UDE ? F_EXCLUDE : -1
      return -1
    }
    case 8:
      return w === W_USER && b[p + 4]! * 0x1000000 + ((b[p + 5]! << 16) | (b[p + 6]! << 8) | b[p + 7]!) === W_DATA ? F_USERDATA : -1
    case 9:
      return w === W_CLIE && b[p + 4]! * 0x1000000 + ((b[p + 5]! << 16) | (b[p + 6]! << 8) | b[p + 7]!) === W_NT_I && b[p + 8] === 0x70 ? F_CLIENT_IP : -1
    case 6: {
      const v = (b[p + 4]! << 8) | b[p + 5]!
      if (w === W_CUST) return v === W_OM ? F_CUSTOM : -1
      if (w === W_SEND) return v === W_ER ? F_SENDER : -1
      return -1
    }
    case 5:
      return w === W_FLAG && b[p + 4] === 0x73 ? F_FLAGS : -1
    default:
      return -1
  }
}

/**
 * Reads the key at the cursor. Returns its field id, −1 for a str key we do not know, −2 for a
 * non-str key (the key has been skipped in every case).
 */
export function readKey(): number {
  const p = r.p
  if (p >= r.e) throw new MalformedError('truncated map')
  const t = b[p]!
  let len: number
  let kp: number
  if (t >= 0xa0 && t < 0xc0) {
    len = t & 0x1f
    kp = p + 1
  } else {
    len = r.strHeader()
    if (len < 0) {
      r.skip()
      return -2
    }
    kp = r.p
  }
  if (kp + len > r.e) throw new MalformedError('truncated map key')
  r.p = kp + len
  return keyId(kp, len)
}

// ---- integer fields --------------------------------------------------------------------------

export const I_NUM = 0 // safe integer in iv
export const I_BIG = 1 // int64 beyond ±(2^53−1) in ib
export const I_U64 = 2 // uint64 above int64 max in ib
export const I_NIL = 3
export const I_WRONG = 4 // not an int (skipped)

export let iv = 0
export let ib = 0n

const TWO32 = 0x1_0000_0000

export function readInt(): number {
  const p = r.p
  if (p >= r.e) throw new MalformedError('truncated value')
  const t = b[p]!
  if (t < 0x80) {
    r.p = p + 1
    iv = t
    return I_NUM
  }
  if (t >= 0xe0) {
    r.p = p + 1
    iv = t - 0x100
    return I_NUM
  }
  switch (t) {
    case 0xcc:
      r.p = p + 1
      iv = r.u8()
      return I_NUM
    case 0xcd:
      r.p = p + 1
      iv = r.u16()
      return I_NUM
    case 0xce:
      r.p = p + 1
      iv = r.u32()
      return I_NUM
    case 0xcf: {
      r.p = p + 1
      const hi = r.u32()
      const lo = r.u32()
      const v = hi * TWO32 + lo
      if (v <= Number.MAX_SAFE_INTEGER) {
        iv = v
        return I_NUM
      }
      ib = (BigInt(hi) << 32n) | BigInt(lo)
      return hi >= 0x80000000 ? I_U64 : I_BIG
    }
    case 0xd0:
      r.p = p + 1
      iv = (r.u8() << 24) >> 24
      return I_NUM
    case 0xd1:
      r.p = p + 1
      iv = (r.u16() << 16) >> 16
      return I_NUM
    case 0xd2:
      r.p = p + 1
      iv = r.u32() | 0
      return I_NUM
    case 0xd3: {
      r.p = p + 1
      const hi = r.u32() | 0
      const lo = r.u32()
      const v = hi * TWO32 + lo
      if (Number.isSafeInteger(v)) {
        iv = v
        return I_NUM
      }
      ib = (BigInt(hi) << 32n) + BigInt(lo)
      return I_BIG
    }
    case 0xc0:
      r.p = p + 1
      return I_NIL
    default:
      r.skip()
      return I_WRONG
  }
}

// ---- per-element error state -----------------------------------------------------------------

/**
 * The element being decoded: `mask` has a bit per field id with a recorded error (its code and
 * message in errCodes/errMsgs), `keyOverride` the key a rejection names when it is not the
 * field's own (`rows[2].uids`). An object, so the task and egress parsers can reset it.
 */
export const errs: { mask: number; keyOverride: string | undefined } = { mask: 0, keyOverride: undefined }

export const errCodes: BrokerErrorCode[] = new Array<BrokerErrorCode>(18).fill(BrokerErrorCode.MALFORMED)
export const errMsgs: string[] = new Array<string>(18).fill('')

export function fail(f: number, code: BrokerErrorCode, msg: string): void {
  errs.mask |= 1 << f
  errCodes[f] = code
  errMsgs[f] = msg
}

export function wrongType(f: number, want: string): void {
  fail(f, BrokerErrorCode.WRONG_TYPE, `${KEY_NAMES[f]} must be ${want}`)
}

export function outOfRange(f: number, range: string): void {
  fail(f, BrokerErrorCode.OUT_OF_RANGE, `${KEY_NAMES[f]} out of range (${range})`)
}

/** An int32 field; undefined (and maybe an error recorded) when absent or bad. */
export function int32Field(f: number): number | undefined {
  errs.mask &= ~(1 << f)
  const st = readInt()
  if (st === I_NUM) {
    if (iv >= -0x80000000 && iv <= 0x7fffffff) return iv
    outOfRange(f, 'int32')
  } else if (st === I_NIL) {
    return undefined
  } else if (st === I_WRONG) {
    wrongType(f, 'an int')
  } else {
    outOfRange(f, 'int32')
  }
  return undefined
}

/** An int64 field. */
export function int64Field(f: number): Int64 | undefined {
  errs.mask &= ~(1 << f)
  const st = readInt()
  if (st === I_NUM) return iv
  if (st === I_BIG) return ib
  if (st === I_NIL) return undefined
  if (st === I_WRONG) wrongType(f, 'an int')
  else outOfRange(f, 'int64')
  return undefined
}

/** A uint64 field (seq). */
export function uint64Field(f: number): Int64 | undefined {
  errs.mask &= ~(1 << f)
  const st = readInt()
  if (st === I_NUM) {
    if (iv >= 0) return iv
  } else if (st === I_BIG || st === I_U64) {
    if (ib >= 0n) return ib
  } else if (st === I_NIL) {
    return undefined
  } else {
    wrongType(f, 'an int')
    return undefined
  }
  outOfRange(f, 'uint64')
  return undefined
}

/**
 * Starts reading field `f`'s value: clears its error bit and consumes a nil, which counts as
 * absent (returns true). Throws MalformedError when the frame ends here.
 */
export function absentField(f: number): boolean {
  errs.mask &= ~(1 << f)
  if (r.p >= r.e) throw new MalformedError('truncated value')
  if (b[r.p] === 0xc0) {
    r.p++
    return true
  }
  return false
}

/** A str field at most `max` bytes. */
export function strField(f: number, max: number): string | undefined {
  if (absentField(f)) return undefined
  const len = r.strHeader()
  if (len < 0) {
    r.skip()
    wrongType(f, 'a str')
    return undefined
  }
  r.need(len)
  const start = r.p
  r.p += len
  if (len > max) {
    outOfRange(f, `at most ${max} bytes`)
    return undefined
  }
  const s = decodeUtf8(b, start, len)
  if (s === undefined) wrongType(f, 'valid UTF-8')
  return s
}

/** The uid field: int 1…2^63−1 or str 1–128 bytes; 0 and "" are "not logged in" (undefined). */
export function uidField(): Uid | undefined {
  const f = F_UID
  errs.mask &= ~(1 << f)
  if (r.p >= r.e) throw new MalformedError('truncated value')
  const t = b[r.p]!
  if ((t >= 0xa0 && t < 0xc0) || t === 0xd9 || t === 0xda || t === 0xdb) {
    const len = r.strHeader()
    r.need(len)
    const start = r.p
    r.p += len
    if (len === 0) return undefined
    if (len > 128) {
      outOfRange(f, 'a str uid is 1–128 bytes')
      return undefined
    }
    const s = decodeUtf8(b, start, len)
    if (s === undefined) wrongType(f, 'valid UTF-8')
    return s
  }
  const st = readInt()
  if (st === I_NUM) {
    if (iv > 0) return iv
    if (iv === 0) return undefined
  } else if (st === I_BIG) {
    if (ib > 0n) return ib
  } else if (st === I_NIL) {
    return undefined
  } else if (st === I_WRONG) {
    wrongType(f, 'an int or a str')
    return undefined
  }
  outOfRange(f, 'an int uid is 1…2^63−1')
  return undefined
}

/** A bin field: a zero-copy view into the frame. */
export function binField(f: number): Uint8Array | undefined {
  if (absentField(f)) return undefined
  const len = r.binHeader()
  if (len < 0) {
    r.skip()
    wrongType(f, 'a bin')
    return undefined
  }
  r.need(len)
  const start = r.p
  r.p += len
  // A plain Uint8Array view even when the frame is a Buffer (zeromq's), so tasks look the same
  // whatever the source, and structured clone sees an ordinary typed array.
  return new Uint8Array(b.buffer, b.byteOffset + start, len)
}

/** Builds the rejection of the element whose state is in errs.mask/errCodes. */
export function rejection(index: number, hasCmd: boolean, partial: Partial<Task>, relevant: number): Rejection {
  const mask = errs.mask & relevant
  let f = -1
  if (mask & 1) f = F_CMD
  else if (!hasCmd) {
    return { code: BrokerErrorCode.MISSING_FIELD, message: 'cmd is required', index, key: 'cmd', partial }
  } else {
    for (let i = 1; i < 18; i++) {
      if (mask & (1 << i)) {
        f = i
        break
      }
    }
  }
  const key = errs.keyOverride ?? KEY_NAMES[f]!
  return { code: errCodes[f]!, message: errMsgs[f]!, index, key, partial }
}

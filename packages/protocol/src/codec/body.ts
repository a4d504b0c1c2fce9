/**
 * The default business-body codec (docs/protocol.md §4): msgpack maps
 *   request `{cmd: int | str, sn?: int, data?: any}`
 *   reply   `{cmd, sn, ret: int, data?: any}` (cmd/sn echoed; absent when they could not be read)
 *   push    `{cmd, data}` (no sn, no ret)
 * with protocol v1's integer rules (see msgpack-writer.ts and msgpack-reader.ts). Body codecs are
 * pluggable: anything that implements `BodyCodec` can replace this one.
 */
import { BrokerErrorCode, PeonyError } from '../errors.ts'
import type { Int64 } from '../task.ts'
import { MalformedError, Reader } from './msgpack-reader.ts'
import { withWriter, type Writer } from './msgpack-writer.ts'

/** A decoded client request body. */
export interface RequestBody {
  /** The business command handlers are routed on (not the task's `cmd`). */
  cmd: number | string
  /** Request serial number, echoed in the reply. */
  sn?: Int64 | undefined
  /** Application data: nil, bool, int, float, str, bin, array, map. */
  data?: unknown
}

/** A reply to a request. `cmd`/`sn` echo the request; both are left out when the request body was unreadable (-10004). */
export interface ReplyBody {
  cmd?: number | string | undefined
  sn?: Int64 | undefined
  /** 0 = success; Peony's own codes are ≤ −10000 (ReplyCode). */
  ret: number
  data?: unknown
}

/** A message the server sends unasked: no `sn`, no `ret`. */
export interface PushBody {
  cmd: number | string
  data?: unknown
}

/** A pluggable business-body codec. */
export interface BodyCodec {
  /** A short name for logs and configuration (`'msgpack'`). */
  readonly name: string
  /** Decodes a request body; throws PeonyError `PEONY_BROKER_BODY_UNDECODABLE` when it cannot. */
  decodeRequest(body: Uint8Array): RequestBody
  /** Best effort, never throws: `cmd` and `sn` when they can be read, so an error reply can echo them. */
  peekRequest(body: Uint8Array): { cmd?: number | string; sn?: Int64 }
  /** Encodes a reply; throws PeonyError `PEONY_BROKER_ENCODE_FAILED` for values it cannot encode. */
  encodeReply(reply: ReplyBody): Uint8Array
  /** Encodes a push; throws PeonyError `PEONY_BROKER_ENCODE_FAILED` for values it cannot encode. */
  encodePush(push: PushBody): Uint8Array
  /** Decodes a reply or a push (for tests and clients); throws `PEONY_BROKER_BODY_UNDECODABLE`. */
  decodeReply(body: Uint8Array): ReplyBody | PushBody
}

function undecodable(message: string, cause?: unknown): PeonyError {
  return new PeonyError(BrokerErrorCode.BODY_UNDECODABLE, message, cause === undefined ? {} : { cause })
}

function encodeFailed(message: string): PeonyError {
  return new PeonyError(BrokerErrorCode.ENCODE_FAILED, message)
}

const K_CMD = 1
const K_SN = 2
const K_DATA = 3
const K_RET = 4

/** Which body key the str at the cursor is (cursor moved past it), 0 for another str, -1 (not moved) for a non-str key. */
function bodyKey(r: Reader): number {
  const len = r.strHeader()
  if (len < 0) return -1
  r.need(len)
  const b = r.b
  const p = r.p
  r.p += len
  if (len === 3) {
    const c0 = b[p]
    const c1 = b[p + 1]
    const c2 = b[p + 2]
    if (c0 === 0x63 && c1 === 0x6d && c2 === 0x64) return K_CMD // cmd
    if (c0 === 0x72 && c1 === 0x65 && c2 === 0x74) return K_RET // ret
  } else if (len === 2) {
    if (b[p] === 0x73 && b[p + 1] === 0x6e) return K_SN // sn
  } else if (len === 4) {
    if (b[p] === 0x64 && b[p + 1] === 0x61 && b[p + 2] === 0x74 && b[p + 3] === 0x61) return K_DATA // data
  }
  return 0
}

interface RawBody {
  cmd: unknown
  sn: unknown
  ret: unknown
  data: unknown
  hasData: boolean
  /** Bit k set when key k's (last) value was a msgpack float: the generic reader cannot tell 2.0 from 2. */
  floats: number
}

/** Reads a body map; throws MalformedError for anything that is not exactly one well-formed map. */
function readBodyMap(body: Uint8Array): RawBody {
  const r = new Reader(body)
  const n = r.mapHeader()
  if (n < 0) throw new MalformedError('body is not a msgpack map')
  const out: RawBody = { cmd: undefined, sn: undefined, ret: undefined, data: undefined, hasData: false, floats: 0 }
  for (let i = 0; i < n; i++) {
    const k = bodyKey(r)
    if (k <= 0) {
      if (k < 0) r.skip()
      r.skip()
      continue
    }
    r.need(1)
    const t = r.b[r.p]
    if (t === 0xca || t === 0xcb) out.floats |= 1 << k
    else out.floats &= ~(1 << k)
    const v = r.value(true, 1)
    if (k === K_CMD) out.cmd = v
    else if (k === K_SN) out.sn = v
    else if (k === K_RET) out.ret = v
    else {
      out.data = v
      out.hasData = true
    }
  }
  if (r.p !== r.e) throw new MalformedError(`${r.e - r.p} trailing bytes after the body`)
  return out
}

function isCmd(v: unknown): v is number | string {
  return typeof v === 'string' || (typeof v === 'number' && Number.isInteger(v))
}

function readBody(body: Uint8Array): RawBody {
  if (!(body instanceof Uint8Array)) throw undecodable('body is not bytes')
  try {
    return readBodyMap(body)
  } catch (err) {
    throw undecodable(err instanceof Error ? err.message : 'body is not a msgpack map', err)
  }
}

/** Reads the sn of a body: an int (nil = absent); a float sn is refused through `RawBody.floats`. */
function checkSn(sn: unknown): Int64 | undefined {
  if (sn === null || sn === undefined) return undefined
  if (typeof sn === 'bigint') return sn
  if (typeof sn === 'number' && Number.isSafeInteger(sn)) return sn
  throw undecodable('body sn is not an int')
}

function writeCmd(w: Writer, cmd: unknown): void {
  if (typeof cmd === 'string') w.str(cmd)
  else if (typeof cmd === 'number' && Number.isSafeInteger(cmd)) w.int(cmd)
  else throw encodeFailed('body cmd must be a safe integer or a string')
}

/** An int field (the sn): any msgpack int, int64 or uint64, so a reply echoes every sn a request can carry. */
function writeInt(w: Writer, v: unknown, what: string): void {
  if (typeof v === 'number' && Number.isSafeInteger(v)) w.int(v)
  else if (typeof v === 'bigint' && v >= -(2n ** 63n) && v < 2n ** 64n) w.bigint(v)
  else throw encodeFailed(`body ${what} must be an int64 or uint64 integer`)
}

/** The default msgpack body codec (protocol §4). */
export const msgpackBodyCodec: BodyCodec = {
  name: 'msgpack',

  decodeRequest(body: Uint8Array): RequestBody {
    const raw = readBody(body)
    if (raw.cmd === undefined || raw.cmd === null) throw undecodable('body has no cmd')
    if (!isCmd(raw.cmd)) throw undecodable('body cmd is neither an int nor a str')
    if (raw.floats & ((1 << K_CMD) | (1 << K_SN))) throw undecodable('body cmd/sn is a float, not an int')
    const sn = checkSn(raw.sn)
    const req: RequestBody = { cmd: raw.cmd, sn, data: undefined }
    if (raw.hasData) req.data = raw.data
    return req
  },

  peekRequest(body: Uint8Array): { cmd?: number | string; sn?: Int64 } {
    const out: { cmd?: number | string; sn?: Int64 } = {}
    try {
      if (!(body instanceof Uint8Array)) return out
      const r = new Reader(body)
      const n = r.mapHeader()
      if (n < 0) return out
      for (let i = 0; i < n; i++) {
        const k = bodyKey(r)
        if (k === K_CMD || k === K_SN) {
          const t = r.b[r.p]
          const isFloat = t === 0xca || t === 0xcb
          const v = r.value(true, 1)
          if (k === K_CMD) {
            if (!isFloat && isCmd(v)) out.cmd = v
            else delete out.cmd
          } else if (!isFloat && (typeof v === 'bigint' || (typeof v === 'number' && Number.isSafeInteger(v)))) {
            out.sn = v
          } else {
            delete out.sn
          }
          continue
        }
        if (k < 0) r.skip()
        r.skip()
      }
    } catch {
      // best effort: keep what was read before the damage
    }
    return out
  },

  encodeReply(reply: ReplyBody): Uint8Array {
    if (typeof reply.ret !== 'number' || !Number.isSafeInteger(reply.ret)) throw encodeFailed('reply ret must be an integer')
    return withWriter((w) => {
      const hasCmd = reply.cmd !== undefined
      const hasSn = reply.sn !== undefined
      const hasData = reply.data !== undefined
      w.mapHeader(1 + (hasCmd ? 1 : 0) + (hasSn ? 1 : 0) + (hasData ? 1 : 0))
      if (hasCmd) {
        w.str('cmd')
        writeCmd(w, reply.cmd)
      }
      if (hasSn) {
        w.str('sn')
        writeInt(w, reply.sn, 'sn')
      }
      w.str('ret')
      w.int(reply.ret)
      if (hasData) {
        w.str('data')
        w.value(reply.data, 1)
      }
    })
  },

  encodePush(push: PushBody): Uint8Array {
    return withWriter((w) => {
      const hasData = push.data !== undefined
      w.mapHeader(hasData ? 2 : 1)
      w.str('cmd')
      writeCmd(w, push.cmd)
      if (hasData) {
        w.str('data')
        w.value(push.data, 1)
      }
    })
  },

  decodeReply(body: Uint8Array): ReplyBody | PushBody {
    const raw = readBody(body)
    if (raw.floats & ((1 << K_CMD) | (1 << K_SN) | (1 << K_RET))) throw undecodable('reply cmd/sn/ret is a float, not an int')
    const cmd = raw.cmd === null ? undefined : raw.cmd
    if (cmd !== undefined && !isCmd(cmd)) throw undecodable('reply cmd is neither an int nor a str')
    if (raw.ret !== undefined && raw.ret !== null) {
      if (typeof raw.ret !== 'number' || !Number.isSafeInteger(raw.ret)) throw undecodable('reply ret is not an int')
      const reply: ReplyBody = { cmd, sn: checkSn(raw.sn), ret: raw.ret }
      if (raw.hasData) reply.data = raw.data
      return reply
    }
    if (cmd === undefined) throw undecodable('push has no cmd')
    const push: PushBody = { cmd }
    if (raw.hasData) push.data = raw.data
    return push
  },
}

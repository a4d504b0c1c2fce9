/**
 * Envelope decoders: task frames (protocol §0, §1.1), egress frames (§2, §2.1) and acks.
 * They read msgpack type bytes directly, so an int is told from a float at every size, and they
 * never throw for any input bytes: a frame that is not one well-formed msgpack value is one
 * MALFORMED rejection (index −1, nothing else from the frame is used); inside a well-formed
 * frame each batch element is validated on its own and a bad one is one coded rejection.
 *
 * Decoding rules: non-string map keys are ignored, the last of duplicate keys wins, unknown keys
 * are skipped without allocating, `nil` is absent. 64-bit values are a `number` when they are
 * safe integers and a `bigint` otherwise. `body` is a zero-copy view into the frame.
 *
 * Rejection order inside one element: problems with `cmd` first (wrong type, out of range,
 * missing), then the other fields in protocol table order.
 *
 * Implementation note: the decoder keeps its cursor in module state (one frame at a time; no
 * user code runs during a decode, so there is no re-entrance).
 */
import { BrokerErrorCode } from '../errors.ts'
import { Defaults, EgressCmd } from '../protocol.ts'
import type { EgressMessage, Int64, Sequenced, Task, Uid, UsersRow } from '../task.ts'
import { MalformedError, Reader, decodeUtf8 } from './msgpack.ts'

/** One refused frame or batch element. */
export interface Rejection {
  /** Why: FRAME_TOO_LARGE, MALFORMED, NOT_A_MAP, MISSING_FIELD, WRONG_TYPE or OUT_OF_RANGE. */
  code: BrokerErrorCode
  /** Human-readable detail, for logs. */
  message: string
  /** The element's index in a batch; 0 for a frame holding a single map; −1 for the whole frame. */
  index: number
  /** The offending key, when one key is to blame (`rows[2].uids` inside an egress 230). */
  key?: string
  /**
   * What could be read of the element (every field that decoded and validated), so the master
   * can still address a refusal or an error reply (node_id, conn_id, tag, cmd, body).
   */
  partial?: Partial<Task>
}

/** Options of the decoders. */
export interface DecodeOptions {
  /** Largest frame accepted, checked before any decoding. Default Defaults.MAX_FRAME_BYTES (1 MiB). */
  maxFrameBytes?: number
  /**
   * decodeTasks only: also report where each valid task's map lies in the frame (`ranges`), so a
   * caller can forward the original bytes of a task without encoding it again.
   */
  ranges?: boolean
}

/** The result of decoding one intake frame. */
export interface DecodedTasks {
  /** Valid tasks, in frame order. */
  tasks: Task[]
  /** One entry per refused element (or one for the whole frame). */
  rejects: Rejection[]
  /** With `options.ranges`: `[start, end)` byte offsets in the frame of `tasks[i]`'s map at `2i`, `2i + 1`. */
  ranges?: number[]
}

/** The result of decoding one egress frame. */
export interface DecodedEgress {
  messages: (EgressMessage & Sequenced)[]
  rejects: Rejection[]
}

// Field ids: task fields in protocol table order (§1.1), then egress-only keys.
const F_CMD = 0
const F_UID = 1
const F_NODE_ID = 2
const F_CONN_ID = 3
const F_TAG = 4
const F_USERDATA = 5
const F_CUSTOM = 6
const F_FLAGS = 7
const F_CLIENT_IP = 8
const F_RET = 9
const F_BODY = 10
const F_TS = 11
const F_UIDS = 12
const F_EXCLUDE = 13
const F_ROWS = 14
const F_SENDER = 15
const F_SEQ = 16
const F_ACK = 17

const KEY_NAMES = [
  'cmd', 'uid', 'node_id', 'conn_id', 'tag', 'userdata', 'custom', 'flags', 'client_ip', 'ret', 'body', 'ts',
  'uids', 'exclude', 'rows', 'sender', 'seq', 'ack',
] as const

const TASK_KEYS = (1 << 12) - 1

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
const r = new Reader(EMPTY)
let b: Uint8Array = EMPTY

function begin(frame: Uint8Array): void {
  b = frame
  r.b = frame
  r.p = 0
  r.e = frame.length
}

function end(): void {
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
      return w === W_CLIE && b[p + 4]! * 0x1000000 + ((b[p + 5]! << 16) | (b[p + 6]! << 8) | b[p + 7]!) === W_NT_I && b[p + 8] === 0x70
        ? F_CLIENT_IP
        : -1
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
function readKey(): number {
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

const I_NUM = 0 // safe integer in iv
const I_BIG = 1 // int64 beyond ±(2^53−1) in ib
const I_U64 = 2 // uint64 above int64 max in ib
const I_NIL = 3
const I_WRONG = 4 // not an int (skipped)

let iv = 0
let ib = 0n

const TWO32 = 0x1_0000_0000

function readInt(): number {
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

let errMask = 0
const errCodes: BrokerErrorCode[] = new Array<BrokerErrorCode>(18).fill(BrokerErrorCode.MALFORMED)
const errMsgs: string[] = new Array<string>(18).fill('')
let errKeyOverride: string | undefined

function fail(f: number, code: BrokerErrorCode, msg: string): void {
  errMask |= 1 << f
  errCodes[f] = code
  errMsgs[f] = msg
}

function wrongType(f: number, want: string): void {
  fail(f, BrokerErrorCode.WRONG_TYPE, `${KEY_NAMES[f]} must be ${want}`)
}

function outOfRange(f: number, range: string): void {
  fail(f, BrokerErrorCode.OUT_OF_RANGE, `${KEY_NAMES[f]} out of range (${range})`)
}

/** An int32 field; undefined (and maybe an error recorded) when absent or bad. */
function int32Field(f: number): number | undefined {
  errMask &= ~(1 << f)
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
function int64Field(f: number): Int64 | undefined {
  errMask &= ~(1 << f)
  const st = readInt()
  if (st === I_NUM) return iv
  if (st === I_BIG) return ib
  if (st === I_NIL) return undefined
  if (st === I_WRONG) wrongType(f, 'an int')
  else outOfRange(f, 'int64')
  return undefined
}

/** A uint64 field (seq). */
function uint64Field(f: number): Int64 | undefined {
  errMask &= ~(1 << f)
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
function absentField(f: number): boolean {
  errMask &= ~(1 << f)
  if (r.p >= r.e) throw new MalformedError('truncated value')
  if (b[r.p] === 0xc0) {
    r.p++
    return true
  }
  return false
}

/** A str field at most `max` bytes. */
function strField(f: number, max: number): string | undefined {
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
function uidField(): Uid | undefined {
  const f = F_UID
  errMask &= ~(1 << f)
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
function binField(f: number): Uint8Array | undefined {
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

// ---- tasks -----------------------------------------------------------------------------------

function newTask(): Task {
  return {
    cmd: 0,
    uid: undefined,
    nodeId: undefined,
    connId: undefined,
    tag: undefined,
    userdata: undefined,
    custom: undefined,
    flags: undefined,
    clientIp: undefined,
    ret: undefined,
    body: undefined,
    ts: undefined,
  }
}

/** Builds the rejection of the element whose state is in errMask/errCodes. */
function rejection(index: number, hasCmd: boolean, partial: Partial<Task>, relevant: number): Rejection {
  const mask = errMask & relevant
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
  const key = errKeyOverride ?? KEY_NAMES[f]!
  return { code: errCodes[f]!, message: errMsgs[f]!, index, key, partial }
}

/** Parses a task map of `n` entries (cursor after the header) into `out`. */
function parseTask(n: number, index: number, out: DecodedTasks): void {
  const task = newTask()
  let hasCmd = false
  errMask = 0
  for (let i = 0; i < n; i++) {
    const f = readKey()
    if (f < 0 || f > F_TS) {
      r.skip()
      continue
    }
    switch (f) {
      case F_CMD: {
        const v = int32Field(F_CMD)
        hasCmd = v !== undefined || (errMask & 1) !== 0
        task.cmd = v ?? 0
        break
      }
      case F_UID:
        task.uid = uidField()
        break
      case F_NODE_ID:
        task.nodeId = int32Field(F_NODE_ID)
        break
      case F_CONN_ID:
        task.connId = int64Field(F_CONN_ID)
        break
      case F_TAG:
        task.tag = int32Field(F_TAG)
        break
      case F_USERDATA:
        task.userdata = int64Field(F_USERDATA)
        break
      case F_CUSTOM:
        task.custom = int64Field(F_CUSTOM)
        break
      case F_FLAGS: {
        errMask &= ~(1 << F_FLAGS)
        const st = readInt()
        let v: number | undefined
        if (st === I_NUM && iv >= 0 && iv <= 0xffff) v = iv
        else if (st === I_WRONG) wrongType(F_FLAGS, 'an int')
        else if (st !== I_NIL) outOfRange(F_FLAGS, 'uint16')
        task.flags = v
        break
      }
      case F_CLIENT_IP:
        task.clientIp = strField(F_CLIENT_IP, 64)
        break
      case F_RET:
        task.ret = int32Field(F_RET)
        break
      case F_BODY:
        task.body = binField(F_BODY)
        break
      default: // F_TS
        task.ts = int64Field(F_TS)
        break
    }
  }
  if (hasCmd && errMask === 0) {
    out.tasks.push(task)
    return
  }
  const partial: Partial<Task> = task
  if (!hasCmd || errMask & 1) partial.cmd = undefined
  errKeyOverride = undefined
  out.rejects.push(rejection(index, hasCmd, partial, TASK_KEYS))
}

function frameReject(code: BrokerErrorCode, message: string): Rejection {
  return { code, message, index: -1 }
}

function checkFrame(frame: Uint8Array, options: DecodeOptions | undefined): Rejection | undefined {
  if (!(frame instanceof Uint8Array)) throw new TypeError('frame must be a Uint8Array')
  let max: number = Defaults.MAX_FRAME_BYTES
  if (options !== undefined && options.maxFrameBytes !== undefined) {
    max = options.maxFrameBytes
    if (typeof max !== 'number' || !(max >= 0)) throw new RangeError('maxFrameBytes must be a non-negative number')
  }
  if (frame.length > max) {
    return frameReject(BrokerErrorCode.FRAME_TOO_LARGE, `frame of ${frame.length} bytes exceeds the ${max}-byte limit`)
  }
  if (frame.length === 0) return frameReject(BrokerErrorCode.MALFORMED, 'empty frame')
  return undefined
}

function malformed(err: unknown): Rejection {
  return frameReject(BrokerErrorCode.MALFORMED, err instanceof MalformedError ? err.message : 'frame is not one well-formed msgpack value')
}

/**
 * Runs `element` for each map of a frame (a map or an array of maps); other values become
 * NOT_A_MAP rejections. Returns false when the frame is malformed (the caller discards it).
 */
function eachMap(rejects: Rejection[], element: (n: number, index: number, start: number) => void): void {
  const start0 = r.p
  const n = r.mapHeader()
  if (n >= 0) {
    element(n, 0, start0)
  } else {
    const count = r.arrayHeader()
    if (count < 0) {
      r.skip()
      if (r.p !== r.e) throw new MalformedError(`${r.e - r.p} trailing bytes after the msgpack value`)
      rejects.push(frameReject(BrokerErrorCode.NOT_A_MAP, 'frame is neither a map nor an array of maps'))
      return
    }
    if (count > r.e - r.p) throw new MalformedError('array longer than the frame')
    for (let i = 0; i < count; i++) {
      const start = r.p
      const m = r.mapHeader()
      if (m >= 0) {
        element(m, i, start)
      } else {
        r.skip()
        rejects.push({ code: BrokerErrorCode.NOT_A_MAP, message: 'batch element is not a map', index: i })
      }
    }
  }
  if (r.p !== r.e) throw new MalformedError(`${r.e - r.p} trailing bytes after the msgpack value`)
}

/**
 * Decodes one intake frame: a task map, an array of task maps (a batch), or `[]`. Never throws
 * for any input bytes; bad input comes back as coded rejections (see the module comment). Throws
 * TypeError/RangeError only for a non-Uint8Array frame or a bad `maxFrameBytes`.
 */
export function decodeTasks(frame: Uint8Array, options?: DecodeOptions): DecodedTasks {
  const out: DecodedTasks = { tasks: [], rejects: [] }
  const pre = checkFrame(frame, options)
  if (pre !== undefined) {
    out.rejects.push(pre)
    return out
  }
  begin(frame)
  try {
    if (options?.ranges === true) {
      const ranges: number[] = (out.ranges = [])
      eachMap(out.rejects, (n, index, start) => {
        const before = out.tasks.length
        parseTask(n, index, out)
        if (out.tasks.length > before) ranges.push(start, r.p)
      })
    } else {
      eachMap(out.rejects, (n, index) => parseTask(n, index, out))
    }
    return out
  } catch (err) {
    return { tasks: [], rejects: [malformed(err)] }
  } finally {
    end()
  }
}

// ---- egress ----------------------------------------------------------------------------------

const bit = (f: number): number => 1 << f
const SEQ_KEYS = bit(F_SENDER) | bit(F_SEQ)
const CONN_KEYS = bit(F_NODE_ID) | bit(F_CONN_ID)

/** Keys each egress cmd uses (§2.1); other keys are ignored for that cmd. */
const EGRESS_KEYS: Record<number, number> = {
  [EgressCmd.WRITE_TO_CLIENT]: bit(F_CMD) | CONN_KEYS | bit(F_BODY) | bit(F_TAG) | bit(F_RET) | SEQ_KEYS,
  [EgressCmd.WRITE_TO_USERS]: bit(F_CMD) | bit(F_ROWS) | SEQ_KEYS,
  [EgressCmd.CLOSE_CLIENT]: bit(F_CMD) | CONN_KEYS | SEQ_KEYS,
  [EgressCmd.CLOSE_USERS]: bit(F_CMD) | bit(F_UIDS) | bit(F_USERDATA) | bit(F_EXCLUDE) | SEQ_KEYS,
  [EgressCmd.LOGIN_CLIENT]: bit(F_CMD) | CONN_KEYS | bit(F_UID) | bit(F_USERDATA) | SEQ_KEYS,
  [EgressCmd.LOGOUT_CLIENT]: bit(F_CMD) | CONN_KEYS | SEQ_KEYS,
  [EgressCmd.CLEAR_CLIENT_TASKS]: bit(F_CMD) | CONN_KEYS | SEQ_KEYS,
  [EgressCmd.WRITE_TO_WORKER]: bit(F_CMD) | bit(F_UID) | CONN_KEYS | bit(F_BODY) | SEQ_KEYS,
}

/** Required keys per egress cmd (100 needs uid or node_id+conn_id besides, checked apart). */
const EGRESS_REQUIRED: Record<number, number> = {
  [EgressCmd.WRITE_TO_CLIENT]: CONN_KEYS | bit(F_BODY),
  [EgressCmd.WRITE_TO_USERS]: bit(F_ROWS),
  [EgressCmd.CLOSE_CLIENT]: CONN_KEYS,
  [EgressCmd.CLOSE_USERS]: bit(F_UIDS),
  [EgressCmd.LOGIN_CLIENT]: CONN_KEYS | bit(F_UID),
  [EgressCmd.LOGOUT_CLIENT]: CONN_KEYS,
  [EgressCmd.CLEAR_CLIENT_TASKS]: CONN_KEYS,
  [EgressCmd.WRITE_TO_WORKER]: bit(F_BODY),
}

/** Smallest uid allowed in `uids`/`exclude` lists: the special sets −1, −2, −3 (§2.1). */
const MIN_LIST_UID = -3

/** An int[] of uids (`uids`, `exclude`): each int64 ≥ −3. Records errors under `f` (key `keyName`). */
function uidListField(f: number, keyName: string): Int64[] | undefined {
  if (absentField(f)) return undefined
  const n = r.arrayHeader()
  if (n < 0) {
    r.skip()
    fail(f, BrokerErrorCode.WRONG_TYPE, `${keyName} must be an array of ints`)
    return undefined
  }
  if (n > r.e - r.p) throw new MalformedError('array longer than the frame')
  const list: Int64[] = new Array<Int64>(n)
  let ok = true
  for (let i = 0; i < n; i++) {
    const st = readInt()
    if (!ok) continue
    if (st === I_NUM && iv >= MIN_LIST_UID) list[i] = iv
    else if (st === I_BIG && ib > 0n) list[i] = ib
    else {
      ok = false
      if (st === I_WRONG || st === I_NIL) fail(f, BrokerErrorCode.WRONG_TYPE, `${keyName}[${i}] must be an int`)
      else fail(f, BrokerErrorCode.OUT_OF_RANGE, `${keyName}[${i}] out of range (a uid or −1, −2, −3)`)
    }
  }
  return ok ? list : undefined
}

const R_UIDS = 1
const R_BODY = 2
const R_USERDATA = 3
const R_EXCLUDE = 4

/** The `rows` field of a 230. */
function rowsField(): UsersRow[] | undefined {
  const f = F_ROWS
  if (absentField(f)) return undefined
  const n = r.arrayHeader()
  if (n < 0) {
    r.skip()
    fail(f, BrokerErrorCode.WRONG_TYPE, 'rows must be an array of maps')
    return undefined
  }
  if (n > r.e - r.p) throw new MalformedError('array longer than the frame')
  const rows: UsersRow[] = []
  let bad = false
  for (let i = 0; i < n; i++) {
    const m = r.mapHeader()
    if (m < 0) {
      r.skip()
      if (!bad) fail(f, BrokerErrorCode.WRONG_TYPE, `rows[${i}] must be a map`)
      bad = true
      continue
    }
    let uids: Int64[] | undefined
    let body: Uint8Array | undefined
    let userdata: Int64 | undefined
    let exclude: Int64[] | undefined
    // Row fields use the same readers; their errors land in scratch slots and are moved to `rows`.
    const saved = errMask
    const savedCodes = [errCodes[F_UIDS]!, errCodes[F_BODY]!, errCodes[F_USERDATA]!, errCodes[F_EXCLUDE]!]
    const savedMsgs = [errMsgs[F_UIDS]!, errMsgs[F_BODY]!, errMsgs[F_USERDATA]!, errMsgs[F_EXCLUDE]!]
    errMask = 0
    for (let j = 0; j < m; j++) {
      const k = readKey()
      let rk = 0
      if (k === F_UIDS) rk = R_UIDS
      else if (k === F_BODY) rk = R_BODY
      else if (k === F_USERDATA) rk = R_USERDATA
      else if (k === F_EXCLUDE) rk = R_EXCLUDE
      if (rk === R_UIDS) uids = uidListField(F_UIDS, `rows[${i}].uids`)
      else if (rk === R_BODY) body = binField(F_BODY)
      else if (rk === R_USERDATA) userdata = int64Field(F_USERDATA)
      else if (rk === R_EXCLUDE) exclude = uidListField(F_EXCLUDE, `rows[${i}].exclude`)
      else r.skip()
    }
    const rowErr = errMask
    const g = rowErr & bit(F_UIDS) ? F_UIDS : rowErr & bit(F_BODY) ? F_BODY : rowErr & bit(F_USERDATA) ? F_USERDATA : F_EXCLUDE
    const rowCode = errCodes[g]!
    const rowMsg = errMsgs[g]!
    errMask = saved
    errCodes[F_UIDS] = savedCodes[0]!
    errCodes[F_BODY] = savedCodes[1]!
    errCodes[F_USERDATA] = savedCodes[2]!
    errCodes[F_EXCLUDE] = savedCodes[3]!
    errMsgs[F_UIDS] = savedMsgs[0]!
    errMsgs[F_BODY] = savedMsgs[1]!
    errMsgs[F_USERDATA] = savedMsgs[2]!
    errMsgs[F_EXCLUDE] = savedMsgs[3]!
    if (bad) continue
    if (rowErr !== 0) {
      fail(f, rowCode, rowMsg.startsWith('rows[') ? rowMsg : `rows[${i}].${rowMsg}`)
      errKeyOverride = `rows[${i}].${KEY_NAMES[g]}`
      bad = true
    } else if (uids === undefined || body === undefined) {
      const missing = uids === undefined ? 'uids' : 'body'
      fail(f, BrokerErrorCode.MISSING_FIELD, `rows[${i}].${missing} is required`)
      errKeyOverride = `rows[${i}].${missing}`
      bad = true
    } else {
      const row: UsersRow = { uids, body }
      if (userdata !== undefined) row.userdata = userdata
      if (exclude !== undefined) row.exclude = exclude
      rows.push(row)
    }
  }
  return bad ? undefined : rows
}

interface EgressFields {
  cmd: number
  uid: Uid | undefined
  nodeId: number | undefined
  connId: Int64 | undefined
  tag: number | undefined
  ret: number | undefined
  userdata: Int64 | undefined
  uids: Int64[] | undefined
  exclude: Int64[] | undefined
  rows: UsersRow[] | undefined
  body: Uint8Array | undefined
  sender: string | undefined
  seq: Int64 | undefined
}

function parseEgress(n: number, index: number, out: DecodedEgress): void {
  const m: EgressFields = {
    cmd: 0, uid: undefined, nodeId: undefined, connId: undefined, tag: undefined, ret: undefined,
    userdata: undefined, uids: undefined, exclude: undefined, rows: undefined, body: undefined,
    sender: undefined, seq: undefined,
  }
  let hasCmd = false
  errMask = 0
  errKeyOverride = undefined
  let rowsKey: string | undefined
  for (let i = 0; i < n; i++) {
    const f = readKey()
    switch (f) {
      case F_CMD: {
        const v = int32Field(F_CMD)
        hasCmd = v !== undefined || (errMask & 1) !== 0
        m.cmd = v ?? 0
        break
      }
      case F_UID:
        m.uid = uidField()
        break
      case F_NODE_ID:
        m.nodeId = int32Field(F_NODE_ID)
        break
      case F_CONN_ID:
        m.connId = int64Field(F_CONN_ID)
        break
      case F_TAG:
        m.tag = int32Field(F_TAG)
        break
      case F_RET:
        m.ret = int32Field(F_RET)
        break
      case F_USERDATA:
        m.userdata = int64Field(F_USERDATA)
        break
      case F_UIDS:
        m.uids = uidListField(F_UIDS, 'uids')
        break
      case F_EXCLUDE:
        m.exclude = uidListField(F_EXCLUDE, 'exclude')
        break
      case F_ROWS:
        errKeyOverride = undefined
        m.rows = rowsField()
        rowsKey = errKeyOverride
        errKeyOverride = undefined
        break
      case F_BODY:
        m.body = binField(F_BODY)
        break
      case F_SENDER:
        m.sender = strField(F_SENDER, Number.MAX_SAFE_INTEGER)
        break
      case F_SEQ:
        m.seq = uint64Field(F_SEQ)
        break
      default:
        r.skip()
    }
  }
  const partial: Partial<Task> = {
    cmd: hasCmd && !(errMask & 1) ? m.cmd : undefined,
    uid: m.uid,
    nodeId: m.nodeId,
    connId: m.connId,
    tag: m.tag,
    ret: m.ret,
    userdata: m.userdata,
    body: m.body,
  }
  const relevant = EGRESS_KEYS[m.cmd]
  if (!hasCmd || errMask & 1) {
    out.rejects.push(rejection(index, hasCmd, partial, 1))
    return
  }
  if (relevant === undefined) {
    out.rejects.push({ code: BrokerErrorCode.OUT_OF_RANGE, message: `cmd ${m.cmd} is not an egress command`, index, key: 'cmd', partial })
    return
  }
  if (errMask & relevant) {
    errKeyOverride = errMask & relevant & bit(F_ROWS) && (errMask & relevant & (bit(F_ROWS) - 1)) === 0 ? rowsKey : undefined
    const rej = rejection(index, hasCmd, partial, relevant)
    errKeyOverride = undefined
    out.rejects.push(rej)
    return
  }
  // Required keys.
  const required = EGRESS_REQUIRED[m.cmd]!
  const present =
    (m.nodeId !== undefined ? bit(F_NODE_ID) : 0) |
    (m.connId !== undefined ? bit(F_CONN_ID) : 0) |
    (m.body !== undefined ? bit(F_BODY) : 0) |
    (m.rows !== undefined ? bit(F_ROWS) : 0) |
    (m.uids !== undefined ? bit(F_UIDS) : 0) |
    (m.uid !== undefined ? bit(F_UID) : 0)
  let missing = required & ~present
  if (m.cmd === EgressCmd.WRITE_TO_WORKER && m.uid === undefined && (present & CONN_KEYS) !== CONN_KEYS) {
    missing |= bit(F_UID)
  }
  if (missing !== 0) {
    let f = 1
    while (!(missing & (1 << f))) f++
    const key = KEY_NAMES[f]!
    const message = m.cmd === EgressCmd.WRITE_TO_WORKER && f === F_UID ? '100 needs uid or node_id + conn_id' : `${key} is required for cmd ${m.cmd}`
    out.rejects.push({ code: BrokerErrorCode.MISSING_FIELD, message, index, key, partial })
    return
  }
  let msg: EgressMessage & Sequenced
  switch (m.cmd) {
    case EgressCmd.WRITE_TO_CLIENT: {
      const x: EgressMessage & Sequenced = { cmd: 220, nodeId: m.nodeId!, connId: m.connId!, body: m.body! }
      if (m.tag !== undefined) x.tag = m.tag
      if (m.ret !== undefined) x.ret = m.ret
      msg = x
      break
    }
    case EgressCmd.WRITE_TO_USERS:
      msg = { cmd: 230, rows: m.rows! }
      break
    case EgressCmd.CLOSE_USERS: {
      const x: EgressMessage & Sequenced = { cmd: 250, uids: m.uids! }
      if (m.userdata !== undefined) x.userdata = m.userdata
      if (m.exclude !== undefined) x.exclude = m.exclude
      msg = x
      break
    }
    case EgressCmd.LOGIN_CLIENT: {
      const x: EgressMessage & Sequenced = { cmd: 260, nodeId: m.nodeId!, connId: m.connId!, uid: m.uid! }
      if (m.userdata !== undefined) x.userdata = m.userdata
      msg = x
      break
    }
    case EgressCmd.WRITE_TO_WORKER: {
      const x: EgressMessage & Sequenced = { cmd: 100, body: m.body! }
      if (m.uid !== undefined) x.uid = m.uid
      if (m.nodeId !== undefined) x.nodeId = m.nodeId
      if (m.connId !== undefined) x.connId = m.connId
      msg = x
      break
    }
    default: // 240, 270, 280
      msg = { cmd: m.cmd as 240 | 270 | 280, nodeId: m.nodeId!, connId: m.connId! }
  }
  if (m.sender !== undefined) msg.sender = m.sender
  if (m.seq !== undefined) msg.seq = m.seq
  out.messages.push(msg)
}

/**
 * Decodes one egress frame (a message map, or an array of them) per §2.1, with `sender`/`seq`.
 * Never throws for any input bytes. A cmd that is not an egress command is OUT_OF_RANGE; a
 * missing required key is MISSING_FIELD; keys a cmd does not use are ignored. `uids`/`exclude`
 * elements are ints ≥ −3 (a uid, or one of the special sets). `body` values are views into the frame.
 */
export function decodeEgress(frame: Uint8Array, options?: DecodeOptions): DecodedEgress {
  const out: DecodedEgress = { messages: [], rejects: [] }
  const pre = checkFrame(frame, options)
  if (pre !== undefined) {
    out.rejects.push(pre)
    return out
  }
  begin(frame)
  try {
    eachMap(out.rejects, (n, index) => parseEgress(n, index, out))
    return out
  } catch (err) {
    return { messages: [], rejects: [malformed(err)] }
  } finally {
    errKeyOverride = undefined
    end()
  }
}

/**
 * Reads an acknowledgement frame `{ack: uint64}` (§2). Returns the cumulative seq, or undefined
 * when the frame is not a well-formed ack. Never throws for any input bytes.
 */
export function decodeAck(frame: Uint8Array): bigint | undefined {
  if (!(frame instanceof Uint8Array) || frame.length === 0 || frame.length > Defaults.MAX_FRAME_BYTES) return undefined
  begin(frame)
  try {
    const n = r.mapHeader()
    if (n < 0) return undefined
    let ack: bigint | undefined
    for (let i = 0; i < n; i++) {
      const f = readKey()
      if (f !== F_ACK) {
        r.skip()
        continue
      }
      const st = readInt()
      if (st === I_NUM && iv >= 0) ack = BigInt(iv)
      else if ((st === I_BIG || st === I_U64) && ib >= 0n) ack = ib
      else ack = undefined
    }
    if (r.p !== r.e) return undefined
    return ack
  } catch {
    return undefined
  } finally {
    end()
  }
}

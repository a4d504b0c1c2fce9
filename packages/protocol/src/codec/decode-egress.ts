/**
 * The egress decoders (protocol §2, §2.1): an egress frame (a message map, or an array of them)
 * into `EgressMessage`s with `sender`/`seq` and coded rejections, and an acknowledgement frame
 * into its cumulative seq. Neither throws for any input bytes (see decode-tasks.ts for the rules).
 */
import { BrokerErrorCode } from '../errors.ts'
import { Defaults, EgressCmd } from '../protocol.ts'
import type { EgressMessage, Int64, Sequenced, Task, Uid, UsersRow } from '../task.ts'
import {
  absentField,
  begin,
  binField,
  end,
  errs,
  errCodes,
  errMsgs,
  F_ACK,
  F_BODY,
  F_CMD,
  F_CONN_ID,
  F_EXCLUDE,
  F_NODE_ID,
  F_RET,
  F_ROWS,
  F_SENDER,
  F_SEQ,
  F_TAG,
  F_UID,
  F_UIDS,
  F_USERDATA,
  fail,
  I_BIG,
  I_NIL,
  I_NUM,
  I_U64,
  I_WRONG,
  ib,
  int32Field,
  int64Field,
  iv,
  KEY_NAMES,
  r,
  readInt,
  readKey,
  rejection,
  strField,
  uidField,
  uint64Field,
} from './decode-fields.ts'
import { checkFrame, eachMap, malformed, type DecodeOptions, type Rejection } from './decode-frame.ts'
import { MalformedError } from './msgpack-reader.ts'

/** The result of decoding one egress frame. */
export interface DecodedEgress {
  messages: (EgressMessage & Sequenced)[]
  rejects: Rejection[]
}

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
    const saved = errs.mask
    const savedCodes = [errCodes[F_UIDS]!, errCodes[F_BODY]!, errCodes[F_USERDATA]!, errCodes[F_EXCLUDE]!]
    const savedMsgs = [errMsgs[F_UIDS]!, errMsgs[F_BODY]!, errMsgs[F_USERDATA]!, errMsgs[F_EXCLUDE]!]
    errs.mask = 0
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
    const rowErr = errs.mask
    const g = rowErr & bit(F_UIDS) ? F_UIDS : rowErr & bit(F_BODY) ? F_BODY : rowErr & bit(F_USERDATA) ? F_USERDATA : F_EXCLUDE
    const rowCode = errCodes[g]!
    const rowMsg = errMsgs[g]!
    errs.mask = saved
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
      errs.keyOverride = `rows[${i}].${KEY_NAMES[g]}`
      bad = true
    } else if (uids === undefined || body === undefined) {
      const missing = uids === undefined ? 'uids' : 'body'
      fail(f, BrokerErrorCode.MISSING_FIELD, `rows[${i}].${missing} is required`)
      errs.keyOverride = `rows[${i}].${missing}`
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
    cmd: 0,
    uid: undefined,
    nodeId: undefined,
    connId: undefined,
    tag: undefined,
    ret: undefined,
    userdata: undefined,
    uids: undefined,
    exclude: undefined,
    rows: undefined,
    body: undefined,
    sender: undefined,
    seq: undefined,
  }
  let hasCmd = false
  errs.mask = 0
  errs.keyOverride = undefined
  let rowsKey: string | undefined
  for (let i = 0; i < n; i++) {
    const f = readKey()
    switch (f) {
      case F_CMD: {
        const v = int32Field(F_CMD)
        hasCmd = v !== undefined || (errs.mask & 1) !== 0
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
        errs.keyOverride = undefined
        m.rows = rowsField()
        rowsKey = errs.keyOverride
        errs.keyOverride = undefined
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
    cmd: hasCmd && !(errs.mask & 1) ? m.cmd : undefined,
    uid: m.uid,
    nodeId: m.nodeId,
    connId: m.connId,
    tag: m.tag,
    ret: m.ret,
    userdata: m.userdata,
    body: m.body,
  }
  const relevant = EGRESS_KEYS[m.cmd]
  if (!hasCmd || errs.mask & 1) {
    out.rejects.push(rejection(index, hasCmd, partial, 1))
    return
  }
  if (relevant === undefined) {
    out.rejects.push({ code: BrokerErrorCode.OUT_OF_RANGE, message: `cmd ${m.cmd} is not an egress command`, index, key: 'cmd', partial })
    return
  }
  if (errs.mask & relevant) {
    errs.keyOverride = errs.mask & relevant & bit(F_ROWS) && (errs.mask & relevant & (bit(F_ROWS) - 1)) === 0 ? rowsKey : undefined
    const rej = rejection(index, hasCmd, partial, relevant)
    errs.keyOverride = undefined
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
    errs.keyOverride = undefined
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

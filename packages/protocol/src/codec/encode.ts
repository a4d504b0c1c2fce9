/**
 * Envelope encoders: task maps and batches (protocol §1.1), egress messages (§2.1) and acks.
 * Every integer field becomes a msgpack int in its smallest encoding (never a float, even for
 * a `number` ≥ 2^32), str/bin use the smallest header, keys are written in a fixed order:
 *   task:   cmd uid node_id conn_id tag userdata custom flags client_ip ret body ts
 *   egress: cmd uid node_id conn_id tag ret userdata uids exclude rows body sender seq
 *   row:    uids body userdata exclude
 * Fields that are `undefined` are left out. A value outside its protocol range, a non-integral
 * number in an int field or a missing required field throws PeonyError
 * `PEONY_BROKER_ENCODE_FAILED`: the encoder never writes a frame our own decoder would reject.
 */
import { BrokerErrorCode, PeonyError } from '../errors.ts'
import { Defaults, EgressCmd } from '../protocol.ts'
import type { EgressMessage, Sequenced, Task, Uid, UsersRow } from '../task.ts'
import { Writer, utf8Length, withWriter } from './msgpack-writer.ts'

const INT64_MIN = -(2n ** 63n)
const INT64_MAX = 2n ** 63n - 1n
const UINT64_MAX = 2n ** 64n - 1n

function failed(message: string): PeonyError {
  return new PeonyError(BrokerErrorCode.ENCODE_FAILED, message)
}

function writeInt32(w: Writer, key: string, v: unknown): void {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) {
    throw failed(`${key} must be an int32, got ${String(v)}`)
  }
  w.str(key)
  w.int(v)
}

/** An int64 value: a safe number, an integral number within int64 (exact as a bigint), or a bigint. */
function int64Value(w: Writer, key: string, v: unknown): void {
  if (typeof v === 'number') {
    if (Number.isSafeInteger(v)) {
      w.int(v)
      return
    }
    if (Number.isInteger(v) && v >= -(2 ** 63) && v < 2 ** 63) {
      w.bigint(BigInt(v))
      return
    }
  } else if (typeof v === 'bigint' && v >= INT64_MIN && v <= INT64_MAX) {
    w.bigint(v)
    return
  }
  throw failed(`${key} must be an int64, got ${String(v)}`)
}

function writeInt64(w: Writer, key: string, v: unknown): void {
  w.str(key)
  int64Value(w, key, v)
}

function writeUint64(w: Writer, key: string, v: unknown): void {
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < 2 ** 64) {
    w.str(key)
    if (Number.isSafeInteger(v)) w.int(v)
    else w.bigint(BigInt(v))
    return
  }
  if (typeof v === 'bigint' && v >= 0n && v <= UINT64_MAX) {
    w.str(key)
    w.bigint(v)
    return
  }
  throw failed(`${key} must be a uint64, got ${String(v)}`)
}

function writeUid(w: Writer, v: Uid): void {
  if (typeof v === 'string') {
    if (utf8Length(v) > 128) throw failed('a str uid is at most 128 bytes')
    w.str('uid')
    w.str(v)
    return
  }
  if ((typeof v === 'number' && v < 0) || (typeof v === 'bigint' && v < 0n)) throw failed(`uid must be ≥ 0, got ${String(v)}`)
  writeInt64(w, 'uid', v)
}

function writeBin(w: Writer, key: string, v: unknown): void {
  if (!(v instanceof Uint8Array)) throw failed(`${key} must be a Uint8Array`)
  w.str(key)
  w.bin(v)
}

function writeTask(w: Writer, t: Task): void {
  if (t === null || typeof t !== 'object') throw failed('a task must be an object')
  const headerAt = w.pos
  w.mapHeader(0) // patched below: a task has at most 12 keys, so always a fixmap
  let n = 1
  writeInt32(w, 'cmd', t.cmd)
  if (t.uid !== undefined) {
    writeUid(w, t.uid)
    n++
  }
  if (t.nodeId !== undefined) {
    writeInt32(w, 'node_id', t.nodeId)
    n++
  }
  if (t.connId !== undefined) {
    writeInt64(w, 'conn_id', t.connId)
    n++
  }
  if (t.tag !== undefined) {
    writeInt32(w, 'tag', t.tag)
    n++
  }
  if (t.userdata !== undefined) {
    writeInt64(w, 'userdata', t.userdata)
    n++
  }
  if (t.custom !== undefined) {
    writeInt64(w, 'custom', t.custom)
    n++
  }
  if (t.flags !== undefined) {
    const f = t.flags
    if (typeof f !== 'number' || !Number.isInteger(f) || f < 0 || f > 0xffff) throw failed(`flags must be a uint16, got ${String(f)}`)
    w.str('flags')
    w.int(f)
    n++
  }
  if (t.clientIp !== undefined) {
    if (typeof t.clientIp !== 'string' || utf8Length(t.clientIp) > 64) throw failed('client_ip must be a str of at most 64 bytes')
    w.str('client_ip')
    w.str(t.clientIp)
    n++
  }
  if (t.ret !== undefined) {
    writeInt32(w, 'ret', t.ret)
    n++
  }
  if (t.body !== undefined) {
    writeBin(w, 'body', t.body)
    n++
  }
  if (t.ts !== undefined) {
    writeInt64(w, 'ts', t.ts)
    n++
  }
  w.buf[headerAt] = 0x80 | n
}

/** Encodes one task as a map frame. Throws PeonyError `PEONY_BROKER_ENCODE_FAILED` for a field out of its range. */
export function encodeTask(task: Task): Uint8Array {
  return withWriter((w) => writeTask(w, task))
}

/** Encodes tasks as one batch frame (an array of maps; `[]` for none). Does not split: see encodeTaskFrames. */
export function encodeTasks(tasks: readonly Task[]): Uint8Array {
  return withWriter((w) => {
    w.arrayHeader(tasks.length)
    for (const t of tasks) writeTask(w, t)
  })
}

function arrayHeaderSize(n: number): number {
  return n < 16 ? 1 : n < 0x10000 ? 3 : 5
}

/**
 * Encodes tasks as batch frames (arrays of maps, in order) so that each frame is at most
 * `maxFrameBytes` (default 1 MiB). Returns no frame for no tasks. A single task too large for
 * the limit throws PeonyError `PEONY_BROKER_ENCODE_FAILED`.
 */
export function encodeTaskFrames(tasks: readonly Task[], maxFrameBytes: number = Defaults.MAX_FRAME_BYTES): Uint8Array[] {
  if (typeof maxFrameBytes !== 'number' || !(maxFrameBytes >= 2)) throw new RangeError('maxFrameBytes must be a number ≥ 2')
  if (tasks.length === 0) return []
  // Encode every task back to back once, remembering where each ends, then cut.
  const ends: number[] = new Array<number>(tasks.length)
  const all = withWriter((w) => {
    for (let i = 0; i < tasks.length; i++) {
      writeTask(w, tasks[i]!)
      ends[i] = w.pos
    }
  })
  const frames: Uint8Array[] = []
  let start = 0 // index of the first task of the current frame
  let startByte = 0
  while (start < tasks.length) {
    let end = start
    // grow the frame while header + tasks fit
    while (end < tasks.length) {
      const bytes = ends[end]! - startByte
      if (arrayHeaderSize(end - start + 1) + bytes > maxFrameBytes) break
      end++
    }
    if (end === start) {
      throw failed(`task ${start} alone (${ends[start]! - startByte + 1} bytes as a batch) exceeds the ${maxFrameBytes}-byte frame limit`)
    }
    const endByte = ends[end - 1]!
    const w = new Writer(arrayHeaderSize(end - start) + (endByte - startByte))
    w.arrayHeader(end - start)
    w.raw(all.subarray(startByte, endByte))
    frames.push(w.buf) // exact size: the writer was allocated for this frame
    start = end
    startByte = endByte
  }
  return frames
}

// ---- egress ----------------------------------------------------------------------------------

function writeUidList(w: Writer, key: string, list: unknown): void {
  if (!Array.isArray(list)) throw failed(`${key} must be an array of ints`)
  w.str(key)
  w.arrayHeader(list.length)
  for (const u of list) {
    if ((typeof u === 'number' && u < -3) || (typeof u === 'bigint' && u < -3n)) throw failed(`${key}: ${String(u)} is neither a uid nor −1, −2, −3`)
    int64Value(w, key, u)
  }
}

function writeRow(w: Writer, row: UsersRow): void {
  if (row === null || typeof row !== 'object') throw failed('a 230 row must be an object')
  const n = 2 + (row.userdata !== undefined ? 1 : 0) + (row.exclude !== undefined ? 1 : 0)
  w.mapHeader(n)
  writeUidList(w, 'uids', row.uids)
  writeBin(w, 'body', row.body)
  if (row.userdata !== undefined) writeInt64(w, 'userdata', row.userdata)
  if (row.exclude !== undefined) writeUidList(w, 'exclude', row.exclude)
}

function requireConn(m: { nodeId?: unknown; connId?: unknown }, cmd: number): void {
  if (m.nodeId === undefined || m.connId === undefined) throw failed(`egress ${cmd} needs node_id and conn_id`)
}

/**
 * Writes one egress message (§2.1) into a writer, for callers that frame records themselves (the
 * master's egress journal). Throws `PEONY_BROKER_ENCODE_FAILED`, with what was written before the
 * message left in place: reset `w.pos` to retry.
 */
export function writeEgress(w: Writer, msg: EgressMessage & Sequenced): void {
  if (msg === null || typeof msg !== 'object') throw failed('an egress message must be an object')
  const headerAt = w.pos
  w.mapHeader(0) // patched below: at most 13 keys
  let n = 1
  const cmd = msg.cmd
  writeInt32(w, 'cmd', cmd)
  switch (cmd) {
    case EgressCmd.WRITE_TO_CLIENT:
      requireConn(msg, cmd)
      writeInt32(w, 'node_id', msg.nodeId)
      writeInt64(w, 'conn_id', msg.connId)
      n += 2
      if (msg.tag !== undefined) {
        writeInt32(w, 'tag', msg.tag)
        n++
      }
      if (msg.ret !== undefined) {
        writeInt32(w, 'ret', msg.ret)
        n++
      }
      writeBin(w, 'body', msg.body)
      n++
      break
    case EgressCmd.WRITE_TO_USERS: {
      if (!Array.isArray(msg.rows)) throw failed('egress 230 needs rows')
      w.str('rows')
      w.arrayHeader(msg.rows.length)
      for (const row of msg.rows) writeRow(w, row)
      n++
      break
    }
    case EgressCmd.CLOSE_USERS:
      if (msg.userdata !== undefined) {
        writeInt64(w, 'userdata', msg.userdata)
        n++
      }
      writeUidList(w, 'uids', msg.uids)
      n++
      if (msg.exclude !== undefined) {
        writeUidList(w, 'exclude', msg.exclude)
        n++
      }
      break
    case EgressCmd.LOGIN_CLIENT:
      requireConn(msg, cmd)
      if (msg.uid === undefined || msg.uid === 0 || msg.uid === '' || msg.uid === 0n) throw failed('egress 260 needs a uid')
      writeUid(w, msg.uid)
      writeInt32(w, 'node_id', msg.nodeId)
      writeInt64(w, 'conn_id', msg.connId)
      n += 3
      if (msg.userdata !== undefined) {
        writeInt64(w, 'userdata', msg.userdata)
        n++
      }
      break
    case EgressCmd.CLOSE_CLIENT:
    case EgressCmd.LOGOUT_CLIENT:
    case EgressCmd.CLEAR_CLIENT_TASKS:
      requireConn(msg, cmd)
      writeInt32(w, 'node_id', msg.nodeId)
      writeInt64(w, 'conn_id', msg.connId)
      n += 2
      break
    case EgressCmd.WRITE_TO_WORKER: {
      const hasUid = msg.uid !== undefined && msg.uid !== 0 && msg.uid !== '' && msg.uid !== 0n
      if (!hasUid && (msg.nodeId === undefined || msg.connId === undefined)) throw failed('egress 100 needs uid or node_id + conn_id')
      if (hasUid) {
        writeUid(w, msg.uid!)
        n++
      }
      if (msg.nodeId !== undefined) {
        writeInt32(w, 'node_id', msg.nodeId)
        n++
      }
      if (msg.connId !== undefined) {
        writeInt64(w, 'conn_id', msg.connId)
        n++
      }
      writeBin(w, 'body', msg.body)
      n++
      break
    }
    default:
      throw failed(`${String(cmd)} is not an egress command`)
  }
  if (msg.sender !== undefined) {
    if (typeof msg.sender !== 'string') throw failed('sender must be a string')
    w.str('sender')
    w.str(msg.sender)
    n++
  }
  if (msg.seq !== undefined) {
    writeUint64(w, 'seq', msg.seq)
    n++
  }
  w.buf[headerAt] = 0x80 | n
}

/** Encodes one egress message (§2.1, with optional `sender`/`seq`) as a map frame. Throws `PEONY_BROKER_ENCODE_FAILED`. */
export function encodeEgress(msg: EgressMessage & Sequenced): Uint8Array {
  return withWriter((w) => writeEgress(w, msg))
}

/** Encodes egress messages as one array frame. Throws `PEONY_BROKER_ENCODE_FAILED`. */
export function encodeEgressBatch(msgs: readonly (EgressMessage & Sequenced)[]): Uint8Array {
  return withWriter((w) => {
    w.arrayHeader(msgs.length)
    for (const m of msgs) writeEgress(w, m)
  })
}

/** Encodes an acknowledgement `{ack: seq}` (§2). Throws `PEONY_BROKER_ENCODE_FAILED` outside uint64. */
export function encodeAck(seq: bigint | number): Uint8Array {
  return withWriter((w) => {
    w.mapHeader(1)
    writeUint64(w, 'ack', seq)
  })
}

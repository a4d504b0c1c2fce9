/**
 * The intake decoder (protocol §0, §1.1): a task frame (a task map, or an array of them) into
 * `Task`s and coded rejections. Never throws for any input bytes: a frame that is not one
 * well-formed msgpack value is one MALFORMED rejection (index −1, nothing else from the frame is
 * used); inside a well-formed frame each batch element is validated on its own and a bad one is
 * one coded rejection.
 *
 * Rejection order inside one element: problems with `cmd` first (wrong type, out of range,
 * missing), then the other fields in protocol table order.
 */
import type { Task } from '../task.ts'
import {
  begin,
  binField,
  end,
  errs,
  F_BODY,
  F_CLIENT_IP,
  F_CMD,
  F_CONN_ID,
  F_CUSTOM,
  F_FLAGS,
  F_NODE_ID,
  F_RET,
  F_TAG,
  F_TS,
  F_UID,
  F_USERDATA,
  I_NIL,
  I_NUM,
  I_WRONG,
  int32Field,
  int64Field,
  iv,
  outOfRange,
  r,
  readInt,
  readKey,
  rejection,
  strField,
  TASK_KEYS,
  uidField,
  wrongType,
} from './decode-fields.ts'
import { checkFrame, eachMap, malformed, type DecodeOptions, type Rejection } from './decode-frame.ts'

/** The result of decoding one intake frame. */
export interface DecodedTasks {
  /** Valid tasks, in frame order. */
  tasks: Task[]
  /** One entry per refused element (or one for the whole frame). */
  rejects: Rejection[]
  /** With `options.ranges`: `[start, end)` byte offsets in the frame of `tasks[i]`'s map at `2i`, `2i + 1`. */
  ranges?: number[]
}

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

/** Parses a task map of `n` entries (cursor after the header) into `out`. */
function parseTask(n: number, index: number, out: DecodedTasks): void {
  const task = newTask()
  let hasCmd = false
  errs.mask = 0
  for (let i = 0; i < n; i++) {
    const f = readKey()
    if (f < 0 || f > F_TS) {
      r.skip()
      continue
    }
    switch (f) {
      case F_CMD: {
        const v = int32Field(F_CMD)
        hasCmd = v !== undefined || (errs.mask & 1) !== 0
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
        errs.mask &= ~(1 << F_FLAGS)
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
  if (hasCmd && errs.mask === 0) {
    out.tasks.push(task)
    return
  }
  const partial: Partial<Task> = task
  if (!hasCmd || errs.mask & 1) partial.cmd = undefined
  errs.keyOverride = undefined
  out.rejects.push(rejection(index, hasCmd, partial, TASK_KEYS))
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

/**
 * Frame-level rules shared by the envelope decoders: what a refusal looks like (`Rejection`), the
 * size check before any decoding, the one MALFORMED rejection for a frame that is not one
 * well-formed msgpack value, and the walk over a frame's maps (one map, or an array of them).
 */
import { BrokerErrorCode } from '../errors.ts'
import { Defaults } from '../protocol.ts'
import type { Task } from '../task.ts'
import { r } from './decode-fields.ts'
import { MalformedError } from './msgpack-reader.ts'

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

export function frameReject(code: BrokerErrorCode, message: string): Rejection {
  return { code, message, index: -1 }
}

export function checkFrame(frame: Uint8Array, options: DecodeOptions | undefined): Rejection | undefined {
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

export function malformed(err: unknown): Rejection {
  return frameReject(BrokerErrorCode.MALFORMED, err instanceof MalformedError ? err.message : 'frame is not one well-formed msgpack value')
}

/**
 * Runs `element` for each map of a frame (a map or an array of maps); other values become
 * NOT_A_MAP rejections. Returns false when the frame is malformed (the caller discards it).
 */
export function eachMap(rejects: Rejection[], element: (n: number, index: number, start: number) => void): void {
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

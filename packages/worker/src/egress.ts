/**
 * Worker egress: builds the egress commands of protocol §2.1 (220 write to client, 230 write to
 * users, 240/250 close, 260/270 login/logout, 280 clear tasks, 100 write to worker) and hands
 * them to the host's EgressSink, which never blocks. `worker.egress` is usable anywhere (timers,
 * hooks); inside a request the `req.*` helpers fill the connection in for you.
 */
import { type BodyCodec, type EgressMessage, type Int64, packValue, type RequestBody, type Uid, type UsersRow } from '@peony/protocol'
import type { BodyCmd } from './routes.ts'
import type { EgressSink } from './runtime/contract.ts'

/** Options of a 230/250 row: a userdata mask the connection must match, and uids to leave out. */
export interface UsersFilter {
  /** A connection matches when `(conn.userdata & userdata) == userdata`. */
  userdata?: Int64 | undefined
  /** uids that do not get the message. */
  exclude?: Int64[] | undefined
}

/** The target of a 100 (write to worker): a uid, a connection, or both. */
export type WorkerTarget = { uid: Uid; nodeId?: number | undefined; connId?: Int64 | undefined } | { uid?: Uid | undefined; nodeId: number; connId: Int64 }

/** Key of the internal send that attributes a message to a task (used by requests; not public). */
export const EMIT: unique symbol = Symbol('peony.egress.emit')

/**
 * Encodes a request body with a codec: its `encodeRequest` when it has one, else (the default
 * msgpack codec) a plain msgpack map `{cmd, sn?, data?}`.
 */
export function encodeRequestBody(codec: BodyCodec, body: RequestBody): Uint8Array {
  const enc = (codec as { encodeRequest?: (b: RequestBody) => Uint8Array }).encodeRequest
  if (typeof enc === 'function') return enc.call(codec, body)
  if (codec.name !== 'msgpack') throw new TypeError(`body codec ${codec.name} has no encodeRequest; pass the body as bytes`)
  return packValue({ cmd: body.cmd, sn: body.sn, data: body.data })
}

/** Builds and sends egress messages. One per runtime, reachable as `worker.egress` and `req.worker.egress`. */
export class WorkerEgress {
  readonly #sink: EgressSink
  readonly #codec: BodyCodec

  constructor(sink: EgressSink, codec: BodyCodec) {
    this.#sink = sink
    this.#codec = codec
  }

  /** Sends an egress message as is. */
  send(msg: EgressMessage): void {
    this.#sink.send(msg)
  }

  /** @internal Sends a message on behalf of a task (the host may attribute it). */
  [EMIT](msg: EgressMessage, taskId: number | undefined, reply?: boolean): void {
    if (taskId === undefined) this.#sink.send(msg)
    else if (reply === true) this.#sink.send(msg, taskId, true)
    else this.#sink.send(msg, taskId)
  }

  /** 220: writes raw body bytes to one connection. */
  writeToClient(nodeId: number, connId: Int64, body: Uint8Array, opts?: { tag?: number | undefined; ret?: number | undefined }): void {
    this.#sink.send({ cmd: 220, nodeId, connId, body, tag: opts?.tag, ret: opts?.ret })
  }

  /** 220 with a push body `{cmd, data}` encoded by the app's codec. */
  pushToClient(nodeId: number, connId: Int64, cmd: BodyCmd, data?: unknown, opts?: { tag?: number | undefined }): void {
    this.writeToClient(nodeId, connId, this.#codec.encodePush({ cmd, data }), opts)
  }

  /** 230: raw rows (special uids: -1 all logged in, -2 all, -3 all anonymous). */
  writeToUsers(rows: UsersRow[]): void {
    if (!Array.isArray(rows)) throw new TypeError('writeToUsers(rows) needs an array of rows')
    this.#sink.send({ cmd: 230, rows })
  }

  /** 230 with one row whose body is the push `{cmd, data}`. */
  pushToUsers(uids: Int64[], cmd: BodyCmd, data?: unknown, filter?: UsersFilter): void {
    this.writeToUsers([usersRow(uids, this.#codec.encodePush({ cmd, data }), filter)])
  }

  /** 240: closes one connection. */
  closeClient(nodeId: number, connId: Int64): void {
    this.#sink.send({ cmd: 240, nodeId, connId })
  }

  /** 250: closes every matching connection. */
  closeUsers(uids: Int64[], filter?: UsersFilter): void {
    if (!Array.isArray(uids)) throw new TypeError('closeUsers(uids) needs an array of uids')
    this.#sink.send({ cmd: 250, uids, userdata: filter?.userdata, exclude: filter?.exclude })
  }

  /** 260: logs a connection in as `uid` (later tasks of that connection carry the uid). */
  loginClient(nodeId: number, connId: Int64, uid: Uid, userdata?: Int64): void {
    this.#sink.send({ cmd: 260, nodeId, connId, uid, userdata })
  }

  /** 270: logs a connection out. */
  logoutClient(nodeId: number, connId: Int64): void {
    this.#sink.send({ cmd: 270, nodeId, connId })
  }

  /** 280: drops the tasks the gateway still holds for a connection. */
  clearClientTasks(nodeId: number, connId: Int64): void {
    this.#sink.send({ cmd: 280, nodeId, connId })
  }

  /** 100: sends a task back into intake (it arrives as task cmd 100, routed like a request by its body cmd). */
  writeToWorker(target: WorkerTarget, body: Uint8Array | RequestBody): void {
    this.#sink.send(buildWriteToWorker(this.#codec, target, body))
  }
}

/** A 230 row. */
export function usersRow(uids: Int64[], body: Uint8Array, filter: UsersFilter | undefined): UsersRow {
  if (!Array.isArray(uids)) throw new TypeError('uids must be an array')
  return { uids, body, userdata: filter?.userdata, exclude: filter?.exclude }
}

/** Builds a 100 (write to worker). */
export function buildWriteToWorker(codec: BodyCodec, target: WorkerTarget, body: Uint8Array | RequestBody): EgressMessage {
  const hasConn = target.nodeId !== undefined && target.connId !== undefined
  if (target.uid === undefined && !hasConn) throw new TypeError('writeToWorker needs a uid or a nodeId + connId')
  const bytes = body instanceof Uint8Array ? body : encodeRequestBody(codec, body)
  return { cmd: 100, uid: target.uid, nodeId: hasConn ? target.nodeId : undefined, connId: hasConn ? target.connId : undefined, body: bytes }
}

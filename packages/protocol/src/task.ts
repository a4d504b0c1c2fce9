/**
 * The in-memory shape of tasks and egress messages. Wire keys are snake_case (`node_id`); the
 * TypeScript objects use camelCase. 64-bit integers are a `number` when they are safe integers
 * (|n| ≤ 2^53 − 1) and a `bigint` beyond that, so every int64 value round-trips exactly.
 */

/** A 64-bit integer as it appears in memory: a safe-integer number, or a bigint beyond 2^53. */
export type Int64 = number | bigint

/** A player id: a positive int64 or a 1–128 byte string. `undefined` means "not logged in" (absent, 0 or ""). */
export type Uid = Int64 | string

/** One task from a broker (protocol §1.1). Absent optional fields are `undefined`. */
export interface Task {
  cmd: number
  uid?: Uid | undefined
  nodeId?: number | undefined
  connId?: Int64 | undefined
  tag?: number | undefined
  userdata?: Int64 | undefined
  custom?: Int64 | undefined
  flags?: number | undefined
  clientIp?: string | undefined
  ret?: number | undefined
  body?: Uint8Array | undefined
  ts?: Int64 | undefined
}

/** One row of a 230 (write to users). */
export interface UsersRow {
  uids: Int64[]
  body: Uint8Array
  userdata?: Int64 | undefined
  exclude?: Int64[] | undefined
}

/** Egress messages, peony → forwarder (protocol §2.1). */
export type EgressMessage =
  | { cmd: 220; nodeId: number; connId: Int64; body: Uint8Array; tag?: number | undefined; ret?: number | undefined }
  | { cmd: 230; rows: UsersRow[] }
  | { cmd: 240; nodeId: number; connId: Int64 }
  | { cmd: 250; uids: Int64[]; userdata?: Int64 | undefined; exclude?: Int64[] | undefined }
  | { cmd: 260; nodeId: number; connId: Int64; uid: Uid; userdata?: Int64 | undefined }
  | { cmd: 270; nodeId: number; connId: Int64 }
  | { cmd: 280; nodeId: number; connId: Int64 }
  | { cmd: 100; uid?: Uid | undefined; nodeId?: number | undefined; connId?: Int64 | undefined; body: Uint8Array }

/** The `sender`/`seq` envelope fields an acknowledging egress sender adds (protocol §2). */
export interface Sequenced {
  sender?: string | undefined
  seq?: bigint | number | undefined
}

/**
 * Protocol tables of Peony wire protocol 1.1 (`docs/protocol.md`): task commands, egress
 * commands, Peony's reply codes, default endpoints and limits. Every other module takes its
 * numbers from here.
 */

/** Task `cmd` values that mean something to Peony (protocol §1.1). Other int32 values reach the generic task hook. */
export const TaskCmd = {
  CLIENT_REQ: 10,
  CLIENT_CREATED: 15,
  CLIENT_CLOSED: 20,
  WRITE_TO_WORKER: 100,
} as const
export type TaskCmd = (typeof TaskCmd)[keyof typeof TaskCmd]

/** Egress `cmd` values (protocol §2.1, maple numbers). */
export const EgressCmd = {
  WRITE_TO_WORKER: 100,
  WRITE_TO_CLIENT: 220,
  WRITE_TO_USERS: 230,
  CLOSE_CLIENT: 240,
  CLOSE_USERS: 250,
  LOGIN_CLIENT: 260,
  LOGOUT_CLIENT: 270,
  CLEAR_CLIENT_TASKS: 280,
} as const
export type EgressCmd = (typeof EgressCmd)[keyof typeof EgressCmd]

/** Special uids in 230/250 rows (protocol §2.1). */
export const SpecialUid = { ALL_LOGGED_IN: -1, ALL: -2, ALL_ANONYMOUS: -3 } as const

/** Peony's own reply codes, in the 220's `ret` and the body's `ret` (protocol §4). */
export const ReplyCode = {
  OK: 0,
  NO_HANDLER: -10000,
  HANDLER_FAILED: -10001,
  QUEUE_FULL: -10002,
  SHUTTING_DOWN: -10003,
  BODY_UNDECODABLE: -10004,
  STATE_LOAD_FAILED: -10005,
  QUARANTINED: -10006,
  NO_ROUTE: -10007,
  /** Not stored, nothing applied: the storage write of the request's session change failed and the change was discarded; a retry cannot apply twice (protocol 1.1). */
  NOT_STORED: -10008,
  /** Reserved: "not the owner of this player" (several servers). Not sent yet (protocol 1.1). */
  NOT_OWNER: -10009,
} as const
export type ReplyCode = (typeof ReplyCode)[keyof typeof ReplyCode]

/** Defaults of protocol v1 (unchanged in 1.1). */
export const Defaults = {
  INTAKE_ENDPOINT: 'tcp://127.0.0.1:9250',
  EGRESS_ENDPOINT: 'tcp://127.0.0.1:9260',
  GATEWAY_ENDPOINT: 'tcp://127.0.0.1:9270',
  /** Largest frame accepted, checked before decoding (1 MiB). */
  MAX_FRAME_BYTES: 1024 * 1024,
  /** A forwarder that acknowledges does so at least this often. */
  ACK_INTERVAL_MS: 100,
} as const

/** Numeric ranges (protocol §1.1). */
export const Limits = {
  INT32_MIN: -0x80000000,
  INT32_MAX: 0x7fffffff,
  UINT16_MAX: 0xffff,
  INT64_MIN: -(2n ** 63n),
  INT64_MAX: 2n ** 63n - 1n,
  UINT64_MAX: 2n ** 64n - 1n,
  UID_STR_MAX_BYTES: 128,
  CLIENT_IP_MAX_BYTES: 64,
} as const

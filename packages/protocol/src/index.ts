/**
 * @peony/protocol: Peony wire protocol v1 (`docs/protocol.md`) without a runtime dependency.
 * Tables, types, `PeonyError` and every code, the codec, routing keys and server choice. Loads
 * in Node and in a browser: no `node:` import, no `Buffer`, bytes are `Uint8Array`s (a Node
 * `Buffer` is one, so Node callers pass theirs as they are).
 */

// Protocol tables
export { TaskCmd, EgressCmd, SpecialUid, ReplyCode, Defaults, Limits } from './protocol.ts'
// Types
export type { Task, Int64, Uid, UsersRow, EgressMessage, Sequenced } from './task.ts'
// Errors
export { PeonyError, BrokerErrorCode, isPeonyError, toPeonyError } from './errors.ts'
export type { PeonyErrorOptions } from './errors.ts'
// Routing
export { routingKey, routingHash, shardOf, hasUid } from './routing.ts'
export type { RoutingKey } from './routing.ts'
// Server choice (§1.3)
export { chooseServer, serverScore, routingKeyBytes } from './server-choice.ts'
export type { RoutingKeyBytes } from './server-choice.ts'
// The codec (§0, §1.1, §2, §4)
export * from './codec/index.ts'

/**
 * @peony/broker-client: Peony wire protocol v1 (`docs/protocol.md`), sections 0–2.
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

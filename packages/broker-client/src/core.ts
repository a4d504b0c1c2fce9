/**
 * @peony/broker-client/core: the protocol without ZeroMQ. Tables, types, errors and routing, for
 * code that must not load the zeromq addon (worker threads, tools). The main entry re-exports all
 * of it together with the sockets.
 */

// Protocol tables
export { TaskCmd, EgressCmd, SpecialUid, ReplyCode, Defaults, Limits } from './protocol.ts'
// Types
export type { Task, Int64, Uid, UsersRow, EgressMessage, Sequenced } from './task.ts'
// Errors
export { PeonyError, BrokerErrorCode, isPeonyError, toPeonyError } from './errors.ts'
export type { PeonyErrorOptions } from './errors.ts'
// Rate-limited logging
export { LogLimiter, SUPPRESSED_MSG } from './log-limiter.ts'
export type { LimitedLogTarget, LogLimiterClock, LogLimiterOptions, LimitedLevel } from './log-limiter.ts'
// Routing
export { routingKey, routingHash, shardOf, hasUid } from './routing.ts'
export type { RoutingKey } from './routing.ts'

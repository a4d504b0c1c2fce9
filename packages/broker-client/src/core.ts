/**
 * @peony/broker-client/core: kept for compatibility. The protocol without ZeroMQ (tables, types,
 * errors, routing) and `LogLimiter`, re-exported from `@peony/protocol` and `@peony/log-limiter`;
 * new code imports those packages, which never load the zeromq addon.
 */

// Protocol tables
export { TaskCmd, EgressCmd, SpecialUid, ReplyCode, Defaults, Limits } from '@peony/protocol'
// Types
export type { Task, Int64, Uid, UsersRow, EgressMessage, Sequenced } from '@peony/protocol'
// Errors
export { PeonyError, BrokerErrorCode, isPeonyError, toPeonyError } from '@peony/protocol'
export type { PeonyErrorOptions } from '@peony/protocol'
// Rate-limited logging
export { LogLimiter, SUPPRESSED_MSG } from '@peony/log-limiter'
export type { LimitedLogTarget, LogLimiterClock, LogLimiterOptions, LimitedLevel } from '@peony/log-limiter'
// Routing
export { routingKey, routingHash, shardOf, hasUid } from '@peony/protocol'
export type { RoutingKey } from '@peony/protocol'

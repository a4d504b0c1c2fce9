/**
 * @peony/broker-client: the ZeroMQ side of Peony wire protocol v1 (`docs/protocol.md`), sections
 * 1–2: the intake server, the broker client and the egress sender.
 *
 * The protocol itself (tables, types, errors, routing, server choice, the codec) lives in
 * `@peony/protocol`, which has no runtime dependency; this entry re-exports all of it (and
 * `LogLimiter` from `@peony/log-limiter`), kept for compatibility so a broker that imports
 * everything from here changes nothing.
 */

// Protocol tables
export { TaskCmd, EgressCmd, SpecialUid, ReplyCode, Defaults, Limits } from '@peony/protocol'
// Types
export type { Task, Int64, Uid, UsersRow, EgressMessage, Sequenced } from '@peony/protocol'
// Errors
export { PeonyError, BrokerErrorCode, isPeonyError, toPeonyError } from '@peony/protocol'
export type { PeonyErrorOptions } from '@peony/protocol'
// Rate-limited logging (kept for compatibility: @peony/log-limiter)
export { LogLimiter, SUPPRESSED_MSG } from '@peony/log-limiter'
export type { LimitedLogTarget, LogLimiterClock, LogLimiterOptions, LimitedLevel } from '@peony/log-limiter'
// Codec types most users meet (the codec itself is the './codec' subpath, or @peony/protocol)
export type { Rejection } from '@peony/protocol'
// Routing
export { routingKey, routingHash, shardOf, hasUid } from '@peony/protocol'
export type { RoutingKey } from '@peony/protocol'
// Server choice (§1.3)
export { chooseServer, serverScore, routingKeyBytes } from '@peony/protocol'
export type { RoutingKeyBytes } from '@peony/protocol'
// Intake server (§1)
export { createIntakeServer } from './intake-server.ts'
export type { IntakeServer, IntakeServerOptions, IntakeServerStats, IntakeServerStatus } from './intake-server.ts'
// Broker client (§1, for brokers written in TypeScript)
export { createBrokerClient } from './broker-client.ts'
export type {
  BrokerClient,
  BrokerClientOptions,
  BrokerClientServer,
  BrokerClientStats,
  BrokerServerStats,
  BrokerClientCloseOptions,
} from './broker-client.ts'
// Egress sender (§2)
export { createEgressSender } from './egress-sender.ts'
export type { EgressSender, EgressSenderOptions, EgressSenderStats, EgressSenderCloseOptions, EgressDropReason } from './egress-sender.ts'

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
// Rate-limited logging
export { LogLimiter, SUPPRESSED_MSG } from './log-limiter.ts'
export type { LimitedLogTarget, LogLimiterClock, LogLimiterOptions, LimitedLevel } from './log-limiter.ts'
// Codec types most users meet (the codec itself is the './codec' subpath)
export type { Rejection } from './codec/index.ts'
// Routing
export { routingKey, routingHash, shardOf, hasUid } from './routing.ts'
export type { RoutingKey } from './routing.ts'
// Server choice (§1.3)
export { chooseServer, serverScore, routingKeyBytes } from './server-choice.ts'
export type { RoutingKeyBytes } from './server-choice.ts'
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

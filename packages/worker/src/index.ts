/**
 * @peony/worker: the runtime a game developer writes against. An app routes client messages on
 * their body `cmd` to handlers, groups routes in blueprints, hooks into every step of a task's
 * and the worker's life, and answers through `req.reply` / `req.push` and the egress helpers.
 * The master hosts a WorkerRuntime per worker thread; `@peony/worker/testing` hosts one in tests.
 */

// Application
export { createApp, PeonyApp } from './app.ts'
export type { AppOptions } from './app.ts'
export { Blueprint } from './blueprint.ts'
export type { BodyCmd, RouteHandler, RouteOptions, RouteInfo } from './routes.ts'

// Hooks
export { appHookNames, blueprintHookNames } from './hooks.ts'
export type { AppHookName, BlueprintHookName, AppHooks } from './hooks.ts'

// Requests and egress
export { PeonyRequest } from './request.ts'
export { WorkerEgress } from './egress.ts'
export type { UsersFilter, WorkerTarget } from './egress.ts'
export { WorkerContext } from './worker-context.ts'

// Runtime
export { WorkerRuntime } from './runtime/worker-runtime.ts'
export type { WorkerRuntimeOptions, WorkerRuntimeStats, RuntimeStatus } from './runtime/worker-runtime.ts'
export type { Clock, EgressSink, RuntimeHandle, RuntimeLogger, TaskOutcome, WorkerInfo } from './runtime/contract.ts'

// Sessions
export { defineSession, Session } from './session/session.ts'
export type { SessionDef, SessionDefinition, DurableTimerHandler, TimerFiring } from './session/session.ts'
export { SessionManager, SessionLoadError } from './session/session-manager.ts'
export type { SessionOptions, SessionStats } from './session/session-manager.ts'
export { SessionTimers } from './session/session-timers.ts'
export type { DurableTimer, DurableTimerOptions } from './session/session-timers.ts'
export type { LatencySummary } from './session/latency-histogram.ts'

// Clock and timers
export { systemClock, ManualClock } from './clock.ts'
export { WorkerTimers } from './timers.ts'
export type { TimerHandle } from './timers.ts'

// Logging
export { consoleLogger, silentLogger, createMemoryLogger } from './logger.ts'
export type { LogEntry, LogLevel, MemoryLogger } from './logger.ts'

// Errors
export { WorkerError, WorkerErrorCode } from './errors.ts'
export type { WorkerErrorContext } from './errors.ts'

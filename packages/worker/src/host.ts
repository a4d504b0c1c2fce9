/**
 * @peony/worker/host: what runs an app. The master's worker threads host one WorkerRuntime each
 * (with a SessionManager when the app defines sessions); benchmarks and custom hosts do the same.
 * An app itself imports `@peony/worker`; its tests `@peony/worker/testing`.
 */

// The runtime
export { WorkerRuntime } from './runtime/worker-runtime.ts'
export type { WorkerRuntimeOptions, WorkerRuntimeStats, RuntimeStatus } from './runtime/worker-runtime.ts'
export type { Clock, EgressSink, RuntimeHandle, RuntimeLogger, TaskOutcome, WorkerInfo } from './runtime/contract.ts'

// Sessions
export { SessionManager, SessionLoadError } from './session/session-manager.ts'
export type { SessionOptions, SessionStats } from './session/session-manager.ts'
export type { LatencySummary } from './session/latency-histogram.ts'

// Clocks and loggers
export { systemClock, ManualClock } from './clock.ts'
export { consoleLogger, silentLogger, createMemoryLogger } from './logger.ts'
export type { LogEntry, LogLevel, MemoryLogger } from './logger.ts'

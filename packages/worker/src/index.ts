/**
 * @peony/worker: what a game developer writes an app against. An app routes client messages on
 * their body `cmd` to handlers, groups routes in blueprints, hooks into every step of a task's
 * and the worker's life, keeps each player's state in a session, and answers through
 * `req.reply` / `req.push` and the egress helpers.
 *
 * Three doors: this one for app authors; `@peony/worker/host` for what runs an app (the master's
 * worker threads, benchmarks, a custom host: WorkerRuntime, SessionManager, clocks, loggers);
 * `@peony/worker/testing` for an app's tests (the harness, ManualClock, a memory logger).
 */

// Application
export { createApp, PeonyApp } from './app.ts'
export type { AppOptions } from './app.ts'
export { Blueprint } from './blueprint.ts'
export type { BodyCmd, RouteHandler, RouteOptions, RouteInfo } from './routes.ts'

// Hooks
export { appHookNames, blueprintHookNames } from './hooks.ts'
export type { AppHookName, BlueprintHookName, AppHooks } from './hooks.ts'

// Requests, the worker and egress (handed to handlers and hooks; never constructed by an app)
export type { PeonyRequest } from './request.ts'
export type { WorkerEgress, UsersFilter, WorkerTarget } from './egress.ts'
export type { WorkerContext } from './worker-context.ts'
export type { WorkerInfo, Clock } from './runtime/contract.ts'
export type { WorkerTimers, TimerHandle } from './timers.ts'
export type { LogLevel } from './logger.ts'

// Sessions
export { defineSession } from './session/session.ts'
export type { Session, SessionDef, SessionDefinition, DurableTimerHandler, TimerFiring } from './session/session.ts'
export type { SessionTimers, DurableTimer, DurableTimerOptions } from './session/session-timers.ts'

// Errors
export { WorkerError, WorkerErrorCode } from './errors.ts'
export type { WorkerErrorContext } from './errors.ts'

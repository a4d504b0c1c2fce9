/**
 * Hook names, their signatures and their order. `pre*` hooks run before a phase and may veto it
 * (a throw, or `req.interrupt()`); `on*` hooks run at a point and only observe. Every hook may be
 * sync or async; the hooks of one event are awaited one after another.
 *
 * Order ("start" events: app, then every blueprint's app-hooks in registration order, then the
 * owning blueprint's own hooks; "end" events: the owning blueprint, then the blueprints'
 * app-hooks in registration order, then the app):
 *
 * | hook                 | order | when                                                          |
 * |----------------------|-------|---------------------------------------------------------------|
 * | `onWorkerStart`      | start | `runtime.start()`                                              |
 * | `preFirstRequest`    | start | before the first task of this runtime that reaches user code   |
 * | `preRequest`         | start | before every handler, onClientCreated/onClientClosed and onTask |
 * | `onClientCreated`    | start | task cmd 15 (it is the "handler" of that task)                 |
 * | `onClientClosed`     | start | task cmd 20                                                    |
 * | `onTask`             | start | any task cmd other than 10/15/20/100                           |
 * | `onRequestEnd`       | end   | after every task that reached user code, even interrupted or failed |
 * | `onWorkerActivate`   | start | the worker goes from idle to busy                              |
 * | `onWorkerDeactivate` | end   | the worker becomes idle (nothing queued, nothing running)      |
 * | `onWorkerStop`       | end   | `runtime.stop()`, after every task settled                     |
 * | `onError`            | start | any PEONY_* error around user code                             |
 */
import type { PeonyError } from '@peony/protocol'
import type { PeonyRequest } from './request.ts'
import type { WorkerContext } from './worker-context.ts'

/** Every hook name an app (and a blueprint's `addAppHook`) accepts. */
export const appHookNames = [
  'onWorkerStart',
  'preFirstRequest',
  'preRequest',
  'onRequestEnd',
  'onClientCreated',
  'onClientClosed',
  'onWorkerActivate',
  'onWorkerDeactivate',
  'onWorkerStop',
  'onTask',
  'onError',
] as const
/** A hook name of the app. */
export type AppHookName = (typeof appHookNames)[number]

/** The hooks a blueprint's `addHook` accepts: they run only for the blueprint's own routes. */
export const blueprintHookNames = ['preRequest', 'onRequestEnd'] as const
/** A blueprint-local hook name. */
export type BlueprintHookName = (typeof blueprintHookNames)[number]

/** Hooks whose order is "end" (owning blueprint, blueprints, app); all others run app first. */
export const endOrderHooks: ReadonlySet<AppHookName> = new Set<AppHookName>(['onRequestEnd', 'onWorkerDeactivate', 'onWorkerStop'])

/** Signature of each hook. The return value is ignored; a returned promise is awaited. */
export interface AppHooks {
  onWorkerStart: (worker: WorkerContext) => unknown
  preFirstRequest: (req: PeonyRequest) => unknown
  preRequest: (req: PeonyRequest) => unknown
  /** `err` is the PeonyError that ended the request (a failure or a timeout), `undefined` otherwise. */
  onRequestEnd: (req: PeonyRequest, err: PeonyError | undefined) => unknown
  onClientCreated: (req: PeonyRequest) => unknown
  onClientClosed: (req: PeonyRequest) => unknown
  onWorkerActivate: (worker: WorkerContext) => unknown
  onWorkerDeactivate: (worker: WorkerContext) => unknown
  onWorkerStop: (worker: WorkerContext) => unknown
  onTask: (req: PeonyRequest) => unknown
  /** `req` is the request the error belongs to, when there is one (not for worker-level hooks and timers). */
  onError: (err: PeonyError, req: PeonyRequest | undefined) => unknown
}

/** Any hook function, loosely typed for internal storage. */
export type AnyHook = (a: never, b: never) => unknown

/** The hooks registered by one owner (app or blueprint), per name, in registration order. */
export type HookTable = { [K in AppHookName]: AppHooks[K][] }

/** A fresh empty HookTable. */
export function emptyHookTable(): HookTable {
  const t = {} as Record<AppHookName, unknown[]>
  for (const n of appHookNames) t[n] = []
  return t as HookTable
}

/** True when `name` is an app hook name. */
export function isAppHookName(name: unknown): name is AppHookName {
  return typeof name === 'string' && (appHookNames as readonly string[]).includes(name)
}

/** True when `name` is a blueprint-local hook name. */
export function isBlueprintHookName(name: unknown): name is BlueprintHookName {
  return name === 'preRequest' || name === 'onRequestEnd'
}

/** True for promises and other thenables. */
export function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && (typeof v === 'object' || typeof v === 'function') && typeof (v as { then?: unknown }).then === 'function'
}

/**
 * The application: routes on the body `cmd`, blueprints, hooks and the body codec. An app is a
 * plain description; a WorkerRuntime (one per worker thread, or the test harness) runs it. Once a
 * runtime hosting the app has started, routes and hooks are frozen (`PEONY_ALREADY_STARTED`).
 */
import { type BodyCodec, msgpackBodyCodec, PeonyError } from '@peony/protocol'
import type { Blueprint } from './blueprint.ts'
import { WorkerErrorCode } from './errors.ts'
import { appHookNames, emptyHookTable, endOrderHooks, isAppHookName, type AnyHook, type AppHookName, type AppHooks, type HookTable } from './hooks.ts'
import { APP_STATE, BP_STATE } from './internal/symbols.ts'
import { defineSession, type SessionDef, type SessionDefinition } from './session/session.ts'
import { makeRoute, type BodyCmd, type RouteHandler, type RouteInfo, type RouteOptions } from './routes.ts'

/** Options of `createApp`. */
export interface AppOptions {
  /** Codec of the business body (default: msgpack, protocol §4). */
  bodyCodec?: BodyCodec | undefined
}

/** A route with the hook lists that apply to it, in run order. */
export interface CompiledRoute {
  readonly info: RouteInfo
  /** preRequest: app, blueprints' app-hooks, the owning blueprint. */
  readonly pre: readonly AnyHook[]
  /** onRequestEnd: the owning blueprint, blueprints' app-hooks, app. */
  readonly end: readonly AnyHook[]
}

/** What a runtime runs: routes and every hook list in run order. */
export interface CompiledApp {
  readonly codec: BodyCodec
  readonly routes: ReadonlyMap<BodyCmd, CompiledRoute>
  /** Each hook name's list, app and blueprints' app-hooks merged in run order (no blueprint-local hooks). */
  readonly hooks: { readonly [K in AppHookName]: readonly AnyHook[] }
}

/** Internal state of an app (keyed by APP_STATE). */
export interface AppState {
  started: boolean
  readonly routes: Map<BodyCmd, RouteInfo>
  readonly hooks: HookTable
  readonly blueprints: Blueprint[]
  /** The sessions' definition (`app.session`). */
  session: SessionDef<unknown> | undefined
}

/** Throws PEONY_ROUTE_DUPLICATE when `cmd` already has a different handler; returns false when the same one is there. */
export function addRouteTo(app: PeonyApp, route: RouteInfo): void {
  const s = app[APP_STATE]
  if (s.started) throw new PeonyError(WorkerErrorCode.ALREADY_STARTED, `cannot add route ${String(route.cmd)}: the app already runs`)
  const old = s.routes.get(route.cmd)
  if (old !== undefined) {
    if (old.handler === route.handler) return
    throw new PeonyError(
      WorkerErrorCode.ROUTE_DUPLICATE,
      `cmd ${typeof route.cmd === 'string' ? JSON.stringify(route.cmd) : route.cmd} already has a handler (${old.name}); cannot add ${route.name}`,
    )
  }
  s.routes.set(route.cmd, route)
}

/** The application a game developer writes: routes, blueprints, hooks. Create it with `createApp()`. */
export class PeonyApp {
  /** @internal */
  readonly [APP_STATE]: AppState = { started: false, routes: new Map(), hooks: emptyHookTable(), blueprints: [], session: undefined }
  /** The codec of the business body; replies and pushes are encoded with it. */
  readonly bodyCodec: BodyCodec

  constructor(options: AppOptions = {}) {
    this.bodyCodec = options.bodyCodec ?? msgpackBodyCodec
  }

  /**
   * Routes the body `cmd` to `handler`. Registering a different handler for a cmd that has one
   * throws `PEONY_ROUTE_DUPLICATE`; the same handler again is a no-op.
   */
  route(cmd: BodyCmd, handler: RouteHandler, opts?: RouteOptions): this {
    addRouteTo(this, makeRoute(cmd, handler, opts, undefined))
    return this
  }

  /** Registers a blueprint: its routes join the app's (duplicates throw), its app-hooks run for the whole app. Registering it again is a no-op. */
  register(blueprint: Blueprint): this {
    const s = this[APP_STATE]
    if (s.started) throw new PeonyError(WorkerErrorCode.ALREADY_STARTED, `cannot register blueprint ${blueprint.name}: the app already runs`)
    if (s.blueprints.includes(blueprint)) return this
    const bs = blueprint[BP_STATE]
    // Check every route first so a failed register leaves the app unchanged.
    for (const r of bs.routes.values()) {
      const old = s.routes.get(r.cmd)
      if (old !== undefined && old.handler !== r.handler) {
        throw new PeonyError(WorkerErrorCode.ROUTE_DUPLICATE, `blueprint ${blueprint.name}: cmd ${String(r.cmd)} already has a handler (${old.name})`)
      }
    }
    for (const r of bs.routes.values()) addRouteTo(this, r)
    s.blueprints.push(blueprint)
    bs.apps.add(this)
    return this
  }

  /**
   * Adds a hook (see the table in hooks.ts / README). An unknown name throws
   * `PEONY_HOOK_NOT_SUPPORTED`; adding after a runtime started throws `PEONY_ALREADY_STARTED`.
   */
  addHook<K extends AppHookName>(name: K, fn: AppHooks[K]): this {
    if (!isAppHookName(name))
      throw new PeonyError(WorkerErrorCode.HOOK_NOT_SUPPORTED, `unknown hook ${JSON.stringify(name)}; hooks: ${appHookNames.join(', ')}`)
    if (typeof fn !== 'function') throw new TypeError(`hook ${name} must be a function`)
    const s = this[APP_STATE]
    if (s.started) throw new PeonyError(WorkerErrorCode.ALREADY_STARTED, `cannot add hook ${name}: the app already runs`)
    ;(s.hooks[name] as AppHooks[K][]).push(fn)
    return this
  }

  /**
   * Gives every player a session: state loaded once on their first request, kept in the
   * worker's memory, written back by write-behind (docs/sessions.md). Returns the typed
   * definition; `def.of(req)` is the session of a request. Once per app.
   */
  session<S>(definition: SessionDefinition<S>): SessionDef<S> {
    const s = this[APP_STATE]
    if (s.started) throw new PeonyError(WorkerErrorCode.ALREADY_STARTED, 'cannot define sessions: the app already runs')
    if (s.session !== undefined) throw new TypeError('the app already defines sessions')
    const def = defineSession(definition)
    s.session = def as SessionDef<unknown>
    return def
  }

  /** The sessions' definition, if any. */
  get sessionDefinition(): SessionDef<unknown> | undefined {
    return this[APP_STATE].session
  }

  /** Handles tasks whose task cmd is not 10/15/20/100 (same as `addHook('onTask', fn)`). */
  onTask(fn: AppHooks['onTask']): this {
    return this.addHook('onTask', fn)
  }

  /** True once a runtime hosting this app has started (routes and hooks are frozen). */
  get started(): boolean {
    return this[APP_STATE].started
  }

  /** Every route, app routes and blueprint routes, in registration order. */
  routes(): RouteInfo[] {
    return [...this[APP_STATE].routes.values()]
  }

  /** The route of a body cmd, if any. */
  getRoute(cmd: BodyCmd): RouteInfo | undefined {
    return this[APP_STATE].routes.get(cmd)
  }
}

/** Creates an application. */
export function createApp(options?: AppOptions): PeonyApp {
  return new PeonyApp(options)
}

/** Freezes the app (marks it started) and builds the run-order hook lists. Used by WorkerRuntime.start(). */
export function compileApp(app: PeonyApp): CompiledApp {
  const s = app[APP_STATE]
  s.started = true
  const hooks = {} as Record<AppHookName, AnyHook[]>
  for (const name of appHookNames) {
    const own = s.hooks[name] as AnyHook[]
    const fromBps: AnyHook[] = []
    for (const bp of s.blueprints) fromBps.push(...(bp[BP_STATE].appHooks[name] as AnyHook[]))
    hooks[name] = endOrderHooks.has(name) ? [...fromBps, ...own] : [...own, ...fromBps]
  }
  const routes = new Map<BodyCmd, CompiledRoute>()
  for (const info of s.routes.values()) {
    const bp = info.blueprint
    const bpPre = bp === undefined ? [] : (bp[BP_STATE].own.preRequest as AnyHook[])
    const bpEnd = bp === undefined ? [] : (bp[BP_STATE].own.onRequestEnd as AnyHook[])
    routes.set(info.cmd, {
      info,
      pre: bpPre.length === 0 ? hooks.preRequest : [...hooks.preRequest, ...bpPre],
      end: bpEnd.length === 0 ? hooks.onRequestEnd : [...bpEnd, ...hooks.onRequestEnd],
    })
  }
  return { codec: app.bodyCodec, routes, hooks }
}

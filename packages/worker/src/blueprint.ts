/**
 * Blueprints: a named group of routes with hooks of its own. `addHook` adds hooks that run only
 * for the blueprint's routes (`preRequest`, `onRequestEnd`); `addAppHook` adds app-wide mirrors
 * that run for the whole app it is registered in (every app hook name). Routes added to a
 * blueprint after it was registered join the app too.
 */
import { PeonyError } from '@peony/protocol'
import { addRouteTo, type PeonyApp } from './app.ts'
import { WorkerErrorCode } from './errors.ts'
import {
  appHookNames,
  blueprintHookNames,
  emptyHookTable,
  isAppHookName,
  isBlueprintHookName,
  type AppHookName,
  type AppHooks,
  type BlueprintHookName,
  type HookTable,
} from './hooks.ts'
import { APP_STATE, BP_STATE } from './internal/symbols.ts'
import { makeRoute, type BodyCmd, type RouteHandler, type RouteInfo, type RouteOptions } from './routes.ts'

/** Internal state of a blueprint (keyed by BP_STATE). */
export interface BlueprintState {
  readonly routes: Map<BodyCmd, RouteInfo>
  /** Hooks for the blueprint's own routes. */
  readonly own: { preRequest: AppHooks['preRequest'][]; onRequestEnd: AppHooks['onRequestEnd'][] }
  /** App-wide mirrors. */
  readonly appHooks: HookTable
  /** Apps it is registered in. */
  readonly apps: Set<PeonyApp>
}

/** A named group of routes and hooks, registered into an app with `app.register(bp)`. */
export class Blueprint {
  /** The blueprint's name; its routes are named `"<name>.<endpoint>"`. */
  readonly name: string
  /** @internal */
  readonly [BP_STATE]: BlueprintState = { routes: new Map(), own: { preRequest: [], onRequestEnd: [] }, appHooks: emptyHookTable(), apps: new Set() }

  constructor(name: string) {
    if (typeof name !== 'string' || name.length === 0) throw new TypeError('a blueprint needs a non-empty name')
    this.name = name
  }

  /** Routes a body cmd to a handler (same rules as `app.route`). */
  route(cmd: BodyCmd, handler: RouteHandler, opts?: RouteOptions): this {
    const s = this[BP_STATE]
    const r = makeRoute(cmd, handler, opts, this)
    const old = s.routes.get(r.cmd)
    if (old !== undefined) {
      if (old.handler === r.handler) return this
      throw new PeonyError(WorkerErrorCode.ROUTE_DUPLICATE, `blueprint ${this.name}: cmd ${String(r.cmd)} already has a handler (${old.name})`)
    }
    // Check every app first so a failure leaves them all unchanged.
    for (const app of s.apps) {
      const a = app[APP_STATE]
      if (a.started) throw new PeonyError(WorkerErrorCode.ALREADY_STARTED, `blueprint ${this.name}: cannot add route ${String(r.cmd)}: the app already runs`)
      const o = a.routes.get(r.cmd)
      if (o !== undefined && o.handler !== r.handler) {
        throw new PeonyError(WorkerErrorCode.ROUTE_DUPLICATE, `blueprint ${this.name}: cmd ${String(r.cmd)} already has a handler in the app (${o.name})`)
      }
    }
    for (const app of s.apps) addRouteTo(app, r)
    s.routes.set(r.cmd, r)
    return this
  }

  /** Adds a hook that runs only for this blueprint's routes: `preRequest` or `onRequestEnd`. */
  addHook<K extends BlueprintHookName>(name: K, fn: AppHooks[K]): this {
    if (!isBlueprintHookName(name)) {
      throw new PeonyError(
        WorkerErrorCode.HOOK_NOT_SUPPORTED,
        `blueprint hook ${JSON.stringify(name)} is not supported; blueprint hooks: ${blueprintHookNames.join(', ')} (app-wide: addAppHook)`,
      )
    }
    if (typeof fn !== 'function') throw new TypeError(`hook ${name} must be a function`)
    this.#checkNotStarted(name)
    ;(this[BP_STATE].own[name] as AppHooks[K][]).push(fn)
    return this
  }

  /** Adds an app-wide hook: it runs for every request/worker event of the app the blueprint is registered in. */
  addAppHook<K extends AppHookName>(name: K, fn: AppHooks[K]): this {
    if (!isAppHookName(name))
      throw new PeonyError(WorkerErrorCode.HOOK_NOT_SUPPORTED, `unknown hook ${JSON.stringify(name)}; hooks: ${appHookNames.join(', ')}`)
    if (typeof fn !== 'function') throw new TypeError(`hook ${name} must be a function`)
    this.#checkNotStarted(name)
    ;(this[BP_STATE].appHooks[name] as AppHooks[K][]).push(fn)
    return this
  }

  /** The blueprint's routes. */
  routes(): RouteInfo[] {
    return [...this[BP_STATE].routes.values()]
  }

  #checkNotStarted(what: string): void {
    for (const app of this[BP_STATE].apps) {
      if (app[APP_STATE].started) throw new PeonyError(WorkerErrorCode.ALREADY_STARTED, `blueprint ${this.name}: cannot add hook ${what}: the app already runs`)
    }
  }
}

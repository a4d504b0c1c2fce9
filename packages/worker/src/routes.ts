/**
 * Route types and validation shared by apps and blueprints. A route maps a BODY `cmd` (the `cmd`
 * inside the client's message, not the task cmd) to a handler. The int 5 and the string "5" are
 * different cmds.
 */
import type { Blueprint } from './blueprint.ts'
import type { PeonyRequest } from './request.ts'

/** A body cmd: an integer or a string. */
export type BodyCmd = number | string

/** A route handler. Its return value is ignored (answer with `req.reply`); a returned promise is awaited. */
export type RouteHandler = (req: PeonyRequest) => unknown

/** Options of `route(cmd, handler, opts)`. */
export interface RouteOptions {
  /** Endpoint name, for logs (default: the handler's name, or the cmd). Blueprint routes get `"<blueprint>.<name>"`. */
  name?: string | undefined
  /** Deadline of this route's handler in ms, overriding the runtime's `workTimeoutMs`; 0 disables it. */
  workTimeoutMs?: number | undefined
  /** Free data kept with the route (the original's extra route kwargs), readable as `req.route.meta`. */
  meta?: Readonly<Record<string, unknown>> | undefined
  /** False: this route never loads the player's session (`req.session` is the resident one, if any). Default true. */
  session?: boolean | undefined
  /**
   * Output gate: `'stored'` holds this route's reply, pushes and messages to other players until
   * the session change the request made is stored (docs/sessions.md); `'none'` sends them at
   * once. Default: the session definition's `gate` (itself `'none'` by default).
   */
  gate?: 'stored' | 'none' | undefined
}

/** A registered route, as `req.route` shows it. */
export interface RouteInfo {
  readonly cmd: BodyCmd
  readonly name: string
  /** The blueprint that registered it, or undefined for an app route. */
  readonly blueprint: Blueprint | undefined
  readonly workTimeoutMs: number | undefined
  readonly meta: Readonly<Record<string, unknown>>
  /** Whether the route loads the player's session (when the app defines sessions). */
  readonly session: boolean
  /** The route's output gate, or undefined for the session definition's default. */
  readonly gate: 'stored' | 'none' | undefined
  readonly handler: RouteHandler
}

const EMPTY_META: Readonly<Record<string, unknown>> = Object.freeze({})

/** Validates and builds a RouteInfo (programmer errors throw TypeError/RangeError). */
export function makeRoute(cmd: unknown, handler: unknown, opts: RouteOptions | undefined, blueprint: Blueprint | undefined): RouteInfo {
  if (typeof cmd === 'number') {
    if (!Number.isSafeInteger(cmd)) throw new TypeError(`route cmd must be an integer or a string, got ${cmd}`)
  } else if (typeof cmd !== 'string' || cmd.length === 0) {
    throw new TypeError(`route cmd must be an integer or a non-empty string, got ${typeof cmd === 'string' ? '""' : typeof cmd}`)
  }
  if (typeof handler !== 'function') throw new TypeError(`route handler for cmd ${String(cmd)} must be a function`)
  if (opts?.session !== undefined && typeof opts.session !== 'boolean') throw new TypeError('route option session must be a boolean')
  if (opts?.gate !== undefined && opts.gate !== 'stored' && opts.gate !== 'none') throw new TypeError(`route option gate must be 'stored' or 'none'`)
  if (opts?.gate === 'stored' && opts.session === false) throw new TypeError('route option gate: a route with session: false has no session change to store')
  const t = opts?.workTimeoutMs
  if (t !== undefined && !(Number.isFinite(t) && t >= 0)) throw new RangeError(`route workTimeoutMs must be a finite number >= 0, got ${t}`)
  const base = opts?.name ?? (handler.name !== '' ? handler.name : String(cmd))
  return Object.freeze({
    cmd,
    name: blueprint === undefined ? base : `${blueprint.name}.${base}`,
    blueprint,
    workTimeoutMs: t,
    meta: opts?.meta === undefined ? EMPTY_META : Object.freeze({ ...opts.meta }),
    session: opts?.session !== false,
    gate: opts?.gate,
    handler: handler as RouteHandler,
  })
}

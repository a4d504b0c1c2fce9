/**
 * A player's session: the state one worker holds in memory for one uid (or one group and uid),
 * loaded once on the player's first request and written back by the session manager
 * (write-behind). See docs/sessions.md.
 *
 * Dirty marking is automatic by default: all user code the runtime hands a resident session to
 * marks it dirty when it settles (route handlers, also of `{ session: false }` routes, the
 * on-hook tasks 15/20/other, in-memory and durable session timers), and `worker.sessions.get` /
 * `def.resident` mark it when they hand it out. With `dirty: 'manual'` in the definition, only
 * `markDirty()` (or assigning `state`, or a durable timer change) does. docs/sessions.md,
 * "Dirty marking", has the exact list. A dirty session is written within the manager's
 * `maxUnflushedAgeMs` while storage answers.
 */
import { PeonyError, type Uid } from '@peony/protocol'
import { WorkerErrorCode } from '../errors.ts'
import type { PeonyRequest } from '../request.ts'
import type { WorkerContext } from '../worker-context.ts'
import type { SessionTimers } from './session-timers.ts'
import type { Held } from './output-gate.ts'

/** What a durable timer's handler receives besides the session. */
export interface TimerFiring {
  /** The timer's name. */
  readonly name: string
  /** The due time (ms since the epoch) this firing is for; earlier than now when the timer was overdue. */
  readonly due: number
  /** The repeat period in ms (0 for a one-shot timer). */
  readonly every: number
  /** The data given when the timer was set. */
  readonly data: unknown
  /** How many due times of a repeating timer were skipped before this one, past the catch-up limit (usually 0). */
  readonly skipped: number
}

/** Handles a durable timer when it falls due (also on load when it is overdue). */
export type DurableTimerHandler<S> = (session: Session<S>, firing: TimerFiring) => unknown

/** How an app describes its players' sessions. Pass it to `app.session(def)` (or `defineSession`). */
export interface SessionDefinition<S> {
  /** State of a player that storage has nothing for. */
  initial: (uid: Uid) => S
  /** Serializer of the state (default: msgpack, the same encoding as message bodies). */
  encode?: ((state: S) => Uint8Array) | undefined
  /** Deserializer (default: msgpack). A throw fails the load (-10005). */
  decode?: ((bytes: Uint8Array, uid: Uid) => S) | undefined
  /**
   * The output gate of the app's routes, unless a route says otherwise (`route(cmd, h, { gate })`):
   * `'stored'` holds a request's reply, pushes and messages to other players until the session
   * change it made is in storage (a failed write answers -10008, nothing applied); `'none'`
   * (default) sends them at once and writes the change behind. See docs/sessions.md.
   */
  gate?: 'stored' | 'none' | undefined
  /**
   * `'auto'` (default): every handler, hook task and session timer that was handed the session
   * marks it dirty when it settles, and `worker.sessions.get` / `def.resident` when they hand it
   * out. `'manual'`: only `markDirty()`, assigning `state` and durable timer changes.
   */
  dirty?: 'auto' | 'manual' | undefined
  /** Storage key prefix (default `"player"`). Keys are `<namespace>:<uid>`, or `<namespace>:<group>:<uid>` with `scope: 'group'`. */
  namespace?: string | undefined
  /** `'uid'` (default): one session per uid. `'group'`: one per group and uid (groups that split a player's data). */
  scope?: 'uid' | 'group' | undefined
  /** Handlers of durable timers, by name. */
  timers?: Readonly<Record<string, DurableTimerHandler<S>>> | undefined
  /** Estimated in-memory size of a state in bytes, for the memory budget (default: its encoded size). */
  sizeOf?: ((state: S) => number) | undefined
}

/** A definition registered on an app; `of(req)` gives the typed session of a request. */
export interface SessionDef<S> extends Readonly<SessionDefinition<S>> {
  /** The session of the request (throws PEONY_SESSION_NOT_CONFIGURED when the request has none). */
  of(req: PeonyRequest): Session<S>
  /** The resident session of `uid` in `worker`, if any (never loads; marks it dirty under `dirty: 'auto'`): typed access from worker timers and hooks. */
  resident(worker: WorkerContext, uid: Uid): Session<S> | undefined
}

/** Builds a typed session definition (the same object `app.session(def)` returns). */
export function defineSession<S>(def: SessionDefinition<S>): SessionDef<S> {
  if (typeof def !== 'object' || def === null) throw new TypeError('a session definition must be an object')
  if (typeof def.initial !== 'function') throw new TypeError('session definition needs initial(uid)')
  for (const k of ['encode', 'decode', 'sizeOf'] as const) {
    if (def[k] !== undefined && typeof def[k] !== 'function') throw new TypeError(`session definition ${k} must be a function`)
  }
  if (def.dirty !== undefined && def.dirty !== 'auto' && def.dirty !== 'manual') throw new TypeError(`session dirty must be 'auto' or 'manual'`)
  if (def.scope !== undefined && def.scope !== 'uid' && def.scope !== 'group') throw new TypeError(`session scope must be 'uid' or 'group'`)
  if (def.gate !== undefined && def.gate !== 'stored' && def.gate !== 'none') throw new TypeError(`session gate must be 'stored' or 'none'`)
  if (def.namespace !== undefined && (typeof def.namespace !== 'string' || def.namespace === '' || /[/\0{}]/.test(def.namespace))) {
    throw new TypeError('session namespace must be a non-empty string without "/", "{", "}" or NUL')
  }
  for (const [name, fn] of Object.entries(def.timers ?? {})) {
    if (typeof fn !== 'function') throw new TypeError(`durable timer handler ${name} must be a function`)
  }
  return Object.freeze({
    ...def,
    of(req: PeonyRequest): Session<S> {
      const s = req.session
      if (s === undefined)
        throw new PeonyError(WorkerErrorCode.SESSION_NOT_CONFIGURED, 'this request has no session (no uid, the route opted out, or the app defines none)')
      return s as Session<S>
    },
    resident(worker: WorkerContext, uid: Uid): Session<S> | undefined {
      return worker.sessions.get(uid) as Session<S> | undefined
    },
  })
}

/** What the manager does for a session (an internal interface; the manager implements it). */
export interface SessionOwner {
  readonly worker: WorkerContext
  markDirty(s: Session<unknown>): void
  timersOf(s: Session<unknown>): SessionTimers
}

// Session.flags
/** Evicted or dropped: changes are refused. */
export const GONE = 1
/** An eviction is under way (flush first, then drop); a new task cancels it. */
export const EVICTING = 2
/** A flush of this session is in flight. */
export const FLUSHING = 4
/** Why an eviction started (one of these with EVICTING). */
export const EVICT_IDLE = 8
export const EVICT_CLOSED = 16
export const EVICT_MEMORY = 32
export const EVICT_MANUAL = 64
export const EVICT_REASONS = EVICT_IDLE | EVICT_CLOSED | EVICT_MEMORY | EVICT_MANUAL
/** Unflushed changes exist since `_dirtySince`. */
export const DIRTY = 128

/** One player's resident state. Created by the session manager, never by user code. */
export class Session<S = unknown> {
  /** The player. */
  readonly uid: Uid
  /** The storage key (also the fence key). */
  readonly key: string
  /** @internal */ _state: S
  /** @internal */ readonly _owner: SessionOwner
  /** @internal Fencing generation from the load. */ _generation: number
  /** @internal The storage's handle of the fence from the load (FencedWrite.handle); undefined when it gave none. */ _handle: number | undefined = undefined
  /** @internal Clock ms of the last task of the player (timers do not count). */ _lastActive: number
  /** @internal Clock ms of the oldest unflushed change (meaningful while DIRTY is set). */ _dirtySince = 0
  /** @internal Bumped on every change; a flush remembers it. */ _version = 0
  /** @internal Estimated size in bytes (for the memory budget). */ _size: number
  /** @internal Clock ms when the client closed (meaningful while in the manager's closed set). */ _closedAt = 0
  /** @internal GONE | EVICTING | FLUSHING | DIRTY | EVICT_*. */ _flags = 0
  /** @internal Durable timers and in-memory timers; created on first use. */ _timers: SessionTimers | undefined = undefined
  /** @internal The routing key of the player's lane. */ readonly _lane: string | number
  /** @internal Outputs held by the output gate, in order (output-gate.ts); undefined when none. */ _held: Held[] | undefined = undefined
  /** @internal The highest `_version` known to be in storage. */ _storedVersion = 0
  /** @internal Hash of the record last stored (or loaded; -1: unknown; -2: a new player never stored): the unmarked-change check. */ _storedHash = -1
  /** @internal 0, or after a failed gated write (the session was dropped; outputs of requests still on it are refused) the answer of its held replies: -10008, or -10001 when the write's outcome is unknown. */ _gateCode = 0

  /** @internal */
  constructor(owner: SessionOwner, lane: string | number, uid: Uid, key: string, state: S, generation: number, now: number, size: number) {
    this._owner = owner
    this._lane = lane
    this.uid = uid
    this.key = key
    this._state = state
    this._generation = generation
    this._lastActive = now
    this._size = size
  }

  /** The player's state. Assigning it replaces the state and marks the session dirty. */
  get state(): S {
    return this._state
  }
  set state(value: S) {
    this.#checkLive()
    this._state = value
    this._owner.markDirty(this as Session<unknown>)
  }

  /** Marks the state changed, so write-behind saves it. Throws PEONY_SESSION_EVICTED after eviction. */
  markDirty(): void {
    this.#checkLive()
    this._owner.markDirty(this as Session<unknown>)
  }

  /** True while the session has changes not yet written to storage. */
  get dirty(): boolean {
    return (this._flags & DIRTY) !== 0
  }

  /** False once the session was evicted (or dropped after a fencing refusal). */
  get resident(): boolean {
    return (this._flags & GONE) === 0
  }

  /** The worker holding the session (egress, clock, logger). */
  get worker(): WorkerContext {
    return this._owner.worker
  }

  /** The session's timers: durable ones saved with the state, and in-memory ones; all cleared on eviction. */
  get timers(): SessionTimers {
    return (this._timers ??= this._owner.timersOf(this as Session<unknown>))
  }

  #checkLive(): void {
    if ((this._flags & GONE) !== 0) {
      throw new PeonyError(WorkerErrorCode.SESSION_EVICTED, `the session of uid ${String(this.uid)} was evicted; changes to it would be lost`)
    }
  }
}

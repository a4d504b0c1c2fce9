/**
 * A session's timers (`session.timers`).
 *
 * Durable timers (`set`/`cancel`/`get`/`list`) are named, saved with the state, and handled by
 * the definition's `timers[name]` handler. While the session is resident they fire on the
 * worker's clock; when it is loaded, every overdue one fires before the request that caused the
 * load (offline progress). A firing removes a one-shot timer and moves a repeating one to its
 * next due time, and marks the session dirty: until that change is flushed, a crash brings the
 * timer back and it fires again (at least once per due time; never again once flushed).
 *
 * In-memory timers (`once`/`every`) hold a callback, are not saved, and are cleared on eviction.
 *
 * Every callback runs on the player's lane, one at a time with the player's tasks, so timer code
 * and handlers never interleave on one session. A throwing callback is reported (onError,
 * PEONY_TIMER_FAILED) and a repeating timer stays scheduled.
 */
import { PeonyError } from '@peony/protocol'
import { WorkerErrorCode } from '../errors.ts'
import type { TimerHandle } from '../timers.ts'

/** A durable timer as stored with a session. */
export interface DurableTimer {
  /** The timer's name (one timer per name and session). */
  readonly name: string
  /** Next due time, ms since the epoch (on the worker's clock). */
  readonly due: number
  /** Repeat period in ms; 0 for a one-shot timer. */
  readonly every: number
  /** Data given to the handler (saved with the state: keep it encodable). */
  readonly data: unknown
}

/** Options of `session.timers.set(name, options)`: exactly one of `at` and `in`. */
export interface DurableTimerOptions {
  /** Absolute due time, ms since the epoch. */
  at?: number | undefined
  /** Due time relative to now, in ms. */
  in?: number | undefined
  /** Repeat every `every` ms after the first due time (> 0). */
  every?: number | undefined
  /** Data for the handler. */
  data?: unknown
}

/** What the session manager provides to a session's timers. */
export interface SessionTimerHost {
  now(): number
  /** A durable timer was set or cancelled: persist (mark dirty) and reschedule. */
  durableChanged(t: SessionTimers): void
  /** Whether the definition has a handler for this durable timer name. */
  hasHandler(name: string): boolean
  /** Schedules an in-memory callback on the session's lane after `ms`; returns a clock handle. */
  schedule(t: SessionTimers, ms: number, run: () => void): unknown
  cancel(handle: unknown): void
  /** Runs `fn` on the session's lane (serial with its tasks), reporting a failure. */
  runOnLane(t: SessionTimers, fn: () => unknown): void
  /** Throws when the session is gone. */
  checkLive(t: SessionTimers): void
}

class MemoryTimer implements TimerHandle {
  active = true
  handle: unknown = undefined
  due = 0
  readonly owner: SessionTimers
  readonly fn: () => unknown
  readonly every: number
  constructor(owner: SessionTimers, fn: () => unknown, every: number) {
    this.owner = owner
    this.fn = fn
    this.every = every
  }
  cancel(): void {
    this.owner.cancelMemory(this)
  }
}

function checkMs(v: unknown, what: string, min: number): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min) throw new RangeError(`${what} must be a finite number >= ${min}, got ${String(v)}`)
  return v
}

/** The timers of one session. Obtained as `session.timers`. */
export class SessionTimers {
  /** @internal */ readonly _host: SessionTimerHost
  /** @internal The session these timers belong to (typed by the host). */ readonly _session: unknown
  /** @internal Durable timers by name. */ readonly _durable = new Map<string, DurableTimer>()
  /** @internal Clock handle of the next durable due time. */ _handle: unknown = undefined
  /** @internal Due time the handle is armed for (Infinity: not armed). */ _armedAt = Infinity
  #memory: Set<MemoryTimer> | undefined = undefined

  /** @internal */
  constructor(host: SessionTimerHost, session: unknown, stored: readonly DurableTimer[] | undefined) {
    this._host = host
    this._session = session
    if (stored !== undefined) for (const t of stored) this._durable.set(t.name, t)
  }

  // ─────────────── durable ───────────────

  /**
   * Sets (or replaces) the durable timer `name`. Its handler is the definition's `timers[name]`
   * (an unknown name throws PEONY_SESSION_TIMER_UNKNOWN). Marks the session dirty.
   */
  set(name: string, options: DurableTimerOptions): DurableTimer {
    this._host.checkLive(this)
    if (typeof name !== 'string' || name === '') throw new TypeError('a durable timer needs a non-empty name')
    if (!this._host.hasHandler(name))
      throw new PeonyError(WorkerErrorCode.SESSION_TIMER_UNKNOWN, `no durable timer handler named ${JSON.stringify(name)} in the session definition`)
    if (typeof options !== 'object' || options === null) throw new TypeError('timers.set(name, options) needs options { at | in, every?, data? }')
    const hasAt = options.at !== undefined
    const hasIn = options.in !== undefined
    if (hasAt === hasIn) throw new TypeError('timers.set needs exactly one of `at` and `in`')
    const due = hasAt ? checkMs(options.at, 'timers.set at', Number.MIN_SAFE_INTEGER) : this._host.now() + checkMs(options.in, 'timers.set in', 0)
    const every = options.every === undefined ? 0 : checkMs(options.every, 'timers.set every', 1)
    const t: DurableTimer = Object.freeze({ name, due, every, data: options.data })
    this._durable.set(name, t)
    this._host.durableChanged(this)
    return t
  }

  /** Cancels the durable timer `name`; true when there was one. Marks the session dirty. */
  cancel(name: string): boolean {
    this._host.checkLive(this)
    if (!this._durable.delete(name)) return false
    this._host.durableChanged(this)
    return true
  }

  /** The durable timer `name`, if set. */
  get(name: string): DurableTimer | undefined {
    return this._durable.get(name)
  }

  /** Every durable timer, in due order. */
  list(): DurableTimer[] {
    return [...this._durable.values()].sort((a, b) => a.due - b.due)
  }

  // ─────────────── in memory ───────────────

  /** Runs `fn` once after `ms`, on the session's lane. Not saved; cleared on eviction. */
  once(ms: number, fn: () => unknown): TimerHandle {
    return this.#addMemory(checkMs(ms, 'timers.once(ms)', 0), fn, 0)
  }

  /** Runs `fn` every `ms` (> 0) on the session's lane, keeping its phase. Not saved; cleared on eviction. */
  every(ms: number, fn: () => unknown): TimerHandle {
    return this.#addMemory(checkMs(ms, 'timers.every(ms)', 1), fn, ms)
  }

  /** Number of in-memory timers. */
  get memorySize(): number {
    return this.#memory?.size ?? 0
  }

  /** @internal */
  cancelMemory(t: MemoryTimer): void {
    if (!t.active) return
    t.active = false
    this.#memory?.delete(t)
    this._host.cancel(t.handle)
  }

  /** @internal Clears every in-memory timer and the durable handle (eviction, stop). */
  _clear(): void {
    if (this.#memory !== undefined) {
      for (const t of this.#memory) {
        t.active = false
        this._host.cancel(t.handle)
      }
      this.#memory.clear()
    }
    if (this._handle !== undefined) this._host.cancel(this._handle)
    this._handle = undefined
    this._armedAt = Infinity
  }

  #addMemory(ms: number, fn: () => unknown, every: number): TimerHandle {
    this._host.checkLive(this)
    if (typeof fn !== 'function') throw new TypeError('a timer needs a callback function')
    const t = new MemoryTimer(this, fn, every)
    t.due = this._host.now() + ms
    ;(this.#memory ??= new Set()).add(t)
    this.#arm(t, ms)
    return t
  }

  #arm(t: MemoryTimer, ms: number): void {
    t.handle = this._host.schedule(this, ms, () => {
      if (!t.active) return
      if (t.every > 0) {
        const now = this._host.now()
        let next = t.due + t.every
        if (next <= now) next = now + t.every
        t.due = next
        this.#arm(t, next - now)
      } else {
        t.active = false
        this.#memory?.delete(t)
      }
      this._host.runOnLane(this, t.fn)
    })
  }
}

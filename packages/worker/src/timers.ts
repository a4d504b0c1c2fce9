/**
 * Worker timers: `worker.timers.once(ms, fn)`, `every(ms, fn)` and `everyTick(fn)` on the runtime's clock. A
 * callback that throws (or rejects) is logged and reported to onError, and a repeating timer
 * stays scheduled (fixes the original's B4). Repeating timers keep their phase (`due + ms`) and
 * never catch up missed runs. `everyTick` callbacks (the original's per-tick `schedule`) run once
 * after each event-loop turn in which the worker ran tasks or timers, never while it is idle, so
 * they cannot busy-spin (fixes the original's S4). Every timer is cancelled when the worker stops. Timers are in
 * memory only and do not take part in task lanes: a timer callback can run while a player's
 * async handler is awaiting.
 */
import { PeonyError } from '@peony/protocol'
import { WorkerError, WorkerErrorCode } from './errors.ts'
import { isThenable } from './hooks.ts'
import type { Clock } from './runtime/contract.ts'

/** A scheduled timer. */
export interface TimerHandle {
  /** Cancels the timer (idempotent). */
  cancel(): void
  /** True until the timer ran (once) or was cancelled. */
  readonly active: boolean
}

/** Receives a failing callback's error (the runtime logs it and runs onError). */
export type TimerErrorReporter = (err: WorkerError) => void

class Timer implements TimerHandle {
  handle: unknown = undefined
  due = 0
  active = true
  readonly owner: WorkerTimers
  readonly fn: () => unknown
  readonly every: number
  readonly run: () => void

  constructor(owner: WorkerTimers, fn: () => unknown, every: number) {
    this.owner = owner
    this.fn = fn
    this.every = every
    this.run = () => owner.fire(this)
  }

  cancel(): void {
    this.owner.cancelTimer(this)
  }
}

class TickTimer implements TimerHandle {
  active = true
  readonly owner: WorkerTimers
  readonly fn: () => unknown
  constructor(owner: WorkerTimers, fn: () => unknown) {
    this.owner = owner
    this.fn = fn
  }
  cancel(): void {
    this.owner.cancelTick(this)
  }
}

function checkMs(ms: number, what: string): number {
  if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`timers.${what}(ms) needs a finite ms >= 0, got ${ms}`)
  return ms
}

/** The timers of one worker: `worker.timers`. */
export class WorkerTimers {
  readonly #clock: Clock
  readonly #report: TimerErrorReporter
  readonly #timers = new Set<Timer>()
  readonly #ticks = new Set<TickTimer>()
  #tickScheduled = false
  #closed = false

  constructor(clock: Clock, report: TimerErrorReporter) {
    this.#clock = clock
    this.#report = report
  }

  /** Runs `fn` once, `ms` from now. */
  once(ms: number, fn: () => unknown): TimerHandle {
    return this.#add(checkMs(ms, 'once'), fn, 0)
  }

  /** Runs `fn` every `ms` (> 0), first `ms` from now. A throwing callback stays scheduled. */
  every(ms: number, fn: () => unknown): TimerHandle {
    if (!(checkMs(ms, 'every') > 0)) throw new RangeError('timers.every(ms) needs ms > 0')
    return this.#add(ms, fn, ms)
  }

  /**
   * Runs `fn` once after every event-loop turn in which the worker did work (tasks, timers),
   * and not at all while it is idle. A throwing callback is reported and stays registered.
   */
  everyTick(fn: () => unknown): TimerHandle {
    if (typeof fn !== 'function') throw new TypeError('a timer needs a callback function')
    if (this.#closed) throw new PeonyError(WorkerErrorCode.WORKER_STOPPED, 'cannot schedule a timer: the worker stopped')
    const t = new TickTimer(this, fn)
    this.#ticks.add(t)
    return t
  }

  /** Number of active timers (everyTick callbacks included). */
  get size(): number {
    return this.#timers.size + this.#ticks.size
  }

  /** @internal The worker did work this turn: run the everyTick callbacks once, after it. */
  kick(): void {
    if (this.#tickScheduled || this.#ticks.size === 0) return
    this.#tickScheduled = true
    setImmediate(this.#runTicks)
  }

  readonly #runTicks = (): void => {
    this.#tickScheduled = false
    for (const t of this.#ticks) this.#call(t.fn)
  }

  /** @internal */
  cancelTick(t: TickTimer): void {
    t.active = false
    this.#ticks.delete(t)
  }

  /** Cancels every timer. After `close` (the worker stopped) new timers throw `PEONY_WORKER_STOPPED`. */
  cancelAll(): void {
    for (const t of this.#timers) {
      t.active = false
      this.#clock.clearTimeout(t.handle)
    }
    this.#timers.clear()
    for (const t of this.#ticks) t.active = false
    this.#ticks.clear()
  }

  /** @internal Cancels every timer and refuses new ones. */
  close(): void {
    this.#closed = true
    this.cancelAll()
  }

  /** @internal */
  cancelTimer(t: Timer): void {
    if (!t.active) return
    t.active = false
    this.#timers.delete(t)
    this.#clock.clearTimeout(t.handle)
  }

  /** @internal Runs a due timer and reschedules a repeating one. */
  fire(t: Timer): void {
    if (!t.active) return
    if (t.every > 0) {
      // Reschedule before running, so a throwing callback keeps its schedule.
      const now = this.#clock.now()
      let next = t.due + t.every
      if (next <= now) next = now + t.every
      t.due = next
      t.handle = this.#clock.setTimeout(t.run, next - now)
    } else {
      t.active = false
      this.#timers.delete(t)
    }
    this.kick()
    this.#call(t.fn)
  }

  /** Runs a callback; a throw or rejection is reported, never propagated. */
  #call(fn: () => unknown): void {
    let r: unknown
    try {
      r = fn()
    } catch (err) {
      this.#fail(err)
      return
    }
    if (isThenable(r)) r.then(undefined, (err: unknown) => this.#fail(err))
  }

  #fail(err: unknown): void {
    this.#report(new WorkerError(WorkerErrorCode.TIMER_FAILED, `timer callback failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err }))
  }

  #add(ms: number, fn: () => unknown, every: number): TimerHandle {
    if (typeof fn !== 'function') throw new TypeError('a timer needs a callback function')
    if (this.#closed) throw new PeonyError(WorkerErrorCode.WORKER_STOPPED, 'cannot schedule a timer: the worker stopped')
    const t = new Timer(this, fn, every)
    t.due = this.#clock.now() + ms
    t.handle = this.#clock.setTimeout(t.run, ms)
    this.#timers.add(t)
    return t
  }
}

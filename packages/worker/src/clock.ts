/**
 * Clocks: `systemClock` (wall time and Node timers) for production, and `ManualClock` for tests,
 * whose time moves only when the test advances it, so handlers that sleep, time out or schedule
 * timers are tested without real waiting. Handlers reach the runtime's clock as `req.worker.clock`.
 */
import type { Clock } from './runtime/contract.ts'

/** The system clock: `Date.now()` and Node's `setTimeout`/`clearTimeout`. */
export const systemClock: Clock = Object.freeze({
  now: (): number => Date.now(),
  setTimeout: (fn: () => void, ms: number): unknown => setTimeout(fn, ms),
  clearTimeout: (handle: unknown): void => clearTimeout(handle as ReturnType<typeof setTimeout>),
})

interface ManualTimer {
  id: number
  due: number
  seq: number
  fn: () => void
}

/** Resolves after every promise job queued so far (and the ones they queue) has run. */
function settleMicrotasks(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}

/**
 * A clock whose time moves only when told to. Timers run in due order (ties in the order they
 * were set), each with `now()` equal to its due time. A callback that throws propagates out of
 * `advance`/`runAll` (the timer is already removed).
 *
 * `advance` runs timers synchronously, so promise continuations run after it returns; use
 * `advanceAsync` when the code under test awaits between timers (`await clock.sleep(…)` in a loop).
 */
export class ManualClock implements Clock {
  #now: number
  #seq = 0
  #nextId = 1
  /** Sorted by (due, seq). */
  #timers: ManualTimer[] = []

  /** @param startMs the initial `now()` (default 0). */
  constructor(startMs = 0) {
    if (!Number.isFinite(startMs)) throw new RangeError(`ManualClock start must be a finite number, got ${startMs}`)
    this.#now = startMs
  }

  /** The current manual time in ms. */
  now(): number {
    return this.#now
  }

  /** Schedules `fn` at `now() + ms` (a negative or non-finite `ms` counts as 0). Returns a handle for `clearTimeout`. */
  setTimeout(fn: () => void, ms: number): number {
    const delay = Number.isFinite(ms) && ms > 0 ? ms : 0
    const t: ManualTimer = { id: this.#nextId++, due: this.#now + delay, seq: this.#seq++, fn }
    // Binary search for the insertion point after every timer with (due, seq) ≤ t's.
    const a = this.#timers
    let lo = 0
    let hi = a.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if ((a[mid] as ManualTimer).due <= t.due) lo = mid + 1
      else hi = mid
    }
    a.splice(lo, 0, t)
    return t.id
  }

  /** Cancels a timer; unknown or already-run handles are ignored. */
  clearTimeout(handle: unknown): void {
    const i = this.#timers.findIndex((t) => t.id === handle)
    if (i >= 0) this.#timers.splice(i, 1)
  }

  /** Number of timers not yet run. */
  get pending(): number {
    return this.#timers.length
  }

  /** A promise that resolves after `ms` of manual time. */
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.setTimeout(resolve, ms))
  }

  /**
   * Moves time forward by `ms`, running every timer that falls due on the way (including timers
   * those callbacks set, if they fall due within the window). Returns how many timers ran.
   */
  advance(ms: number): number {
    if (!(ms >= 0)) throw new RangeError(`advance(ms) needs ms >= 0, got ${ms}`)
    const end = this.#now + ms
    let ran = 0
    for (;;) {
      const t = this.#timers[0]
      if (t === undefined || t.due > end) break
      this.#timers.shift()
      if (t.due > this.#now) this.#now = t.due
      ran++
      t.fn()
    }
    this.#now = end
    return ran
  }

  /**
   * Like `advance`, but lets pending promise jobs run before the first timer, after each timer,
   * and at the end, so async code that reacts to one timer (and sets the next) runs in order.
   */
  async advanceAsync(ms: number): Promise<number> {
    if (!(ms >= 0)) throw new RangeError(`advanceAsync(ms) needs ms >= 0, got ${ms}`)
    const end = this.#now + ms
    let ran = 0
    await settleMicrotasks()
    for (;;) {
      const t = this.#timers[0]
      if (t === undefined || t.due > end) break
      this.#timers.shift()
      if (t.due > this.#now) this.#now = t.due
      ran++
      t.fn()
      await settleMicrotasks()
    }
    this.#now = end
    await settleMicrotasks()
    return ran
  }

  /**
   * Runs timers in due order until none is left, moving time to each one. Throws a RangeError
   * after `limit` timers (a repeating timer would otherwise run forever). Returns how many ran.
   */
  runAll(limit = 10_000): number {
    let ran = 0
    while (this.#runNext(++ran, limit, 'runAll'));
    return ran - 1
  }

  /** Runs the next timer (moving time to it); false when none is left. Throws past `limit`. */
  #runNext(n: number, limit: number, caller: string): boolean {
    const t = this.#timers.shift()
    if (t === undefined) return false
    if (n > limit) {
      this.#timers.unshift(t)
      throw new RangeError(`ManualClock.${caller}: more than ${limit} timers ran; is a repeating timer scheduled?`)
    }
    if (t.due > this.#now) this.#now = t.due
    t.fn()
    return true
  }

  /** `runAll` that lets promise jobs run between timers (see `advanceAsync`). */
  async runAllAsync(limit = 10_000): Promise<number> {
    let ran = 0
    await settleMicrotasks()
    while (this.#runNext(++ran, limit, 'runAllAsync')) await settleMicrotasks()
    return ran - 1
  }
}

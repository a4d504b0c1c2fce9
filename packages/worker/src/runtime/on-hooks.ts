/**
 * Running the worker's and the client's on* hooks (onWorkerStart, onWorkerActivate, …): in
 * order, a throwing or rejecting one counted in `hookFailed` and reported, the next still run.
 */
import { isThenable, type AnyHook, type AppHookName } from '../hooks.ts'
import { hookError, type ErrorReporter } from './report.ts'
import type { Counters } from './stats.ts'

/** Runs lists of on* hooks. */
export class OnHooks {
  readonly #counters: Counters
  readonly #reporter: ErrorReporter

  constructor(counters: Counters, reporter: ErrorReporter) {
    this.#counters = counters
    this.#reporter = reporter
  }

  /**
   * Runs on* hooks in order; a throwing one is counted, logged and reported, and the next still
   * runs. Returns undefined when everything ran synchronously, else a promise that never rejects.
   */
  run(name: AppHookName, hooks: readonly AnyHook[], arg: unknown, i = 0): Promise<void> | undefined {
    for (; i < hooks.length; i++) {
      let r: unknown
      try {
        r = (hooks[i] as (a: unknown) => unknown)(arg)
      } catch (e) {
        this.#counters.hookFailed++
        void this.#reporter.report(hookError(name, e, undefined), undefined)
        continue
      }
      if (isThenable(r)) return this.#runAsync(name, hooks, arg, i, r)
    }
    return undefined
  }

  async #runAsync(name: AppHookName, hooks: readonly AnyHook[], arg: unknown, i: number, pending: PromiseLike<unknown>): Promise<void> {
    try {
      await pending
    } catch (e) {
      this.#counters.hookFailed++
      await this.#reporter.report(hookError(name, e, undefined), undefined)
    }
    const r = this.run(name, hooks, arg, i + 1)
    if (r !== undefined) await r
  }
}

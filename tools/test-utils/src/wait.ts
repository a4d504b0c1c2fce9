/**
 * Waiting helpers for tests: poll a condition instead of sleeping a fixed time, so tests are
 * fast on a quiet machine and still pass on a loaded one.
 */

/** Options of {@link waitFor}. */
export interface WaitForOptions {
  /** Give up after this long. Default 5000 ms. */
  timeoutMs?: number
  /** Poll this often. Default 10 ms. */
  intervalMs?: number
  /** Included in the timeout error. */
  message?: string
}

/**
 * Resolves once `predicate` returns (or resolves to) a truthy value; rejects with an Error after
 * `timeoutMs`. A predicate that throws is treated as false until the deadline, then its error is
 * the cause.
 */
export async function waitFor(predicate: () => unknown, options: WaitForOptions = {}): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 5000
  const intervalMs = options.intervalMs ?? 10
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      if (await predicate()) return
      last = undefined
    } catch (err) {
      last = err
    }
    if (Date.now() >= deadline) {
      const what = options.message ?? predicate.toString().slice(0, 200)
      throw new Error(`waitFor timed out after ${timeoutMs} ms: ${what}`, last === undefined ? undefined : { cause: last })
    }
    await sleep(intervalMs)
  }
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** Collects the first `n` values of an async iterable. */
export async function collect<T>(iterable: AsyncIterable<T>, n: number): Promise<T[]> {
  const out: T[] = []
  if (n <= 0) return out
  for await (const v of iterable) {
    out.push(v)
    if (out.length >= n) break
  }
  return out
}

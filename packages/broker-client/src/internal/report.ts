/**
 * Error reporting for the loops of the wire layer, which must never throw: an `onError` callback
 * when the user gave one (its own throws are swallowed), otherwise the first error only is
 * reported with `process.emitWarning`, so a flood of identical failures cannot flood the log.
 */
import type { PeonyError } from '@peony/protocol'

/** Returns a function that reports one error as described in the module comment. */
export function createReporter(onError: ((err: PeonyError) => void) | undefined): (err: PeonyError) => void {
  let warned = false
  return (err) => {
    if (onError !== undefined) {
      try {
        onError(err)
      } catch {
        // An onError that throws has nowhere left to report to.
      }
      return
    }
    if (!warned) {
      warned = true
      process.emitWarning(err)
    }
  }
}

/**
 * Error reporting: every error of the runtime is logged (limited to one line per kind per 10 s)
 * and handed to the app's onError hooks. Also the WorkerErrors the runtime wraps a failing
 * handler's or hook's throw in.
 */
import type { LogLimiter } from '@peony/log-limiter'
import { isPeonyError, type PeonyError } from '@peony/protocol'
import { WorkerError, WorkerErrorCode } from '../errors.ts'
import { isThenable, type AnyHook, type AppHookName } from '../hooks.ts'
import type { PeonyRequest } from '../request.ts'
import { errorSite } from './error-site.ts'

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

/** PEONY_HANDLER_FAILED for a handler (or, with `hook`, a task's on-hook) that threw or rejected `e`. */
export function handlerError(e: unknown, req: PeonyRequest, hook: AppHookName | undefined): WorkerError {
  const where = hook ?? `handler ${req.route?.name ?? String(req.cmd)}`
  return new WorkerError(WorkerErrorCode.HANDLER_FAILED, `${where} failed: ${messageOf(e)}`, {
    cmd: req.cmd,
    uid: req.uid,
    taskCmd: req.taskCmd,
    hook,
    cause: e,
  })
}

/** PEONY_HOOK_FAILED for a hook that threw or rejected `e`. */
export function hookError(hook: AppHookName, e: unknown, req: PeonyRequest | undefined): WorkerError {
  return new WorkerError(WorkerErrorCode.HOOK_FAILED, `hook ${hook} failed: ${messageOf(e)}`, {
    cmd: req?.cmd,
    uid: req?.uid,
    taskCmd: req?.taskCmd,
    hook,
    cause: e,
  })
}

/** Logs errors and runs the onError hooks. */
export class ErrorReporter {
  readonly #limit: LogLimiter
  /** The app's onError hooks, once the runtime has started. */
  #hooks: readonly AnyHook[] | undefined = undefined

  constructor(limit: LogLimiter) {
    this.#limit = limit
  }

  /** Sets the onError hooks (at start; errors reported before only reach the log). */
  setHooks(hooks: readonly AnyHook[]): void {
    this.#hooks = hooks
  }

  /**
   * Logs an error and runs the onError hooks (a throwing onError hook is only logged). Never
   * rejects. Every error reaches the hooks; the log gets one line per kind per 10 s (the first
   * with its stack, then a count: see LogLimiter). A kind is the code, the route or hook for
   * handler and hook failures (one failing route does not hide another), and the code of the
   * cause (a storage outage and a corrupt record are different load failures).
   */
  report(err: PeonyError, req: PeonyRequest | undefined): Promise<void> | undefined {
    const level = err.code === WorkerErrorCode.HANDLER_TIMEOUT ? 'warn' : 'error'
    const cause = (err as { cause?: unknown }).cause
    const causeCode = isPeonyError(cause) ? cause.code : undefined
    const hook = (err as { hook?: string }).hook
    const where = hook ?? (err.code === WorkerErrorCode.HANDLER_FAILED || err.code === WorkerErrorCode.HANDLER_TIMEOUT ? req?.route?.name : undefined)
    // A handler's or hook's own error is the line's `err` (its stack and cause chain, with the
    // app's file and line as `at`); the runtime's WorkerError around it adds only its code.
    const own = (err.code === WorkerErrorCode.HANDLER_FAILED || err.code === WorkerErrorCode.HOOK_FAILED) && cause instanceof Error ? cause : undefined
    const at = own === undefined ? undefined : errorSite(own)
    const shown = own ?? err
    const obj: Record<string, unknown> = { err: shown, code: err.code }
    if (causeCode !== undefined) obj.causeCode = causeCode
    if (where !== undefined && own !== undefined) obj[hook === undefined ? 'route' : 'hook'] = where
    if (at !== undefined) obj.at = at
    obj.req = req?.toJSON()
    let kind: string = err.code
    if (where !== undefined) kind += ` ${where}`
    if (causeCode !== undefined) kind += ` ${causeCode}`
    this.#limit[level](kind, obj, err.message)
    const hooks = this.#hooks
    if (hooks === undefined || hooks.length === 0) return undefined
    return this.#runErrorHooks(hooks, err, req, 0)
  }

  #runErrorHooks(hooks: readonly AnyHook[], err: PeonyError, req: PeonyRequest | undefined, i: number): Promise<void> | undefined {
    for (; i < hooks.length; i++) {
      let r: unknown
      try {
        r = (hooks[i] as (e: PeonyError, q: PeonyRequest | undefined) => unknown)(err, req)
      } catch (e) {
        this.#limit.error('onError hook', { err: e, code: WorkerErrorCode.HOOK_FAILED, hook: 'onError' }, 'onError hook threw')
        continue
      }
      if (isThenable(r)) {
        const next = i + 1
        return Promise.resolve(r).then(
          () => this.#runErrorHooks(hooks, err, req, next),
          (e: unknown) => {
            this.#limit.error('onError hook', { err: e, code: WorkerErrorCode.HOOK_FAILED, hook: 'onError' }, 'onError hook rejected')
            return this.#runErrorHooks(hooks, err, req, next)
          },
        )
      }
    }
    return undefined
  }
}

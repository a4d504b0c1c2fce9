/** Codes of errors the master raises. */
export const MasterErrorCode = {
  /** A worker failed to start: the application module did not load, or the thread died before it was ready. */
  APP_LOAD_FAILED: 'PEONY_WORKER_APP_LOAD_FAILED',
  /** The storage thread could not open the configured storage (the cause's code, e.g. PEONY_STORAGE_LOCKED, is in the message and `cause`). */
  STORAGE_OPEN_FAILED: 'PEONY_STORAGE_OPEN_FAILED',
  /** start() called twice, or after stop(). */
  ALREADY_STARTED: 'PEONY_ALREADY_STARTED',
  /** The group router threw for a task: the task has no route (logged, rate-limited; cmd 10 is answered -10007). */
  ROUTER_FAILED: 'PEONY_ROUTER_FAILED',
} as const
export type MasterErrorCode = (typeof MasterErrorCode)[keyof typeof MasterErrorCode]

/**
 * How a task ends. A request is handed its session (and the session's output gate when its
 * outputs must wait: `attach`); when it settles, the session gets its automatic dirty mark
 * (`settle`), then the task is counted, its lane's accounting updated and the host told with
 * `onTaskDone`, once the request's held outputs left the gate (`done`, exactly once per task).
 */
import type { PeonyRequest } from '../request.ts'
import type { SessionManager } from '../session/session-manager.ts'
import { GONE, type Session } from '../session/session.ts'
import type { WorkerTimers } from '../timers.ts'
import type { RuntimeLogger, TaskOutcome } from './contract.ts'
import type { Lanes } from './lanes.ts'
import { OUTCOME_COUNTER, type Counters } from './stats.ts'

/** Settles the tasks of one runtime. */
export class Settlement {
  readonly #counters: Counters
  readonly #lanes: Lanes
  readonly #sessions: SessionManager
  readonly #timers: WorkerTimers
  readonly #log: RuntimeLogger
  readonly #onDone: ((id: number, outcome: TaskOutcome) => void) | undefined
  /** Requests whose outputs an output gate holds, by task id, until they settle. */
  readonly #holding = new Map<number, PeonyRequest>()

  constructor(
    counters: Counters,
    lanes: Lanes,
    sessions: SessionManager,
    timers: WorkerTimers,
    log: RuntimeLogger,
    onDone: ((id: number, outcome: TaskOutcome) => void) | undefined,
  ) {
    this.#counters = counters
    this.#lanes = lanes
    this.#sessions = sessions
    this.#timers = timers
    this.#log = log
    this.#onDone = onDone
  }

  /**
   * Gives a request its session, and the session's output gate when the route is gated or the
   * session already holds output (every later output of a session waits behind a held one).
   */
  attach(req: PeonyRequest, s: Session | undefined): void {
    req._session = s
    if (s === undefined || (s._flags & GONE) !== 0) return
    const gated = req.route !== undefined && (req.route.gate === undefined ? this.#sessions.gateDefault : req.route.gate === 'stored')
    if (!gated && s._held === undefined) return
    req._hold = s
    if (gated) req._barrier = this.#sessions.gateBegin(s)
    this.#holding.set(req.id, req)
  }

  /**
   * Settles a request: the automatic dirty mark of the session it was handed (its route's, the
   * resident one of a `{ session: false }` route or of an on-hook task), then `done`.
   */
  settle(req: PeonyRequest, outcome: TaskOutcome): void {
    const s = req._session
    if (s !== undefined) this.#sessions.afterHandler(s)
    this.done(req.id, outcome)
  }

  /** Settles a task: counters, onTaskDone, idle detection. Called exactly once per task. */
  done(id: number, outcome: TaskOutcome): void {
    this.#timers.kick()
    const lanes = this.#lanes
    lanes.settled()
    const c = this.#counters
    c.handled++
    const k = OUTCOME_COUNTER[outcome]
    if (k !== undefined) c[k]++
    const held = this.#holding.size > 0 ? this.#holding.get(id) : undefined
    if (held !== undefined) {
      // The host hears of it once the request's outputs left the gate: a worker that dies
      // holding them leaves the task started, and the master answers it -10001.
      this.#holding.delete(id)
      this.#sessions.gateSettle(held._hold as Session, held._barrier, () => this.#notifyDone(id, outcome))
    } else this.#notifyDone(id, outcome)
    lanes.afterSettled()
  }

  #notifyDone(id: number, outcome: TaskOutcome): void {
    if (this.#onDone === undefined) return
    try {
      this.#onDone(id, outcome)
    } catch (err) {
      this.#log.error({ err, taskId: id }, 'onTaskDone threw')
    }
  }
}

/**
 * The intake server (protocol §1): one ZeroMQ ROUTER bound on every configured endpoint, read
 * continuously by a single receive loop. Each message is checked (exactly one payload frame,
 * frame size under the limit) and decoded with the codec; the tasks go to `onTasks`
 * synchronously, every rejection to `onReject`, and both are counted. Nothing from the network
 * ever throws out of the loop or closes a broker's connection; the ZeroMQ high-water mark is never
 * used as flow control (the master sheds load per worker).
 *
 * Lifecycle: `createIntakeServer()` returns a server in status `closed`; `open()` binds (status
 * `opening` → `open`), `close()` unbinds (`closing` → `closed`). Both are idempotent and run one
 * transition at a time; a server may be opened again after it closed.
 *
 * `ipc://` endpoints: binding a path that a live process serves fails with
 * `PEONY_BROKER_ENDPOINT_IN_USE` (libzmq on its own would unlink the file and take the path
 * over); a stale file that nobody listens on is removed and reused. Two servers starting at the
 * very same moment on one path are not told apart (the probe and the bind are not atomic).
 */
import * as zmq from 'zeromq'
import { BrokerErrorCode, decodeTasks, Defaults, PeonyError, type Rejection, type Task, toPeonyError } from '@peony/protocol'
import { assertEndpoint, errCode, ipcPath, probeIpcPath, removeStale } from './internal/endpoints.ts'
import { createReporter } from './internal/report.ts'
import { positiveInt } from './internal/options.ts'

/** Status of a long-lived resource. */
export type IntakeServerStatus = 'opening' | 'open' | 'closing' | 'closed'

/** Options of {@link createIntakeServer}. */
export interface IntakeServerOptions {
  /** Endpoints to bind (`tcp://host:port`, `ipc:///path`); port 0 picks a free port. Default `[Defaults.INTAKE_ENDPOINT]`. */
  endpoints?: readonly string[]
  /** Largest payload frame accepted, checked before decoding. Default 1 MiB. */
  maxFrameBytes?: number
  /**
   * Called synchronously, once per message that holds at least one valid task, in arrival order.
   * With `ranges: true` it also gets the frame and each task's `[start, end)` byte range in it
   * (at `2i`, `2i + 1`), so the task's original bytes can be forwarded without re-encoding.
   */
  onTasks: (tasks: Task[], brokerId: Uint8Array, frame: Uint8Array, ranges: number[] | undefined) => void
  /** Report each task's byte range to `onTasks`. Default false. */
  ranges?: boolean
  /** Called once per rejection (a whole message or one batch element). Rejections are counted either way. */
  onReject?: (rejection: Rejection, brokerId: Uint8Array) => void
  /**
   * Called when `onTasks` or `onReject` throws, or when the receive loop hits an unexpected socket
   * error (it then keeps reading). Default: the first such error is reported with `process.emitWarning`.
   */
  onError?: (err: PeonyError) => void
  /** ZeroMQ receive high-water mark, in messages, set before binding. Default 1000 (zeromq's default). */
  receiveHighWaterMark?: number
}

/** Counters of an intake server. All are monotonic except `brokers`. */
export interface IntakeServerStats {
  /** Broker connections open right now (from the socket's accept/disconnect events). */
  brokers: number
  /** ZeroMQ messages received. */
  messages: number
  /** Valid tasks handed to `onTasks`. */
  tasks: number
  /** Rejections, all causes together. */
  rejected: number
  /** Rejections by code (`PEONY_BROKER_*`). */
  rejects: Record<string, number>
  /** Errors thrown by `onTasks`/`onReject`, and unexpected receive errors. */
  errors: number
}

/** A running (or closed) intake server. */
export interface IntakeServer {
  /** Current status. */
  readonly status: IntakeServerStatus
  /** The bound endpoints with ports resolved (`tcp://127.0.0.1:41234`) once open; the configured ones before. */
  readonly endpoints: readonly string[]
  /** Binds every endpoint. Rejects with `PEONY_BROKER_ENDPOINT_IN_USE` or `PEONY_BROKER_ENDPOINT_FAILED`, leaving nothing bound. */
  open(): Promise<void>
  /** Unbinds and stops reading. Messages still queued in ZeroMQ are discarded. */
  close(): Promise<void>
  /** A snapshot of the counters. */
  stats(): IntakeServerStats
  /** Same as `close()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>
}

/** Creates an intake server; call `open()` to bind. Bad options throw a TypeError/RangeError. */
export function createIntakeServer(options: IntakeServerOptions): IntakeServer {
  return new IntakeServerImpl(options)
}

class IntakeServerImpl implements IntakeServer {
  readonly #configured: readonly string[]
  readonly #maxFrameBytes: number
  readonly #rcvhwm: number
  readonly #onTasks: IntakeServerOptions['onTasks']
  readonly #onReject: IntakeServerOptions['onReject']
  readonly #ranges: boolean
  readonly #reporter: (err: PeonyError) => void
  #status: IntakeServerStatus = 'closed'
  #transition: Promise<void> = Promise.resolve()
  #sock: zmq.Router | undefined
  #loop: Promise<void> | undefined
  #bound: string[] = []
  #brokers = 0
  #messages = 0
  #tasks = 0
  #rejected = 0
  #errors = 0
  readonly #rejects: Record<string, number> = {}

  constructor(options: IntakeServerOptions) {
    if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object')
    const endpoints = options.endpoints ?? [Defaults.INTAKE_ENDPOINT]
    if (!Array.isArray(endpoints) || endpoints.length === 0) throw new TypeError('endpoints must be a non-empty array')
    for (const e of endpoints) assertEndpoint(e, 'each endpoint')
    if (new Set(endpoints).size !== endpoints.length) throw new TypeError('endpoints must not repeat')
    if (typeof options.onTasks !== 'function') throw new TypeError('onTasks must be a function')
    if (options.onReject !== undefined && typeof options.onReject !== 'function') throw new TypeError('onReject must be a function')
    if (options.onError !== undefined && typeof options.onError !== 'function') throw new TypeError('onError must be a function')
    this.#configured = [...endpoints]
    this.#maxFrameBytes = positiveInt(options.maxFrameBytes, 'maxFrameBytes', Defaults.MAX_FRAME_BYTES)
    this.#rcvhwm = options.receiveHighWaterMark === undefined ? 1000 : nonNegativeInt(options.receiveHighWaterMark)
    this.#onTasks = options.onTasks
    this.#onReject = options.onReject
    this.#ranges = options.ranges === true
    this.#reporter = createReporter(options.onError)
  }

  get status(): IntakeServerStatus {
    return this.#status
  }

  get endpoints(): readonly string[] {
    return this.#status === 'open' ? [...this.#bound] : [...this.#configured]
  }

  stats(): IntakeServerStats {
    return {
      brokers: this.#brokers,
      messages: this.#messages,
      tasks: this.#tasks,
      rejected: this.#rejected,
      rejects: { ...this.#rejects },
      errors: this.#errors,
    }
  }

  open(): Promise<void> {
    return this.#serial(async () => {
      if (this.#status === 'open') return
      this.#status = 'opening'
      const sock = new zmq.Router({ receiveHighWaterMark: this.#rcvhwm, linger: 0 })
      // Connection counting. 'accept' fires per accepted connection (tcp/ipc), 'disconnect' when it ends.
      sock.events.on('accept', () => {
        if (this.#sock === sock) this.#brokers++
      })
      sock.events.on('disconnect', () => {
        if (this.#sock === sock && this.#brokers > 0) this.#brokers--
      })
      this.#sock = sock
      this.#brokers = 0
      const bound: string[] = []
      try {
        for (const endpoint of this.#configured) bound.push(await bindOne(sock, endpoint))
      } catch (err) {
        this.#sock = undefined
        sock.close()
        this.#status = 'closed'
        throw err
      }
      this.#bound = bound
      this.#loop = this.#receive(sock)
      this.#status = 'open'
    })
  }

  close(): Promise<void> {
    return this.#serial(async () => {
      if (this.#status === 'closed') return
      this.#status = 'closing'
      const sock = this.#sock
      this.#sock = undefined
      // No unbind(): zeromq.js runs it on a libuv pool thread while this thread's poller may
      // read the same socket, and libzmq sockets are not thread-safe (that race aborted the
      // process: "Assertion failed: _state == term_ack_sent ... (pipe.cpp:355)"). close() runs
      // here; the I/O thread releases the endpoints a moment later, and a re-open's bind waits
      // for that (bindOne).
      if (sock !== undefined) {
        sock.close()
      }
      await this.#loop
      this.#loop = undefined
      this.#brokers = 0
      this.#status = 'closed'
    })
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close()
  }

  #serial(fn: () => Promise<void>): Promise<void> {
    const next = this.#transition.then(fn)
    this.#transition = next.catch(() => undefined)
    return next
  }

  async #receive(sock: zmq.Router): Promise<void> {
    while (!sock.closed) {
      try {
        for await (const msg of sock) this.#handle(msg)
        return
      } catch (err) {
        if (sock.closed) return
        // Unexpected (zeromq itself failing): report and keep reading.
        this.#report(toPeonyError(err, BrokerErrorCode.SOCKET_FAILED, `intake receive failed: ${String(err)}`))
        await new Promise((r) => setTimeout(r, 10))
      }
    }
  }

  #handle(msg: Buffer[]): void {
    this.#messages++
    const brokerId = msg[0] ?? EMPTY
    if (msg.length !== 2) {
      this.#reject({ code: BrokerErrorCode.MULTIPART, message: `message has ${msg.length - 1} payload frames, expected 1`, index: -1 }, brokerId)
      return
    }
    const frame = msg[1] as Buffer
    if (frame.length > this.#maxFrameBytes) {
      this.#reject(
        {
          code: BrokerErrorCode.FRAME_TOO_LARGE,
          message: `frame of ${frame.length} bytes exceeds maxFrameBytes ${this.#maxFrameBytes}`,
          index: -1,
        },
        brokerId,
      )
      return
    }
    const { tasks, rejects, ranges } = decodeTasks(frame, { maxFrameBytes: this.#maxFrameBytes, ranges: this.#ranges })
    if (tasks.length > 0) {
      this.#tasks += tasks.length
      try {
        this.#onTasks(tasks, brokerId, frame, ranges)
      } catch (err) {
        this.#report(toPeonyError(err, BrokerErrorCode.CALLBACK_FAILED, `onTasks threw: ${String(err)}`))
      }
    }
    for (const r of rejects) this.#reject(r, brokerId)
  }

  #reject(rejection: Rejection, brokerId: Uint8Array): void {
    this.#rejected++
    this.#rejects[rejection.code] = (this.#rejects[rejection.code] ?? 0) + 1
    if (this.#onReject === undefined) return
    try {
      this.#onReject(rejection, brokerId)
    } catch (err) {
      this.#report(toPeonyError(err, BrokerErrorCode.CALLBACK_FAILED, `onReject threw: ${String(err)}`))
    }
  }

  #report(err: PeonyError): void {
    this.#errors++
    this.#reporter(err)
  }
}

const EMPTY = new Uint8Array(0)

/** How long a tcp bind retries EADDRINUSE (a port just closed in this process is released asynchronously). */
const BIND_RETRY_MS = 250

function nonNegativeInt(v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new RangeError(`receiveHighWaterMark must be a non-negative integer, got ${String(v)}`)
  return v
}

/** Binds one endpoint, with the ipc live-path check; returns the resolved endpoint. */
async function bindOne(sock: zmq.Router, endpoint: string): Promise<string> {
  const path = ipcPath(endpoint)
  if (path !== undefined) {
    const probe = await probeIpcPath(path)
    if (probe === 'live') {
      throw new PeonyError(BrokerErrorCode.ENDPOINT_IN_USE, `${endpoint} is already served by a live process`)
    }
    if (probe === 'stale') {
      try {
        await removeStale(path)
      } catch (err) {
        throw new PeonyError(BrokerErrorCode.ENDPOINT_FAILED, `cannot reuse the path of ${endpoint}: ${err instanceof Error ? err.message : String(err)}`, {
          cause: err,
        })
      }
    }
  }
  try {
    // bindSync, not bind(): see close() (no other thread may touch the socket). A port this or
    // another socket of the process has just closed is released by ZeroMQ's I/O thread within
    // a few ms: EADDRINUSE on tcp is retried for up to BIND_RETRY_MS.
    for (const t0 = Date.now(); ; ) {
      try {
        sock.bindSync(endpoint)
        break
      } catch (err) {
        if (errCode(err) !== 'EADDRINUSE' || !endpoint.startsWith('tcp://') || Date.now() - t0 >= BIND_RETRY_MS) throw err
        await new Promise((r) => setTimeout(r, 5))
      }
    }
  } catch (err) {
    const code = errCode(err)
    if (code === 'EADDRINUSE' && endpoint.startsWith('ipc://')) {
      throw new PeonyError(BrokerErrorCode.ENDPOINT_IN_USE, `${endpoint} is already served by a live process`, { cause: err })
    }
    throw new PeonyError(BrokerErrorCode.ENDPOINT_FAILED, `cannot bind ${endpoint}: ${err instanceof Error ? err.message : String(err)}`, {
      cause: err,
      retryable: code === 'EADDRINUSE',
    })
  }
  return sock.lastEndpoint ?? endpoint
}

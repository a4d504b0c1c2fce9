/**
 * The broker side of intake (protocol §1), for brokers written in TypeScript: one ZeroMQ DEALER
 * per peony server, the server chosen per task by {@link chooseServer} (§1.3).
 *
 * - `send(task)` never blocks: it appends the task to its server's pending list and returns.
 * - All tasks sent during one event-loop turn are coalesced per server (a `setImmediate`) into
 *   batch frames under `maxFrameBytes` (`encodeTaskFrames`) and handed to ZeroMQ by one serialized
 *   `await sock.send()` loop per socket (zeromq.js allows one pending send per socket).
 * - Sockets use `immediate: true`, so nothing is queued into a pipe with no peer: while a server
 *   is away its tasks wait in a bounded buffer of ours (`bufferMax` per server; beyond it the
 *   newest task is dropped and counted in `stats().overflow`) and are delivered, in order, once it
 *   appears. The routing id is never set (§0).
 * - Intake has no acknowledgements: what ZeroMQ held when a server died is lost (at most once).
 *
 * Lifecycle: the client connects when created (status `open`); `close({ lingerMs })` stops
 * accepting tasks (`send` then throws `PEONY_BROKER_NOT_OPEN`), waits up to `lingerMs` for the
 * buffers to drain, then closes the sockets with the remaining time as ZeroMQ linger.
 */
import * as zmq from 'zeromq'
import { BrokerErrorCode, chooseServer, Defaults, encodeTaskFrames, encodeTasks, PeonyError, type Task, toPeonyError } from '@peony/protocol'
import { assertEndpoint } from './internal/endpoints.ts'
import { createReporter } from './internal/report.ts'
import { lingerOf, positiveInt } from './internal/options.ts'

/** One peony server a broker sends to: a stable id (hashed for server choice) and its intake endpoint. */
export interface BrokerClientServer {
  /** The server id of protocol §1.3: a name, not an endpoint. Unique, non-empty. */
  id: string
  /** The server's intake endpoint (`tcp://…`, `ipc://…`). */
  endpoint: string
}

/** Options of {@link createBrokerClient}. */
export interface BrokerClientOptions {
  /** The peony servers; static in v1. */
  servers: readonly BrokerClientServer[]
  /** Tasks buffered per server, not yet handed to ZeroMQ, before the newest are dropped. Default 10 000. */
  bufferMax?: number
  /** Largest frame sent (batches are split under it). Default 1 MiB, the intake default. */
  maxFrameBytes?: number
  /** ZeroMQ send high-water mark per socket, in frames. Default 1000. */
  sendHighWaterMark?: number
  /**
   * Receives tasks that could not be encoded (they are dropped and counted) and unexpected socket
   * errors. Default: the first one is reported with `process.emitWarning`.
   */
  onError?: (err: PeonyError) => void
}

/** Counters of one server's socket. */
export interface BrokerServerStats {
  /** Tasks handed to ZeroMQ. */
  sent: number
  /** Frames handed to ZeroMQ. */
  frames: number
  /** Tasks waiting in our buffer (not yet handed to ZeroMQ). */
  buffered: number
  /** Tasks dropped because the buffer was full. */
  overflow: number
  /** Tasks dropped because they could not be encoded. */
  encodeFailed: number
  /** Tasks still buffered when the client closed. */
  discarded: number
}

/** Counters of a broker client: totals plus one entry per server id. */
export interface BrokerClientStats extends BrokerServerStats {
  servers: Record<string, BrokerServerStats>
}

/** Options of {@link BrokerClient.close}. */
export interface BrokerClientCloseOptions {
  /** How long to keep trying to hand buffered tasks over, then let ZeroMQ deliver them. Default 0. */
  lingerMs?: number
}

/** A broker's connection to a set of peony servers. */
export interface BrokerClient {
  /** `open` until `close()` is called, then `closing`, then `closed`. */
  readonly status: 'open' | 'closing' | 'closed'
  /** The configured server ids, in configuration order. */
  readonly serverIds: readonly string[]
  /**
   * Queues a task for its server. Never blocks. Returns false when the task was dropped because
   * its server's buffer is full (counted). Throws `PEONY_BROKER_NOT_OPEN` once closing, and a
   * RangeError for a routing key out of range.
   */
  send(task: Task): boolean
  /** The server id a task goes to. */
  serverFor(task: Task): string
  /**
   * Resolves when every task accepted so far has been handed to ZeroMQ (or dropped because it
   * could not be encoded). Waits as long as a server is away; rejects with `PEONY_BROKER_NOT_OPEN`
   * if the client closes first.
   */
  flush(): Promise<void>
  /** Closes every socket; see the module comment. */
  close(options?: BrokerClientCloseOptions): Promise<void>
  /** A snapshot of the counters. */
  stats(): BrokerClientStats
  /** Same as `close()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>
}

/** Creates a broker client and connects its sockets. Bad options throw a TypeError/RangeError. */
export function createBrokerClient(options: BrokerClientOptions): BrokerClient {
  return new BrokerClientImpl(options)
}

interface ServerState {
  id: string
  sock: zmq.Dealer
  pending: Task[]
  /** Tasks taken by the send loop and not yet handed over. */
  inLoop: number
  /** Tasks accepted by send(). */
  accepted: number
  /** Tasks done with: handed to ZeroMQ, dropped as unencodable, or discarded at close. */
  settled: number
  running: boolean
  stats: BrokerServerStats
}

interface FlushWaiter {
  targets: number[]
  resolve: () => void
  reject: (err: unknown) => void
}

class BrokerClientImpl implements BrokerClient {
  readonly #servers: ServerState[]
  readonly #byId = new Map<string, ServerState>()
  readonly #ids: readonly string[]
  readonly #bufferMax: number
  readonly #maxFrameBytes: number
  readonly #report: (err: PeonyError) => void
  #status: 'open' | 'closing' | 'closed' = 'open'
  #scheduled = false
  #waiters: FlushWaiter[] = []
  #closing: Promise<void> | undefined

  constructor(options: BrokerClientOptions) {
    if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object')
    const servers = options.servers
    if (!Array.isArray(servers) || servers.length === 0) throw new TypeError('servers must be a non-empty array')
    const ids = new Set<string>()
    for (const s of servers as readonly BrokerClientServer[]) {
      if (typeof s?.id !== 'string' || s.id === '') throw new TypeError('each server needs a non-empty string id')
      if (ids.has(s.id)) throw new TypeError(`server id ${JSON.stringify(s.id)} is repeated`)
      ids.add(s.id)
      assertEndpoint(s.endpoint, `endpoint of server ${JSON.stringify(s.id)}`)
    }
    if (options.onError !== undefined && typeof options.onError !== 'function') throw new TypeError('onError must be a function')
    this.#bufferMax = positiveInt(options.bufferMax, 'bufferMax', 10_000)
    this.#maxFrameBytes = positiveInt(options.maxFrameBytes, 'maxFrameBytes', Defaults.MAX_FRAME_BYTES)
    const sndhwm = positiveInt(options.sendHighWaterMark, 'sendHighWaterMark', 1000)
    this.#report = createReporter(options.onError)
    this.#servers = []
    try {
      for (const s of servers as readonly BrokerClientServer[]) {
        const sock = new zmq.Dealer({ immediate: true, linger: 0, sendHighWaterMark: sndhwm })
        const state: ServerState = {
          id: s.id,
          sock,
          pending: [],
          inLoop: 0,
          accepted: 0,
          settled: 0,
          running: false,
          stats: { sent: 0, frames: 0, buffered: 0, overflow: 0, encodeFailed: 0, discarded: 0 },
        }
        this.#servers.push(state)
        this.#byId.set(s.id, state)
        try {
          sock.connect(s.endpoint)
        } catch (err) {
          throw new PeonyError(BrokerErrorCode.ENDPOINT_FAILED, `cannot connect ${s.endpoint}: ${String(err)}`, { cause: err })
        }
      }
    } catch (err) {
      for (const st of this.#servers) st.sock.close()
      throw err
    }
    this.#ids = this.#servers.map((s) => s.id)
  }

  get status(): 'open' | 'closing' | 'closed' {
    return this.#status
  }

  get serverIds(): readonly string[] {
    return this.#ids
  }

  serverFor(task: Task): string {
    return chooseServer(this.#ids, task)
  }

  send(task: Task): boolean {
    if (this.#status !== 'open') throw new PeonyError(BrokerErrorCode.NOT_OPEN, 'the broker client is closed')
    const s = this.#byId.get(chooseServer(this.#ids, task)) as ServerState
    if (s.pending.length + s.inLoop >= this.#bufferMax) {
      s.stats.overflow++
      return false
    }
    s.pending.push(task)
    s.accepted++
    if (!this.#scheduled) {
      this.#scheduled = true
      setImmediate(this.#turn)
    }
    return true
  }

  flush(): Promise<void> {
    if (this.#status === 'closed') return Promise.reject(new PeonyError(BrokerErrorCode.NOT_OPEN, 'the broker client is closed'))
    const targets = this.#servers.map((s) => s.accepted)
    if (this.#reached(targets)) return Promise.resolve()
    return new Promise<void>((resolve, reject) => this.#waiters.push({ targets, resolve, reject }))
  }

  stats(): BrokerClientStats {
    const total: BrokerServerStats = { sent: 0, frames: 0, buffered: 0, overflow: 0, encodeFailed: 0, discarded: 0 }
    const servers: Record<string, BrokerServerStats> = {}
    for (const s of this.#servers) {
      const st = { ...s.stats, buffered: s.pending.length + s.inLoop }
      servers[s.id] = st
      total.sent += st.sent
      total.frames += st.frames
      total.buffered += st.buffered
      total.overflow += st.overflow
      total.encodeFailed += st.encodeFailed
      total.discarded += st.discarded
    }
    return { ...total, servers }
  }

  close(options: BrokerClientCloseOptions = {}): Promise<void> {
    if (this.#closing !== undefined) return this.#closing
    const lingerMs = lingerOf(options)
    this.#status = 'closing'
    this.#closing = this.#close(lingerMs)
    return this.#closing
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close()
  }

  async #close(lingerMs: number): Promise<void> {
    const deadline = Date.now() + lingerMs
    if (lingerMs > 0) {
      const targets = this.#servers.map((s) => s.accepted)
      if (!this.#reached(targets)) {
        let timer: NodeJS.Timeout | undefined
        await Promise.race([
          new Promise<void>((resolve, reject) => this.#waiters.push({ targets, resolve, reject })).catch(() => undefined),
          new Promise<void>((resolve) => {
            timer = setTimeout(resolve, lingerMs)
          }),
        ])
        clearTimeout(timer)
      }
    }
    const remaining = Math.max(0, Math.ceil(deadline - Date.now()))
    for (const s of this.#servers) {
      const left = s.pending.length + s.inLoop
      s.stats.discarded += left
      s.settled += s.pending.length
      s.pending = []
      s.sock.linger = remaining
      s.sock.close()
    }
    this.#status = 'closed'
    const waiters = this.#waiters
    this.#waiters = []
    for (const w of waiters) w.reject(new PeonyError(BrokerErrorCode.NOT_OPEN, 'the broker client closed before the flush completed'))
  }

  readonly #turn = (): void => {
    this.#scheduled = false
    for (const s of this.#servers) {
      if (!s.running && s.pending.length > 0) void this.#pump(s)
    }
  }

  async #pump(s: ServerState): Promise<void> {
    s.running = true
    try {
      while (s.pending.length > 0 && !s.sock.closed) {
        const tasks = s.pending
        s.pending = []
        s.inLoop = tasks.length
        const frames = this.#encode(s, tasks)
        for (const frame of frames) {
          try {
            await s.sock.send(frame)
          } catch (err) {
            if (s.sock.closed) return
            // With the default sendTimeout (-1) a send only fails when the socket closes; anything else is unexpected.
            this.#report(toPeonyError(err, BrokerErrorCode.SOCKET_FAILED, `send to server ${s.id} failed: ${String(err)}`))
            continue
          }
          s.stats.frames++
        }
        s.stats.sent += s.inLoop
        s.settled += s.inLoop
        s.inLoop = 0
        this.#checkWaiters()
      }
    } finally {
      s.running = false
      if (s.sock.closed) s.inLoop = 0
    }
  }

  /** Encodes a batch; a task that cannot be encoded is dropped, counted and reported, the others go on. */
  #encode(s: ServerState, tasks: Task[]): Uint8Array[] {
    try {
      return encodeTaskFrames(tasks, this.#maxFrameBytes)
    } catch {
      const good: Task[] = []
      for (const t of tasks) {
        try {
          const one = encodeTasks([t])
          if (one.length > this.#maxFrameBytes) {
            throw new PeonyError(BrokerErrorCode.FRAME_TOO_LARGE, `a task of ${one.length} bytes exceeds maxFrameBytes ${this.#maxFrameBytes}`)
          }
          good.push(t)
        } catch (err) {
          s.stats.encodeFailed++
          s.inLoop--
          s.settled++
          this.#report(toPeonyError(err, BrokerErrorCode.ENCODE_FAILED, `cannot encode a task for server ${s.id}: ${String(err)}`))
        }
      }
      if (good.length === 0) return []
      try {
        return encodeTaskFrames(good, this.#maxFrameBytes)
      } catch (err) {
        s.stats.encodeFailed += good.length
        s.inLoop -= good.length
        s.settled += good.length
        this.#report(toPeonyError(err, BrokerErrorCode.ENCODE_FAILED, `cannot encode a batch for server ${s.id}: ${String(err)}`))
        return []
      }
    }
  }

  #reached(targets: number[]): boolean {
    for (let i = 0; i < targets.length; i++) {
      if ((this.#servers[i] as ServerState).settled < (targets[i] as number)) return false
    }
    return true
  }

  #checkWaiters(): void {
    if (this.#waiters.length === 0) return
    const still: FlushWaiter[] = []
    for (const w of this.#waiters) {
      if (this.#reached(w.targets)) w.resolve()
      else still.push(w)
    }
    this.#waiters = still
  }
}

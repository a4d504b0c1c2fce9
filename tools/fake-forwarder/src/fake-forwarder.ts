/**
 * A fake forwarder for tests (protocol §2): a real ZeroMQ ROUTER that binds the egress endpoint,
 * decodes every frame with the codec's `decodeEgress` and records the messages.
 *
 * With `ack: true` it behaves like a forwarder that supports acknowledgements:
 * - per `sender` it remembers the highest `seq` delivered; a message with a higher seq is
 *   delivered (seqs it skipped are remembered as missing, up to 10 000 per sender); a lower seq is
 *   delivered only if it was missing, otherwise dropped as a duplicate. So a re-sent message is
 *   never delivered twice, and one that arrives late after a gap is not lost;
 * - every `ackEveryMs` (default 20 ms, the protocol asks for at least every 100 ms) it answers
 *   `{ack: highest seq}` to each sender it heard from since the last ack, on the connection that
 *   sender used last (duplicates count as hearing, so a re-sending sender is acknowledged again).
 *
 * `restart()` closes the socket and binds the same endpoint again, keeping what it recorded
 * and (unless `forgetState`) its dedup state: a forwarder whose state survives, as maple's does
 * in redis. `stop()`/`start()` do the two halves separately, to keep it away for a while.
 * `pause()` stops reading (frames pile up inside ZeroMQ, as with a stuck forwarder; at most the
 * one frame already being received still gets through); a restart while paused therefore loses
 * those frames in flight, which is what a sender with acks must recover from.
 */
import * as zmq from 'zeromq'
import { decodeEgress, type EgressMessage, encodeAck, type Rejection, type Sequenced } from '@peony/protocol'
import { waitFor } from '@peony/test-utils'

/** An egress message as the fake forwarder recorded it. */
export type ForwardedMessage = EgressMessage & Sequenced

/** Options of {@link startFakeForwarder}. */
export interface FakeForwarderOptions {
  /** Endpoint to bind. Default `tcp://127.0.0.1:0` (a free port; read `endpoint` afterwards). */
  endpoint?: string
  /** Dedup by sender/seq and send `{ack}`. Default false. */
  ack?: boolean
  /** How often acks go out. Default 20 ms. */
  ackEveryMs?: number
  /** Largest frame accepted. Default 1 MiB. */
  maxFrameBytes?: number
}

/** Options of {@link FakeForwarder.restart}. */
export interface FakeForwarderRestartOptions {
  /** Stay away this long between close and bind. Default 0. */
  downMs?: number
  /** Forget the dedup state (a forwarder that lost its memory). Default false. */
  forgetState?: boolean
}

/** A running fake forwarder. */
export interface FakeForwarder {
  /** The bound endpoint, port resolved. */
  readonly endpoint: string
  /** Messages delivered to the consumer, in arrival order (deduplicated by sender/seq when `ack` is on). */
  readonly messages: ForwardedMessage[]
  /** Messages decoded, duplicates included. */
  readonly received: number
  /** ZeroMQ messages (frames) received. */
  readonly frames: number
  /** Messages dropped as already seen (ack mode). */
  readonly duplicates: number
  /** Messages delivered after a gap was filled (arrived below the highest seq, but missing). */
  readonly lateFills: number
  /** Rejections from the decoder. */
  readonly rejects: Rejection[]
  /** Ack frames sent. */
  readonly acksSent: number
  /** True while the socket is bound. */
  readonly running: boolean
  /** The highest seq delivered per sender (ack mode). */
  highestSeq(sender: string): bigint | undefined
  /** Resolves once at least `n` messages were delivered. */
  until(n: number, timeoutMs?: number): Promise<void>
  /** Unbinds (state kept). */
  stop(): Promise<void>
  /** Binds again on the same endpoint. */
  start(): Promise<void>
  /** `stop()`, wait `downMs`, `start()`. */
  restart(options?: FakeForwarderRestartOptions): Promise<void>
  /** Stops reading until `resume()` (or a restart). */
  pause(): void
  /** Reads again. */
  resume(): void
  /** True while paused. */
  readonly paused: boolean
  /** Stops for good. */
  close(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
}

interface SenderState {
  high: bigint
  missing: Set<bigint>
  peer: Buffer | undefined
  dirty: boolean
}

const MAX_MISSING = 10_000

/** Starts a fake forwarder bound on `endpoint`. */
export async function startFakeForwarder(options: FakeForwarderOptions = {}): Promise<FakeForwarder> {
  const f = new FakeForwarderImpl(options)
  await f.start()
  return f
}

class FakeForwarderImpl implements FakeForwarder {
  readonly messages: ForwardedMessage[] = []
  readonly rejects: Rejection[] = []
  received = 0
  frames = 0
  duplicates = 0
  lateFills = 0
  acksSent = 0
  #endpoint: string
  readonly #ack: boolean
  readonly #ackEveryMs: number
  readonly #maxFrameBytes: number
  #senders = new Map<string, SenderState>()
  #sock: zmq.Router | undefined
  #loop: Promise<void> | undefined
  #timer: NodeJS.Timeout | undefined
  #acking = false
  #closed = false
  #gate: Promise<void> | undefined
  #openGate: (() => void) | undefined

  constructor(options: FakeForwarderOptions) {
    this.#endpoint = options.endpoint ?? 'tcp://127.0.0.1:0'
    this.#ack = options.ack ?? false
    this.#ackEveryMs = options.ackEveryMs ?? 20
    this.#maxFrameBytes = options.maxFrameBytes ?? 1024 * 1024
  }

  get endpoint(): string {
    return this.#endpoint
  }

  get running(): boolean {
    return this.#sock !== undefined
  }

  get paused(): boolean {
    return this.#gate !== undefined
  }

  pause(): void {
    if (this.#gate !== undefined) return
    this.#gate = new Promise((resolve) => (this.#openGate = resolve))
  }

  resume(): void {
    const open = this.#openGate
    this.#gate = undefined
    this.#openGate = undefined
    open?.()
  }

  highestSeq(sender: string): bigint | undefined {
    return this.#senders.get(sender)?.high
  }

  until(n: number, timeoutMs = 10_000): Promise<void> {
    return waitFor(() => this.messages.length >= n, {
      timeoutMs,
      message: `fake forwarder expected ${n} messages, has ${this.messages.length}`,
    })
  }

  async start(): Promise<void> {
    if (this.#closed) throw new Error('the fake forwarder is closed')
    if (this.#sock !== undefined) return
    // sendTimeout 0: an ack never blocks; mandatory: an ack to a gone peer fails instead of vanishing.
    const sock = new zmq.Router({ linger: 0, sendTimeout: 0, mandatory: true })
    // bindSync: zeromq.js's async bind() runs on a libuv pool thread, racing this thread's use of
    // the socket. After a restart the old socket's port is released by ZeroMQ's I/O thread a few
    // ms after its close(): retry EADDRINUSE for up to 1 s.
    for (const t0 = Date.now(); ; ) {
      try {
        sock.bindSync(this.#endpoint)
        break
      } catch (err) {
        if ((err as { code?: string }).code !== 'EADDRINUSE' || Date.now() - t0 > 1_000) {
          sock.close()
          throw err
        }
        await new Promise((r) => setTimeout(r, 5))
      }
    }
    // Keep the resolved port, so a restart binds the same one.
    if (sock.lastEndpoint !== null && sock.lastEndpoint !== undefined) this.#endpoint = sock.lastEndpoint
    this.#sock = sock
    this.#loop = this.#receive(sock)
    if (this.#ack) this.#timer = setInterval(() => void this.#sendAcks(), this.#ackEveryMs)
  }

  async stop(): Promise<void> {
    const sock = this.#sock
    if (sock === undefined) return
    this.#sock = undefined
    clearInterval(this.#timer)
    this.#timer = undefined
    sock.close()
    // A paused loop must wake up to see that its socket closed; what ZeroMQ held is gone with it.
    this.resume()
    await this.#loop
    this.#loop = undefined
    for (const s of this.#senders.values()) s.peer = undefined
  }

  async restart(options: FakeForwarderRestartOptions = {}): Promise<void> {
    await this.stop()
    if (options.forgetState === true) this.#senders = new Map()
    if ((options.downMs ?? 0) > 0) await new Promise((r) => setTimeout(r, options.downMs))
    await this.start()
  }

  async close(): Promise<void> {
    await this.stop()
    this.#closed = true
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close()
  }

  async #receive(sock: zmq.Router): Promise<void> {
    try {
      for await (const msg of sock) {
        if (this.#gate !== undefined) await this.#gate
        if (sock.closed) return
        this.frames++
        const peer = msg[0]
        const frame = msg[1]
        if (msg.length !== 2 || peer === undefined || frame === undefined) {
          this.rejects.push({ code: 'PEONY_BROKER_MULTIPART', message: `${msg.length - 1} payload frames`, index: -1 })
          continue
        }
        const { messages, rejects } = decodeEgress(frame, { maxFrameBytes: this.#maxFrameBytes })
        for (const r of rejects) this.rejects.push(r)
        for (const m of messages) this.#accept(m, peer)
      }
    } catch (err) {
      if (!sock.closed) throw err
    }
  }

  #accept(m: ForwardedMessage, peer: Buffer): void {
    this.received++
    if (!this.#ack || m.sender === undefined || m.seq === undefined) {
      this.messages.push(m)
      return
    }
    const seq = BigInt(m.seq)
    let s = this.#senders.get(m.sender)
    if (s === undefined) {
      s = { high: 0n, missing: new Set(), peer, dirty: true }
      this.#senders.set(m.sender, s)
    }
    s.peer = peer
    s.dirty = true
    if (seq > s.high) {
      for (let k = s.high + 1n; k < seq && s.missing.size < MAX_MISSING; k++) s.missing.add(k)
      s.high = seq
      this.messages.push(m)
    } else if (s.missing.delete(seq)) {
      this.lateFills++
      this.messages.push(m)
    } else {
      this.duplicates++
    }
  }

  async #sendAcks(): Promise<void> {
    const sock = this.#sock
    if (this.#acking || sock === undefined) return
    this.#acking = true
    try {
      for (const s of this.#senders.values()) {
        if (!s.dirty || s.peer === undefined) continue
        try {
          await sock.send([s.peer, encodeAck(s.high)])
          s.dirty = false
          this.acksSent++
        } catch {
          // Peer gone (EHOSTUNREACH) or its pipe full (EAGAIN): try again on the next tick.
          if (sock.closed) return
        }
      }
    } finally {
      this.#acking = false
    }
  }
}

/**
 * The egress sender (protocol §2): how a Peony worker reaches the forwarder. One ZeroMQ DEALER,
 * connected with `immediate: true` (nothing is queued into a pipe that has no peer) and
 * `sendTimeout: 0` (a send either enters the live pipe at once or fails with EAGAIN; no send
 * ever stays pending across a reconnect, which is what makes ordered re-sending possible).
 *
 * - `send(msg)` never blocks and never throws for a full buffer. Messages sent during one
 *   event-loop turn are coalesced into batch frames under `maxFrameBytes`.
 * - The link is tracked with the socket's monitor events: it is up after a `handshake` (the
 *   ZMTP handshake completed, so the pipe exists) and down after a `disconnect`. zeromq 6 emits
 *   `connect` then `handshake` on every (re)connection and `disconnect` when the peer goes away.
 *   While the link is down, messages wait in our buffer; an EAGAIN while it is up (high-water
 *   mark reached) is retried on a short back-off timer.
 * - Without `ack`, egress is at most once: what ZeroMQ held when the forwarder died is gone.
 *   The buffer holds at most `bufferMax` messages; beyond it the newest is dropped (`overflow`).
 * - With `ack`, each message carries `sender` and `seq` (1, 2, 3, … per sender; a seq is given
 *   only to a message that entered the buffer, so dropping one never leaves a gap). Sent messages
 *   are kept until the forwarder acknowledges them (`{ack: seq}`, cumulative); on a disconnect
 *   every unacknowledged message is queued again, ahead of newer ones, and re-sent in order after
 *   the next handshake. The buffer (unacknowledged + unsent) holds at most `bufferMax` messages:
 *   when full, the oldest *already sent* unacknowledged message is forgotten (`evicted`: it loses
 *   its re-send guarantee; this keeps a forwarder that never acknowledges working), and only when
 *   nothing sent is left to forget is the newest dropped (`overflow`).
 * - The `sender` id must be unique per process incarnation (the forwarder drops seqs it has seen
 *   from that sender). The default is `<hostname>/<pid>/<random>`.
 *
 * Lifecycle: connects when created (status `open`); `close({ lingerMs })` stops accepting
 * messages (`send` then throws `PEONY_BROKER_NOT_OPEN`), tries for up to `lingerMs` to hand over
 * what is buffered (with `ack`, also to get it acknowledged, unless this forwarder never sent an
 * ack), then closes the socket with the remaining time as ZeroMQ linger, and resolves even when
 * no forwarder exists.
 */
import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import * as zmq from 'zeromq'
import { BrokerErrorCode, decodeAck, decodeEgress, Defaults, type EgressMessage, encodeEgress, PeonyError, toPeonyError } from '@peony/protocol'
import { Deque } from './internal/deque.ts'
import { assertEndpoint, errCode } from './internal/endpoints.ts'
import { createReporter } from './internal/report.ts'
import { lingerOf, positiveInt } from './internal/options.ts'

/** Why a message was given up: dropped unsent (`overflow`) or forgotten after sending, unacknowledged (`evicted`). */
export type EgressDropReason = 'overflow' | 'evicted'

/** Options of {@link createEgressSender}. */
export interface EgressSenderOptions {
  /** The forwarder's egress endpoint. Default `Defaults.EGRESS_ENDPOINT`. */
  endpoint?: string
  /** With `ack`, this sender's id (unique per process incarnation). Default `<hostname>/<pid>/<random>`. */
  sender?: string
  /** Add `sender`/`seq`, keep messages until acknowledged and re-send them after a reconnect. */
  ack: boolean
  /** Messages kept in memory (see the module comment). */
  bufferMax: number
  /** Largest frame sent (batches are split under it; a larger single message is refused). Default 1 MiB. */
  maxFrameBytes?: number
  /** ZeroMQ send high-water mark, in frames. Default 1000. */
  sendHighWaterMark?: number
  /** Called for every message given up (it is counted either way). Must not throw (a throw is reported and ignored). */
  onOverflow?: (msg: EgressMessage, reason: EgressDropReason) => void
  /** Unexpected socket errors and throwing `onOverflow` callbacks. Default: the first is reported with `process.emitWarning`. */
  onError?: (err: PeonyError) => void
}

/** Counters of an egress sender. */
export interface EgressSenderStats {
  /** Messages handed to ZeroMQ for the first time. */
  sent: number
  /** Frames handed to ZeroMQ (first sends and re-sends). */
  frames: number
  /** Messages waiting to be handed to ZeroMQ (never sent, or queued again for re-sending). */
  buffered: number
  /** With `ack`: sent and not yet acknowledged. */
  inFlightUnacked: number
  /** Messages dropped unsent because the buffer was full. */
  overflow: number
  /** With `ack`: sent messages forgotten before their acknowledgement to make room. */
  evicted: number
  /** With `ack`: messages acknowledged. */
  acked: number
  /** With `ack`: messages handed to ZeroMQ again after a reconnect. */
  resent: number
  /** Handshakes that followed a disconnect. */
  reconnects: number
  /** Frames received that are not a valid `{ack}` (ignored). */
  badAcks: number
  /** Messages still buffered (never handed over) when the sender closed. */
  discarded: number
}

/** Options of {@link EgressSender.close}. */
export interface EgressSenderCloseOptions {
  /** How long to try to hand over (and get acknowledged) what is buffered; also the ZeroMQ linger. Default 0. */
  lingerMs?: number
}

/** A worker's egress connection to the forwarder. */
export interface EgressSender {
  /** `open` until `close()` is called, then `closing`, then `closed`. */
  readonly status: 'open' | 'closing' | 'closed'
  /** The sender id (meaningful with `ack`). */
  readonly sender: string
  /** True while the link to the forwarder is up (a handshake completed and no disconnect since). */
  readonly connected: boolean
  /**
   * Queues a message. Never blocks; returns false when it was dropped because the buffer is full.
   * Throws `PEONY_BROKER_NOT_OPEN` once closing, `PEONY_BROKER_ENCODE_FAILED` for a message that
   * cannot be encoded and `PEONY_BROKER_FRAME_TOO_LARGE` for one larger than `maxFrameBytes`.
   */
  send(msg: EgressMessage): boolean
  /**
   * Queues a message already encoded as its §2.1 map (what `encodeEgress(msg)` or `writeEgress`
   * gives, with no `sender`/`seq`): the bytes are sent as they are, nothing is encoded again.
   * Without `ack` only (an acknowledged message carries `sender` and `seq` in its map): with
   * `ack` it throws a TypeError. Otherwise as `send`.
   */
  sendEncoded(map: Uint8Array): boolean
  /** Closes the socket; see the module comment. */
  close(options?: EgressSenderCloseOptions): Promise<void>
  /** A snapshot of the counters. */
  stats(): EgressSenderStats
  /** Same as `close()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>
}

/** Creates an egress sender and connects it. Bad options throw a TypeError/RangeError. */
export function createEgressSender(options: EgressSenderOptions): EgressSender {
  return new EgressSenderImpl(options)
}

interface Entry {
  /** The message, or undefined when it came encoded (sendEncoded: decoded only for onOverflow). */
  msg: EgressMessage | undefined
  bytes: Uint8Array
  /** Contiguous per sender, from 1 (also kept without ack, for bookkeeping). */
  seq: number
  sent: boolean
}

/** Frames sent per event-loop turn before yielding, so a big backlog cannot starve the loop. */
const FRAMES_PER_TURN = 64
const RETRY_MIN_MS = 1
const RETRY_MAX_MS = 50

class EgressSenderImpl implements EgressSender {
  readonly sender: string
  readonly #ack: boolean
  readonly #bufferMax: number
  readonly #maxFrameBytes: number
  readonly #onOverflow: EgressSenderOptions['onOverflow']
  readonly #report: (err: PeonyError) => void
  readonly #sock: zmq.Dealer
  readonly #outbox = new Deque<Entry>(64)
  readonly #receiving: Promise<void>
  #status: 'open' | 'closing' | 'closed' = 'open'
  #closing: Promise<void> | undefined
  /** The seq the next accepted message gets. */
  #seqCounter = 1
  /** Seq of the next entry to hand to ZeroMQ; entries below it are sent and unacknowledged. */
  #nextSeq = 1
  #maxSentSeq = 0
  #linkUp: boolean
  #everDown = false
  /** Incremented on every disconnect. */
  #epoch = 0
  #ackSeen = false
  #pumping = false
  #scheduled = false
  #retryTimer: NodeJS.Timeout | undefined
  #retryMs = RETRY_MIN_MS
  readonly #stats: EgressSenderStats = {
    sent: 0,
    frames: 0,
    buffered: 0,
    inFlightUnacked: 0,
    overflow: 0,
    evicted: 0,
    acked: 0,
    resent: 0,
    reconnects: 0,
    badAcks: 0,
    discarded: 0,
  }

  constructor(options: EgressSenderOptions) {
    if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object')
    const endpoint = options.endpoint ?? Defaults.EGRESS_ENDPOINT
    assertEndpoint(endpoint, 'endpoint')
    if (typeof options.ack !== 'boolean') throw new TypeError('ack must be a boolean')
    if (options.sender !== undefined && (typeof options.sender !== 'string' || options.sender === '')) {
      throw new TypeError('sender must be a non-empty string')
    }
    if (options.onOverflow !== undefined && typeof options.onOverflow !== 'function') throw new TypeError('onOverflow must be a function')
    if (options.onError !== undefined && typeof options.onError !== 'function') throw new TypeError('onError must be a function')
    this.#ack = options.ack
    this.#bufferMax = positiveInt(options.bufferMax, 'bufferMax')
    this.#maxFrameBytes = positiveInt(options.maxFrameBytes, 'maxFrameBytes', Defaults.MAX_FRAME_BYTES)
    const sndhwm = positiveInt(options.sendHighWaterMark, 'sendHighWaterMark', 1000)
    this.sender = options.sender ?? `${hostname()}/${process.pid}/${randomBytes(4).toString('hex')}`
    this.#onOverflow = options.onOverflow
    this.#report = createReporter(options.onError)

    const sock = new zmq.Dealer({ immediate: true, sendTimeout: 0, linger: 0, sendHighWaterMark: sndhwm })
    this.#sock = sock
    // inproc has no monitor events; its pipe exists as soon as both ends do, so treat it as up.
    this.#linkUp = endpoint.startsWith('inproc://')
    sock.events.on('handshake', this.#onHandshake)
    sock.events.on('disconnect', this.#onDisconnect)
    try {
      sock.connect(endpoint)
    } catch (err) {
      sock.close()
      throw new PeonyError(BrokerErrorCode.ENDPOINT_FAILED, `cannot connect ${endpoint}: ${String(err)}`, { cause: err })
    }
    this.#receiving = this.#receive()
  }

  get status(): 'open' | 'closing' | 'closed' {
    return this.#status
  }

  get connected(): boolean {
    return this.#linkUp
  }

  stats(): EgressSenderStats {
    const front = this.#frontSeq()
    const unacked = this.#nextSeq - front
    return { ...this.#stats, inFlightUnacked: unacked, buffered: this.#outbox.length - unacked }
  }

  send(msg: EgressMessage): boolean {
    if (this.#status !== 'open') throw new PeonyError(BrokerErrorCode.NOT_OPEN, 'the egress sender is closed')
    let bytes: Uint8Array
    try {
      bytes = this.#ack ? encodeEgress({ ...msg, sender: this.sender, seq: BigInt(this.#seqCounter) }) : encodeEgress(msg)
    } catch (err) {
      throw toPeonyError(err, BrokerErrorCode.ENCODE_FAILED, `cannot encode an egress message: ${String(err)}`)
    }
    return this.#enqueue(msg, bytes)
  }

  sendEncoded(map: Uint8Array): boolean {
    if (this.#status !== 'open') throw new PeonyError(BrokerErrorCode.NOT_OPEN, 'the egress sender is closed')
    if (this.#ack) throw new TypeError('sendEncoded needs a sender without ack (an acknowledged message carries sender and seq in its map)')
    return this.#enqueue(undefined, map)
  }

  #enqueue(msg: EgressMessage | undefined, bytes: Uint8Array): boolean {
    const seq = this.#seqCounter
    if (bytes.length > this.#maxFrameBytes) {
      throw new PeonyError(BrokerErrorCode.FRAME_TOO_LARGE, `an egress message of ${bytes.length} bytes exceeds maxFrameBytes ${this.#maxFrameBytes}`)
    }
    if (this.#outbox.length >= this.#bufferMax) {
      const front = this.#outbox.peek()
      if (this.#ack && front !== undefined && front.seq < this.#nextSeq) {
        this.#outbox.shift()
        this.#stats.evicted++
        this.#dropped(front, 'evicted')
      } else {
        this.#stats.overflow++
        this.#dropped({ msg, bytes }, 'overflow')
        return false
      }
    }
    this.#seqCounter = seq + 1
    this.#outbox.push({ msg, bytes, seq, sent: false })
    if (!this.#scheduled && !this.#pumping) {
      this.#scheduled = true
      setImmediate(this.#turn)
    }
    return true
  }

  close(options: EgressSenderCloseOptions = {}): Promise<void> {
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
    while (Date.now() < deadline && !this.#drained()) {
      await new Promise((r) => setTimeout(r, 5))
    }
    const remaining = Math.max(0, Math.ceil(deadline - Date.now()))
    clearTimeout(this.#retryTimer)
    this.#retryTimer = undefined
    this.#stats.discarded += this.#outbox.length - (this.#nextSeq - this.#frontSeq())
    this.#sock.linger = remaining
    this.#sock.close()
    await this.#receiving
    this.#status = 'closed'
  }

  /** Everything handed over; with ack, also acknowledged (unless this forwarder never acknowledged anything). */
  #drained(): boolean {
    if (this.#ack && this.#ackSeen) return this.#outbox.length === 0
    return this.#nextSeq >= this.#seqCounter
  }

  #frontSeq(): number {
    return this.#outbox.peek()?.seq ?? this.#seqCounter
  }

  #dropped(e: Pick<Entry, 'msg' | 'bytes'>, reason: EgressDropReason): void {
    if (this.#onOverflow === undefined) return
    try {
      this.#onOverflow(e.msg ?? (decodeEgress(e.bytes).messages[0] as EgressMessage), reason)
    } catch (err) {
      this.#report(toPeonyError(err, BrokerErrorCode.CALLBACK_FAILED, `onOverflow threw: ${String(err)}`))
    }
  }

  readonly #onHandshake = (): void => {
    this.#linkUp = true
    if (this.#everDown) {
      this.#everDown = false
      this.#stats.reconnects++
    }
    this.#retryMs = RETRY_MIN_MS
    void this.#pump()
  }

  readonly #onDisconnect = (): void => {
    this.#linkUp = false
    this.#everDown = true
    this.#epoch++
    clearTimeout(this.#retryTimer)
    this.#retryTimer = undefined
    // What the dead pipe held is gone; with ack, queue every unacknowledged message again, in order.
    if (this.#ack) this.#nextSeq = this.#frontSeq()
  }

  readonly #turn = (): void => {
    this.#scheduled = false
    void this.#pump()
  }

  #scheduleRetry(): void {
    if (this.#retryTimer !== undefined || this.#sock.closed) return
    const ms = this.#retryMs
    this.#retryMs = Math.min(RETRY_MAX_MS, this.#retryMs * 2)
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined
      void this.#pump()
    }, ms)
  }

  async #pump(): Promise<void> {
    if (this.#pumping) return
    this.#pumping = true
    try {
      let frames = 0
      // Not gated on #linkUp: zeromq's monitor events can be missed under load, and a sender
      // waiting for a 'handshake' that never comes would stall for good. With immediate: true
      // and sendTimeout: 0 a send only succeeds over a completed connection and fails with
      // EAGAIN otherwise, so trying is safe; the retry back-off (1–50 ms) paces the attempts.
      while (!this.#sock.closed) {
        const front = this.#frontSeq()
        const start = this.#nextSeq - front
        if (start >= this.#outbox.length) break
        const { frame, firstSeq, lastSeq } = this.#buildFrame(start)
        const epoch = this.#epoch
        try {
          await this.#sock.send(frame)
        } catch (err) {
          if (this.#sock.closed) return
          if (errCode(err) !== 'EAGAIN') {
            this.#report(toPeonyError(err, BrokerErrorCode.SOCKET_FAILED, `egress send failed: ${String(err)}`))
          }
          this.#scheduleRetry()
          return
        }
        this.#retryMs = RETRY_MIN_MS
        // A frame went out: the link is up, whether or not its 'handshake' event was seen.
        if (!this.#linkUp) this.#linkUp = true
        this.#stats.frames++
        this.#afterSend(firstSeq, lastSeq, epoch !== this.#epoch)
        if (++frames >= FRAMES_PER_TURN) {
          frames = 0
          await new Promise((r) => setImmediate(r))
        }
      }
    } finally {
      this.#pumping = false
    }
  }

  /** Builds one frame from the entry at `start` on: a lone message as its map, several as an array, under maxFrameBytes. */
  #buildFrame(start: number): { frame: Uint8Array; firstSeq: number; lastSeq: number } {
    const first = this.#outbox.at(start) as Entry
    // Room for the largest array header (5 bytes).
    const budget = this.#maxFrameBytes - 5
    let size = first.bytes.length
    let end = start + 1
    for (; end < this.#outbox.length; end++) {
      const e = this.#outbox.at(end) as Entry
      if (size + e.bytes.length > budget) break
      size += e.bytes.length
    }
    const count = end - start
    const lastSeq = first.seq + count - 1
    if (count === 1) return { frame: first.bytes, firstSeq: first.seq, lastSeq }
    const header = count < 16 ? 1 : count < 0x10000 ? 3 : 5
    const frame = Buffer.allocUnsafe(header + size)
    if (header === 1) frame[0] = 0x90 | count
    else if (header === 3) {
      frame[0] = 0xdc
      frame.writeUInt16BE(count, 1)
    } else {
      frame[0] = 0xdd
      frame.writeUInt32BE(count, 1)
    }
    let off = header
    for (let i = start; i < end; i++) {
      const b = (this.#outbox.at(i) as Entry).bytes
      frame.set(b, off)
      off += b.length
    }
    return { frame, firstSeq: first.seq, lastSeq }
  }

  /** Bookkeeping once a frame holding seqs firstSeq…lastSeq entered ZeroMQ. */
  #afterSend(firstSeq: number, lastSeq: number, linkChanged: boolean): void {
    const front = this.#frontSeq()
    for (let seq = Math.max(firstSeq, front); seq <= lastSeq; seq++) {
      const e = this.#outbox.at(seq - front)
      if (e === undefined) break
      if (e.sent) this.#stats.resent++
      else {
        e.sent = true
        this.#stats.sent++
      }
    }
    if (lastSeq > this.#maxSentSeq) this.#maxSentSeq = lastSeq
    if (!this.#ack) {
      // At most once: handed over is done with.
      while ((this.#outbox.peek()?.seq ?? Infinity) <= lastSeq) this.#outbox.shift()
      this.#nextSeq = this.#frontSeq()
      return
    }
    // If the link dropped meanwhile, the rewind stands: the frame is re-sent after the next handshake.
    if (!linkChanged && this.#nextSeq <= lastSeq) this.#nextSeq = lastSeq + 1
  }

  async #receive(): Promise<void> {
    const sock = this.#sock
    while (!sock.closed) {
      try {
        for await (const msg of sock) {
          const frame = msg[0]
          if (msg.length !== 1 || frame === undefined) {
            this.#stats.badAcks++
            continue
          }
          const ack = decodeAck(frame)
          if (ack === undefined) {
            this.#stats.badAcks++
            continue
          }
          this.#onAck(ack)
        }
        return
      } catch (err) {
        if (sock.closed) return
        this.#report(toPeonyError(err, BrokerErrorCode.SOCKET_FAILED, `egress receive failed: ${String(err)}`))
        await new Promise((r) => setTimeout(r, 10))
      }
    }
  }

  #onAck(ack: bigint): void {
    this.#ackSeen = true
    if (!this.#ack) return
    // Never trust an ack beyond what was sent (a forwarder confusing senders, say).
    const upTo = ack > BigInt(this.#maxSentSeq) ? this.#maxSentSeq : Number(ack)
    let front = this.#outbox.peek()
    while (front !== undefined && front.seq <= upTo) {
      this.#outbox.shift()
      this.#stats.acked++
      front = this.#outbox.peek()
    }
    const f = this.#frontSeq()
    if (this.#nextSeq < f) this.#nextSeq = f
  }
}

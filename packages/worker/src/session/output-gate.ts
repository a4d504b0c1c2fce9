/**
 * The output gate (docs/sessions.md, "Output gate"): nothing a gated request produced leaves the
 * worker until the session change it made is in storage, as Cloudflare's Durable Objects do.
 *
 * Each session with held output has a queue, in the order things happened:
 *   - a barrier, pushed when a gated request starts; when the request settles it gets the session
 *     version that must be stored (`need`), until then Infinity;
 *   - outputs (replies, pushes, messages to other players) of requests on that session;
 *   - "done" notices: the host is told a task settled only when everything before it left, so a
 *     worker that dies while holding a reply leaves that task started, and the master answers it
 *     -10001 (its change may or may not be stored: the outcome is unknown).
 * Every later output of the session waits behind a held one, gated or not, so order per player
 * holds. A write that stores version ≥ a barrier's `need` releases up to the next unmet barrier.
 * A write that fails, or that storage refuses (a newer owner), fails the gate: every held reply
 * is answered -10008 (not stored, nothing applied), other held outputs are dropped, and the
 * session is dropped, so the player's next task reloads what storage has and a client that
 * retries never applies twice.
 */
import { type BodyCodec, type EgressMessage, type Int64, ReplyCode } from '@peony/protocol'
import type { PeonyRequest } from '../request.ts'
import { GONE, type Session } from './session.ts'

/** A barrier: outputs after it wait until the session's stored version reaches `need`. */
export interface Barrier {
  k: 0
  need: number
}
interface Out {
  k: 1
  msg: EgressMessage
  taskId: number | undefined
  reply: boolean
  req: PeonyRequest | undefined
}
interface Done {
  k: 2
  fn: () => void
}
export type Held = Barrier | Out | Done

/** What the gate needs from its session manager. */
export interface GateHost {
  /** Sends one output now (the worker's egress, attributed to its task). */
  emit(msg: EgressMessage, taskId: number | undefined, reply: boolean): void
  readonly codec: BodyCodec
  /** Asks for a write of `s` (it is dirty, with an unmet barrier). */
  requestWrite(s: Session): void
  /** Forces the session dirty and returns its new version (the change a gated request made). */
  bump(s: Session): number
}

/** Counters of the gate (part of SessionStats.gate). */
export interface GateStats {
  /** Gated requests started. */
  gated: number
  /** Outputs that waited in a gate and then left. */
  released: number
  /** Replies answered -10008 because the write failed and storage says it changed nothing. */
  notStored: number
  /** Replies answered -10001 because the write's outcome is unknown (a timeout: it may still be applied). */
  unknown: number
  /** Held outputs dropped with a failed write (pushes, messages to other players). */
  dropped: number
  /** Gate failures (each drops one session). */
  failures: number
  /** Outputs waiting now. */
  waiting: number
}

export class OutputGate {
  readonly #host: GateHost
  readonly c = { gated: 0, released: 0, notStored: 0, unknown: 0, dropped: 0, failures: 0 }
  #waiting = 0

  constructor(host: GateHost) {
    this.#host = host
  }

  stats(): GateStats {
    return { ...this.c, waiting: this.#waiting }
  }

  /** A gated request starts on `s`: its barrier. */
  begin(s: Session): Barrier {
    this.c.gated++
    const b: Barrier = { k: 0, need: Infinity }
    ;(s._held ??= []).push(b)
    return b
  }

  /** An output of a request held on `s`: queued behind what waits, or sent when nothing does. */
  out(s: Session, msg: EgressMessage, taskId: number | undefined, reply: boolean, req: PeonyRequest | undefined): void {
    if (s._gateCode !== 0) {
      this.#refuse(taskId, reply, req)
      return
    }
    const q = s._held
    if (q === undefined) {
      this.#host.emit(msg, taskId, reply)
      return
    }
    q.push({ k: 1, msg, taskId, reply, req })
    this.#waiting++
  }

  /**
   * A request held on `s` settled: its barrier (if gated) now needs the change it made stored;
   * `fn` (telling the host the task is done) runs when everything before it has left.
   */
  settle(s: Session, barrier: Barrier | undefined, fn: () => void): void {
    // A session dropped while it held output (only a failed or refused write does that) can
    // store nothing more: its held replies are answered -10008 rather than waiting forever.
    if ((s._flags & GONE) !== 0 && s._held !== undefined) this.fail(s)
    if (s._gateCode !== 0) {
      if (barrier !== undefined) barrier.need = 0
      fn()
      return
    }
    if (barrier !== undefined) barrier.need = this.#host.bump(s)
    const q = s._held
    if (q === undefined) {
      fn()
      return
    }
    q.push({ k: 2, fn })
    this.release(s)
  }

  /** A write of `s` at `version` succeeded. */
  stored(s: Session, version: number): void {
    if (version > s._storedVersion) s._storedVersion = version
    if (s._held !== undefined) this.release(s)
  }

  /** Sends what may leave; asks for a write when an unmet barrier holds the rest. */
  release(s: Session): void {
    const q = s._held
    if (q === undefined) return
    let i = 0
    for (; i < q.length; i++) {
      const e = q[i] as Held
      if (e.k === 0) {
        if (e.need > s._storedVersion) break
      } else if (e.k === 1) {
        this.#waiting--
        this.c.released++
        this.#host.emit(e.msg, e.taskId, e.reply)
      } else {
        e.fn()
      }
    }
    if (i === q.length) {
      s._held = undefined
      return
    }
    if (i > 0) q.splice(0, i)
    if ((q[0] as Barrier).need !== Infinity) this.#host.requestWrite(s)
  }

  /**
   * The write of `s` failed (or was refused): every held reply is answered -10008 when the write
   * is known to have changed nothing (`known`), else -10001 (outcome unknown: a timed-out write
   * may still land, and the session reloads whatever storage has); the rest is dropped.
   */
  fail(s: Session, known = true): void {
    if (s._gateCode !== 0) return
    s._gateCode = known ? ReplyCode.NOT_STORED : ReplyCode.HANDLER_FAILED
    this.c.failures++
    const q = s._held
    s._held = undefined
    if (q === undefined) return
    for (const e of q) {
      if (e.k === 1) {
        this.#waiting--
        this.#refuse(e.taskId, e.reply, e.req)
      } else if (e.k === 2) e.fn()
    }
  }

  /** True when `s` holds output behind a barrier that needs a write. */
  pending(s: Session): boolean {
    return s._held !== undefined && s._gateCode === 0
  }

  #refuse(taskId: number | undefined, reply: boolean, req: PeonyRequest | undefined): void {
    if (!reply || req === undefined) {
      this.c.dropped++
      return
    }
    const ret = (req._hold?._gateCode ?? ReplyCode.NOT_STORED) as number
    if (ret === ReplyCode.NOT_STORED) this.c.notStored++
    else this.c.unknown++
    const t = req.task
    let body: Uint8Array
    try {
      body = this.#host.codec.encodeReply({ cmd: req.cmd, sn: req.sn, ret })
    } catch {
      body = this.#host.codec.encodeReply({ ret })
    }
    this.#host.emit({ cmd: 220, nodeId: t.nodeId as number, connId: t.connId as Int64, tag: t.tag, ret, body }, taskId, true)
  }
}

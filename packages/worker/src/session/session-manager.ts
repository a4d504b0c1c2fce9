/**
 * The session manager of one worker (`worker.sessions`): loads a player's session once, keeps it
 * resident, writes dirty sessions back in batches (write-behind, fenced), evicts idle, closed
 * and over-budget sessions, and fires session timers on the player's lane. docs/sessions.md has
 * the whole story; the rules in short:
 *
 * - Load: `storage.claim(key, [key])` takes a new fencing generation and reads the record. A
 *   load that fails or passes `loadTimeoutMs` leaves nothing behind (the runtime answers the
 *   waiting tasks -10005).
 * - Write-behind: every `flushIntervalMs` a tick writes every session whose oldest unflushed
 *   change would otherwise pass `maxUnflushedAgeMs` before the next tick, in `writeFenced`
 *   calls of `flushBatchSize` sessions. A failed write puts its sessions in the retry set, kept
 *   dirty, retried with exponential back-off (`retryBaseMs` … `retryMaxMs`). A write refused by
 *   fencing means a newer owner loaded the session: this copy is dropped (PEONY_SESSION_FENCED).
 * - Eviction (checked on each tick; never while the player's lane has work): idle for
 *   `idleTimeoutMs`; client closed `closeGraceMs` ago; over `memoryBudgetBytes` (estimated) or
 *   `maxSessions`, least recently used first. A dirty session is flushed first, then dropped; a
 *   task arriving meanwhile cancels the eviction, and so does a lane busy (a session timer)
 *   when the write lands; a change made meanwhile is written by the next tick before the drop.
 *   The limits count resident sessions less only the evictions whose write is in flight or
 *   starting: one that cannot go on counts as resident, and the next LRU session goes instead.
 * - `close()` (graceful stop) cancels the session timers and flushes until nothing is dirty,
 *   retrying storage errors, however long it takes (the host bounds it).
 */
import { type EgressMessage, MsgpackWriter, packValue, PeonyError, type Uid, unpackValue } from '@peony/protocol'
import { isNotApplied, type AbstractStorage, type FencedWrite } from '@peony/storage'
import { WorkerError, WorkerErrorCode } from '../errors.ts'
import { isThenable } from '../hooks.ts'
import type { WorkerContext } from '../worker-context.ts'
import { LatencyHistogram } from './latency-histogram.ts'
import {
  EVICT_CLOSED,
  EVICT_IDLE,
  EVICT_MANUAL,
  EVICT_MEMORY,
  EVICT_REASONS,
  DIRTY,
  EVICTING,
  FLUSHING,
  GONE,
  Session,
  type SessionDef,
  type SessionOwner,
  type TimerFiring,
} from './session.ts'
import { SessionTimers, type DurableTimer, type SessionTimerHost } from './session-timers.ts'
import { OutputGate, type Barrier } from './output-gate.ts'
import { EMIT } from '../egress.ts'
import type { PeonyRequest } from '../request.ts'
import { resolveOptions, type Resolved, type SessionBridge, type SessionOptions, type SessionStats } from './session-options.ts'
import { hashBytes, hashRange, laneKeyOf, NEVER_STORED, readRecord, writeRecord } from './session-record.ts'

export type { SessionBridge, SessionOptions, SessionStats } from './session-options.ts'

/** Time a graceful stop spends at most on the unmarked-change check of clean sessions (an encode each). */
const STOP_CHECK_BUDGET_MS = 1000
/** Time one tick spends at most on the unmarked-change checks of clean sessions it evicts (the rest wait for the next tick). */
const EVICT_CHECK_BUDGET_MS = 20

/** writeFenced calls a flush keeps in flight at once (encoding overlaps writing). */
const FLUSH_IN_FLIGHT = 2

function unref(handle: unknown): void {
  if (typeof handle === 'object' && handle !== null) (handle as { unref?: () => void }).unref?.()
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

/** A session load that failed: what the runtime answers -10005 with. */
export class SessionLoadError extends WorkerError<typeof WorkerErrorCode.SESSION_LOAD_FAILED | typeof WorkerErrorCode.SESSION_LOAD_TIMEOUT> {}

/** The sessions of one worker. */
export class SessionManager implements SessionOwner, SessionTimerHost {
  readonly #def: SessionDef<unknown> | undefined
  readonly #bridge: SessionBridge | undefined
  readonly #storage: AbstractStorage | undefined
  readonly #o: Resolved
  readonly #encode: (state: unknown) => Uint8Array
  readonly #decode: (bytes: Uint8Array, uid: Uid) => unknown
  readonly #auto: boolean

  /** Resident sessions by lane key, in (approximately) least recently used order. */
  readonly #sessions = new Map<string | number, Session>()
  /** Dirty sessions not in the retry set, in order of their first unflushed change. */
  readonly #dirty = new Set<Session>()
  /** Dirty sessions whose last write failed. */
  readonly #retry = new Set<Session>()
  /** Sessions whose client closed. */
  readonly #closed = new Set<Session>()
  #bytes = 0
  #loading = 0
  #failures = 0
  #retryAt = 0
  #flushing: Promise<void> | undefined = undefined
  #tickHandle: unknown = undefined
  #closedDown = false
  #lastFlushReport = -Infinity
  readonly #hist = new LatencyHistogram()
  /**
   * Writers free to build a flush batch's records in. A batch's values are views of its writer's
   * buffer, so the writer comes back here only once storage has answered the write (a driver
   * keeps no reference to a value past its call); a failed write's writer is dropped.
   */
  readonly #writers: MsgpackWriter[] = []
  /** Encodes a record only to hash it (the unmarked-change check at eviction and stop). */
  readonly #probe = new MsgpackWriter(4096)
  /** performance.now() until which this tick's eviction may run unmarked-change checks; 0: spent. */
  #checkUntil = Infinity
  readonly #c = {
    loads: 0,
    loadFailures: 0,
    loadTimeouts: 0,
    flushes: 0,
    flushedSessions: 0,
    flushErrors: 0,
    encodeErrors: 0,
    unmarkedChanges: 0,
    fenced: 0,
    timersFired: 0,
    timerFailures: 0,
  }
  readonly #ev = { idle: 0, closed: 0, memory: 0, manual: 0, fenced: 0 }
  readonly #gate: OutputGate
  /** Sessions whose gated change waits for the next group commit. */
  readonly #gateQueue = new Set<Session>()
  /** The next group commit: a real timer (I/O batching, not game time: a test's manual clock does not hold it back). */
  #gateHandle: ReturnType<typeof setTimeout> | true | undefined = undefined
  /** Group commits in flight. */
  readonly #gateWrites = new Set<Promise<void>>()
  /** The session definition's gate: whether routes that do not say are gated. */
  readonly gateDefault: boolean

  /** @internal Created by the runtime. Without a definition the manager is disabled. */
  constructor(def: SessionDef<unknown> | undefined, options: SessionOptions | undefined, bridge: SessionBridge | undefined) {
    this.#def = def
    this.#bridge = bridge
    if (def !== undefined && (options?.storage === undefined || bridge === undefined)) {
      throw new PeonyError(
        WorkerErrorCode.SESSION_NOT_CONFIGURED,
        'the app defines sessions (app.session) but the runtime was given no storage (options.sessions.storage)',
      )
    }
    this.#storage = options?.storage
    this.#o = resolveOptions(options ?? ({} as SessionOptions))
    this.#encode = def?.encode ?? packValue
    this.#decode = def?.decode ?? unpackValue
    this.#auto = def?.dirty !== 'manual'
    this.gateDefault = def?.gate === 'stored'
    this.#gate = new OutputGate({
      emit: (msg, taskId, reply) => this.worker.egress[EMIT](msg, taskId, reply),
      get codec() {
        return bridge!.worker.app.bodyCodec
      },
      requestWrite: (s) => this.#requestGateWrite(s),
      bump: (s) => {
        this.markDirty(s)
        return s._version
      },
    })
  }

  /** True when the app defines sessions. */
  get enabled(): boolean {
    return this.#def !== undefined
  }

  /** The worker (SessionOwner). */
  get worker(): WorkerContext {
    return (this.#bridge as SessionBridge).worker
  }

  /** Resident sessions. */
  get size(): number {
    return this.#sessions.size
  }

  /**
   * The resident session of `uid`, if any (never loads). With `dirty: 'auto'` handing it out
   * marks it dirty (the caller may change it; docs/sessions.md, "Dirty marking"): use `has(uid)`
   * to ask whether a player is resident without that.
   */
  get(uid: Uid): Session | undefined {
    const s = this.#sessions.get(laneKeyOf(uid))
    if (s !== undefined && this.#auto) this.markDirty(s)
    return s
  }

  /** True when `uid` has a resident session (never loads, never marks dirty). */
  has(uid: Uid): boolean {
    return this.#sessions.has(laneKeyOf(uid))
  }

  /** @internal The resident session of a lane, untouched and unmarked. */
  residentAt(lane: string | number): Session | undefined {
    return this.#sessions.get(lane)
  }

  /** The storage key of a uid's session: `<namespace>:<uid>` (`<namespace>:<group>:<uid>` with scope 'group'); string uids as `s:<uid>`. */
  keyOf(uid: Uid): string {
    const d = this.#def
    const ns = d?.namespace ?? 'player'
    const u = typeof uid === 'string' ? 's:' + uid : String(uid)
    return d?.scope === 'group' ? `${ns}:${String(this.worker.groupId)}:${u}` : `${ns}:${u}`
  }

  stats(): SessionStats {
    const now = this.#bridge?.clock.now() ?? 0
    let oldest = Infinity
    const first = this.#dirty.values().next()
    if (!first.done) oldest = first.value._dirtySince
    for (const s of this.#retry) if (s._dirtySince < oldest) oldest = s._dirtySince
    return {
      resident: this.#sessions.size,
      loading: this.#loading,
      dirty: this.#dirty.size + this.#retry.size,
      retrying: this.#retry.size,
      bytes: this.#bytes,
      flushLagMs: oldest === Infinity ? 0 : Math.max(0, now - oldest),
      ...this.#c,
      loadLatency: this.#hist.summary(),
      evictions: { ...this.#ev },
      gate: this.#gate.stats(),
    }
  }

  // ─────────────────────────── runtime side ───────────────────────────

  /** @internal Opens the storage (idempotent; the host may have opened it already). */
  async open(): Promise<void> {
    if (this.#def !== undefined) await (this.#storage as AbstractStorage).open()
  }

  /** The storage sessions live in (undefined when the app defines none). */
  get storage(): AbstractStorage | undefined {
    return this.#storage
  }

  /** @internal Starts the write-behind tick (runtime start). */
  start(): void {
    if (this.#def === undefined) return
    this.#armTick()
  }

  /**
   * @internal The resident session of a lane for a task about to run, refreshed (last active,
   * client-closed and eviction cancelled); undefined when it must be loaded.
   */
  touch(lane: string | number): Session | undefined {
    const s = this.#sessions.get(lane)
    if (s === undefined) return undefined
    const now = (this.#bridge as SessionBridge).clock.now()
    if (now - s._lastActive >= 1000) {
      // Keep the map in approximate LRU order without paying a reinsert per task.
      this.#sessions.delete(lane)
      this.#sessions.set(lane, s)
    }
    s._lastActive = now
    if ((s._flags & EVICTING) !== 0) s._flags &= ~(EVICTING | EVICT_REASONS)
    if (this.#closed.size > 0 && this.#closed.delete(s)) s._closedAt = 0
    return s
  }

  /**
   * @internal After user code that was handed `s` settled (a route handler, with or without
   * `{ session: false }`, an on-hook task, an in-memory or durable session timer): the
   * automatic dirty mark.
   */
  afterHandler(s: Session): void {
    if (this.#auto && (s._flags & GONE) === 0) this.markDirty(s)
  }

  // ─────────────────────────── output gate ───────────────────────────

  /** @internal A gated request starts on `s`: its barrier (output-gate.ts). */
  gateBegin(s: Session): Barrier {
    return this.#gate.begin(s)
  }

  /** @internal An output of a request held on `s`. */
  gateOut(s: Session, msg: EgressMessage, taskId: number, reply: boolean, req: PeonyRequest): void {
    this.#gate.out(s, msg, taskId, reply, req)
  }

  /** @internal A request held on `s` settled; `done` tells the host once its outputs left. */
  gateSettle(s: Session, barrier: Barrier | undefined, done: () => void): void {
    this.#gate.settle(s, barrier, done)
  }

  /** A session with a gated change to store: into the next group commit (unless a write of it is in flight; its end asks again). */
  #requestGateWrite(s: Session): void {
    if ((s._flags & (FLUSHING | GONE)) !== 0 || this.#gateQueue.has(s)) return
    this.#gateQueue.add(s)
    this.#scheduleGateCommit()
  }

  /**
   * Schedules the next group commit. With no group commit in flight, storage is idle: it starts
   * at the end of this turn. With one in flight, it starts gateIntervalMs after the first change
   * it carries (0: at the end of the turn), so that under load changes collect into fewer, larger
   * writes while earlier ones are being written; when the last commit in flight is acknowledged
   * before that, it starts at once. Nothing is scheduled while the manager is stopping (the final
   * flush writes what waits).
   */
  #scheduleGateCommit(): void {
    if (this.#gateQueue.size === 0 || this.#closedDown) return
    const h = this.#gateHandle
    if (h !== undefined) {
      if (h === true || this.#gateWrites.size > 0) return
      clearTimeout(h)
    }
    const run = (): void => {
      this.#gateHandle = undefined
      if (this.#closedDown) return
      const list = [...this.#gateQueue]
      this.#gateQueue.clear()
      const p: Promise<void> = this.#flushList(list).finally(() => {
        this.#gateWrites.delete(p)
        this.#scheduleGateCommit()
      })
      this.#gateWrites.add(p)
    }
    if (this.#gateWrites.size > 0 && this.#o.gateIntervalMs > 0) this.#gateHandle = setTimeout(run, this.#o.gateIntervalMs)
    else {
      this.#gateHandle = true
      setImmediate(run)
    }
  }

  /** @internal Task cmd 20 for a lane: the client closed; evict after the grace period. */
  clientClosed(lane: string | number): void {
    const s = this.#sessions.get(lane)
    if (s === undefined) return
    s._closedAt = (this.#bridge as SessionBridge).clock.now()
    this.#closed.add(s)
  }

  /** @internal Loads the session of `uid` on lane `lane` (called by the runtime on the lane). */
  async load(lane: string | number, uid: Uid): Promise<Session> {
    const b = this.#bridge as SessionBridge
    const storage = this.#storage as AbstractStorage
    const key = this.keyOf(uid)
    const t0 = performance.now()
    this.#loading++
    let handle: unknown
    try {
      const claim = storage.claim(key, [key])
      let res: Awaited<typeof claim>
      const ms = this.#o.loadTimeoutMs
      if (ms > 0) {
        res = await new Promise<Awaited<typeof claim>>((resolve, reject) => {
          handle = b.clock.setTimeout(() => {
            this.#c.loadTimeouts++
            reject(new SessionLoadError(WorkerErrorCode.SESSION_LOAD_TIMEOUT, `loading the session ${key} took more than ${ms} ms`, { uid }))
          }, ms)
          unref(handle)
          claim.then(resolve, reject)
        })
      } else {
        res = await claim
      }
      const bytes = res.values[0]
      let state: unknown
      let timers: DurableTimer[] | undefined
      let size = 0
      if (bytes === undefined) {
        state = (this.#def as SessionDef<unknown>).initial(uid)
      } else {
        const rec = readRecord(bytes, key)
        state = this.#decode(rec.state, uid)
        timers = rec.timers
        size = bytes.length
      }
      const s = new Session(this, lane, uid, key, state, res.generation, b.clock.now(), 0)
      s._handle = res.handle
      if (timers !== undefined && timers.length > 0) {
        s._timers = new SessionTimers(this, s, timers)
      }
      s._size = this.#sizeOf(s, size)
      // What storage holds (a new player: the record of its initial state): the unmarked-change check compares with it.
      // A new player: with 'auto' every path that hands its session out marks it, so it is written
      // (and hashed) before anything could change it unmarked; no encode per login for the check.
      s._storedHash = bytes !== undefined ? hashBytes(bytes) : this.#auto ? NEVER_STORED : this.#recordHash(s)
      this.#bytes += s._size
      this.#sessions.set(lane, s)
      this.#c.loads++
      this.#hist.record(performance.now() - t0)
      return s
    } catch (err) {
      this.#c.loadFailures++
      if (err instanceof SessionLoadError) throw err
      const again = (err as { retryable?: unknown }).retryable === true ? '; the next request loads it again' : ''
      throw new SessionLoadError(WorkerErrorCode.SESSION_LOAD_FAILED, `loading the session ${key} failed: ${messageOf(err)}${again}`, { uid, cause: err })
    } finally {
      this.#loading--
      if (handle !== undefined) b.clock.clearTimeout(handle)
    }
  }

  /**
   * @internal Fires every due durable timer of `s` (in due order; a repeating timer once per due
   * time up to catchUpLimit), then re-arms. Returns a promise only if a handler returned one.
   */
  fireDue(s: Session): void | Promise<void> {
    const t = s._timers
    if (t === undefined || t._durable.size === 0 || (s._flags & GONE) !== 0) return
    const now = (this.#bridge as SessionBridge).clock.now()
    for (;;) {
      let next: DurableTimer | undefined
      for (const d of t._durable.values()) if (d.due <= now && (next === undefined || d.due < next.due)) next = d
      if (next === undefined) break
      const r = this.#fireOne(s, t, next, now)
      if (r !== undefined) return r.then(() => this.fireDue(s))
    }
    this.#armDurable(s)
  }

  #fireOne(s: Session, t: SessionTimers, d: DurableTimer, now: number): Promise<void> | undefined {
    let skipped = 0
    if (d.every > 0) {
      const behind = Math.floor((now - d.due) / d.every) + 1
      if (behind > this.#o.catchUpLimit) skipped = behind - this.#o.catchUpLimit
    }
    const due = d.due + skipped * d.every
    if (d.every > 0) t._durable.set(d.name, Object.freeze({ ...d, due: due + d.every }))
    else t._durable.delete(d.name)
    this.markDirty(s)
    const handler = this.#def?.timers?.[d.name]
    if (handler === undefined) {
      t._durable.delete(d.name)
      this.#bridge?.report(
        new WorkerError(WorkerErrorCode.SESSION_TIMER_UNKNOWN, `durable timer ${JSON.stringify(d.name)} of ${s.key} has no handler; dropped`, { uid: s.uid }),
      )
      return undefined
    }
    const firing: TimerFiring = { name: d.name, due, every: d.every, data: d.data, skipped }
    this.#c.timersFired++
    let r: unknown
    try {
      r = handler(s, firing)
    } catch (err) {
      this.#timerFailed(s, d.name, err)
      return undefined
    }
    if (isThenable(r)) {
      // A change after the handler's first await may come after a flush of the firing's mark.
      return Promise.resolve(r).then(
        () => this.afterHandler(s),
        (err: unknown) => {
          this.afterHandler(s)
          this.#timerFailed(s, d.name, err)
        },
      )
    }
    return undefined
  }

  #timerFailed(s: Session, name: string, err: unknown): void {
    this.#c.timerFailures++
    this.#bridge?.report(
      new WorkerError(WorkerErrorCode.TIMER_FAILED, `session timer ${name} of ${s.key} failed: ${messageOf(err)}`, { uid: s.uid, cause: err }),
    )
  }

  #armDurable(s: Session): void {
    const t = s._timers
    if (t === undefined || (s._flags & GONE) !== 0) return
    let due = Infinity
    for (const d of t._durable.values()) if (d.due < due) due = d.due
    if (due === t._armedAt) return
    if (t._handle !== undefined) this.cancel(t._handle)
    t._handle = undefined
    t._armedAt = due
    if (due === Infinity) return
    const b = this.#bridge as SessionBridge
    t._handle = b.clock.setTimeout(
      () => {
        t._handle = undefined
        t._armedAt = Infinity
        if ((s._flags & GONE) === 0) b.enqueue(s._lane, () => this.fireDue(s))
      },
      Math.max(0, due - b.clock.now()),
    )
    unref(t._handle)
  }

  // ─────────────────────────── SessionOwner / SessionTimerHost ───────────────────────────

  /** @internal */
  markDirty(s: Session): void {
    s._version++
    if ((s._flags & (DIRTY | GONE)) !== 0) return
    s._flags |= DIRTY
    s._dirtySince = (this.#bridge as SessionBridge).clock.now()
    this.#dirty.add(s)
  }

  /** @internal */
  timersOf(s: Session): SessionTimers {
    return new SessionTimers(this, s, undefined)
  }

  /** @internal */
  now(): number {
    return (this.#bridge as SessionBridge).clock.now()
  }

  /** @internal */
  durableChanged(t: SessionTimers): void {
    const s = t._session as Session
    this.markDirty(s)
    this.#armDurable(s)
  }

  /** @internal */
  hasHandler(name: string): boolean {
    return typeof this.#def?.timers?.[name] === 'function'
  }

  /** @internal */
  schedule(_t: SessionTimers, ms: number, run: () => void): unknown {
    const h = (this.#bridge as SessionBridge).clock.setTimeout(run, ms)
    unref(h)
    return h
  }

  /** @internal */
  cancel(handle: unknown): void {
    if (handle !== undefined) (this.#bridge as SessionBridge).clock.clearTimeout(handle)
  }

  /** @internal */
  runOnLane(t: SessionTimers, fn: () => unknown): void {
    const s = t._session as Session
    const b = this.#bridge as SessionBridge
    b.enqueue(s._lane, () => {
      if ((s._flags & GONE) !== 0) return undefined
      this.#c.timersFired++
      let r: unknown
      try {
        r = fn()
      } catch (err) {
        this.afterHandler(s)
        this.#timerFailed(s, 'once/every', err)
        return undefined
      }
      if (isThenable(r)) {
        return Promise.resolve(r).then(
          () => this.afterHandler(s),
          (err: unknown) => {
            this.afterHandler(s)
            this.#timerFailed(s, 'once/every', err)
          },
        )
      }
      this.afterHandler(s)
      return undefined
    })
  }

  /** @internal */
  checkLive(t: SessionTimers): void {
    const s = t._session as Session
    if ((s._flags & GONE) !== 0) throw new PeonyError(WorkerErrorCode.SESSION_EVICTED, `the session ${s.key} was evicted; its timers cannot change`)
  }

  // ─────────────────────────── write-behind ───────────────────────────

  /**
   * Writes every dirty session now (waiting for a flush under way first). Resolves with the
   * number of sessions written and of sessions still dirty (a failed write is not thrown: the
   * sessions stay dirty and the retry goes on).
   */
  async flush(): Promise<{ written: number; dirty: number }> {
    if (this.#def === undefined) return { written: 0, dirty: 0 }
    while (this.#flushing !== undefined) await this.#flushing
    const before = this.#c.flushedSessions
    const list = [...this.#retry, ...this.#dirty]
    if (list.length > 0) await this.#startFlush(list)
    return { written: this.#c.flushedSessions - before, dirty: this.#dirty.size + this.#retry.size }
  }

  /** Evicts the resident session of `uid` now (flushing it first). False when not resident or its lane is busy. */
  async evict(uid: Uid): Promise<boolean> {
    while (this.#flushing !== undefined) await this.#flushing
    const s = this.#sessions.get(laneKeyOf(uid))
    if (s === undefined) return false
    const list: Session[] = []
    this.#checkUntil = Infinity
    if (!this.#startEvict(s, EVICT_MANUAL, list, true)) return false
    // No flush can have started since the wait above: #startEvict is synchronous.
    if (list.length > 0) await this.#startFlush(list)
    return (s._flags & GONE) !== 0
  }

  /**
   * @internal Graceful stop: cancels every session timer, then flushes until nothing is dirty,
   * retrying failed writes with back-off (capped at 1 s during stop).
   */
  async close(): Promise<void> {
    if (this.#def === undefined || this.#closedDown) return
    this.#closedDown = true
    if (this.#tickHandle !== undefined) this.cancel(this.#tickHandle)
    this.#tickHandle = undefined
    // Gated changes still waiting for their group commit go with the final flush below.
    if (this.#gateHandle !== undefined && this.#gateHandle !== true) clearTimeout(this.#gateHandle)
    this.#gateHandle = undefined
    this.#gateQueue.clear()
    while (this.#gateWrites.size > 0) await Promise.all([...this.#gateWrites])
    for (const s of this.#sessions.values()) s._timers?._clear()
    await this.#flushAllForStop()
    // Then a change nobody marked: compare clean sessions with what was stored, most recently
    // active first, for at most STOP_CHECK_BUDGET_MS (an encode each), and write what changed.
    const all = [...this.#sessions.values()]
    const until = performance.now() + STOP_CHECK_BUDGET_MS
    let i = all.length - 1
    for (; i >= 0; i--) {
      const s = all[i] as Session
      if ((s._flags & (DIRTY | FLUSHING | GONE)) === 0) this.#unmarkedChange(s)
      if ((i & 63) === 0 && performance.now() > until) break
    }
    if (i > 0) {
      this.#bridge?.logger.warn(
        { code: WorkerErrorCode.SESSION_UNMARKED_CHANGE, unchecked: i },
        `stopping: ${i} least recently used clean sessions were not checked for unmarked changes (${STOP_CHECK_BUDGET_MS} ms budget)`,
      )
    }
    if (this.#dirty.size > 0 || this.#retry.size > 0) await this.#flushAllForStop()
  }

  /** Flushes until nothing is dirty, retrying storage errors (≤ 1 s apart); gives up only on sessions whose encode fails. */
  async #flushAllForStop(): Promise<void> {
    const b = this.#bridge as SessionBridge
    for (;;) {
      while (this.#flushing !== undefined) await this.#flushing
      const list = [...this.#retry, ...this.#dirty]
      if (list.length === 0) break
      const errorsBefore = this.#c.flushErrors
      await this.#startFlush(list)
      if (this.#retry.size > 0 && this.#c.flushErrors === errorsBefore) {
        // Nothing failed in storage: what is left cannot be encoded; retrying will not help.
        b.logger.error({ code: WorkerErrorCode.SESSION_ENCODE_FAILED, sessions: this.#retry.size }, 'stopping: sessions whose encode fails are not written')
        break
      }
      if (this.#retry.size > 0) {
        const wait = Math.min(1000, this.#o.retryBaseMs * 2 ** Math.min(this.#failures, 10))
        b.logger.warn(
          { code: WorkerErrorCode.SESSION_FLUSH_FAILED, dirty: this.#retry.size + this.#dirty.size, retryInMs: wait },
          'stopping: sessions not yet written, retrying',
        )
        await new Promise<void>((resolve) => setTimeout(resolve, wait))
      }
    }
  }

  #armTick(): void {
    const b = this.#bridge as SessionBridge
    this.#tickHandle = b.clock.setTimeout(this.#tick, this.#o.flushIntervalMs)
    unref(this.#tickHandle)
  }

  readonly #tick = (): void => {
    if (this.#closedDown) return
    this.#armTick()
    if (this.#flushing !== undefined) return
    const now = (this.#bridge as SessionBridge).clock.now()
    const list: Session[] = []
    if (now < this.#retryAt) {
      // Backing off after a failed write: evict what is clean, write nothing.
      this.#collectEvictions(now, list, false)
      return
    }
    const cutoff = now + this.#o.flushIntervalMs - this.#o.maxUnflushedAgeMs
    for (const s of this.#dirty) {
      if (s._dirtySince > cutoff) break
      list.push(s)
    }
    for (const s of this.#retry) list.push(s)
    this.#collectEvictions(now, list, true)
    if (list.length > 0) void this.#startFlush(list)
  }

  /**
   * Starts (or carries on) the evictions due now. The limits count what is really dropped, plus
   * the evictions under way that will drop their session unless a task cancels them: a write in
   * flight, or a write in `list` (when `canWrite`). A session whose lane is busy is not evicted
   * now, so the next least recently used one goes in its place.
   */
  #collectEvictions(now: number, list: Session[], canWrite: boolean): void {
    const o = this.#o
    this.#checkUntil = performance.now() + EVICT_CHECK_BUDGET_MS
    for (const s of this.#closed) {
      if (now - s._closedAt >= o.closeGraceMs) this.#startEvict(s, EVICT_CLOSED, list, canWrite)
      if (this.#checkUntil === 0) return
    }
    if (o.idleTimeoutMs > 0) {
      for (const s of this.#sessions.values()) {
        if (now - s._lastActive < o.idleTimeoutMs) break
        this.#startEvict(s, EVICT_IDLE, list, canWrite)
        if (this.#checkUntil === 0) return
      }
    }
    let overBytes = o.memoryBudgetBytes > 0 ? this.#bytes - o.memoryBudgetBytes : 0
    let overCount = o.maxSessions > 0 ? this.#sessions.size - o.maxSessions : 0
    if (overBytes <= 0 && overCount <= 0) return
    for (const s of this.#sessions.values()) {
      if ((overBytes <= 0 && overCount <= 0) || this.#checkUntil === 0) break
      const size = s._size
      if (this.#startEvict(s, EVICT_MEMORY, list, canWrite)) {
        overBytes -= size
        overCount--
      }
    }
  }

  /**
   * Starts evicting `s`, or carries on an eviction already started: drops it now when it is clean
   * and no write of it is in flight, else adds it to `list` to be written first (the write's end
   * drops it). True when the session is gone or on its way out (a write in flight or in `list`).
   * False, and nothing started, when its lane is busy, or when it must be written and `canWrite`
   * is false (backing off after a failed write: an eviction already started is cancelled, the
   * next tick decides again).
   */
  #startEvict(s: Session, reason: number, list: Session[], canWrite: boolean): boolean {
    const f = s._flags
    if ((f & GONE) !== 0) return false
    // A write of it is in flight: its end drops the session if it is still evicting and clean.
    if ((f & (EVICTING | FLUSHING)) === (EVICTING | FLUSHING)) return true
    if ((this.#bridge as SessionBridge).laneBusy(s._lane)) return false
    if ((f & FLUSHING) !== 0) {
      s._flags |= EVICTING | reason
      return true
    }
    if ((f & DIRTY) === 0) {
      // Clean: the unmarked-change check (an encode) first, within this tick's budget; past it,
      // the session waits for the next tick (not evicted, not counted as freed).
      if (this.#checkUntil === 0 || performance.now() > this.#checkUntil) {
        this.#checkUntil = 0
        return false
      }
      this.#unmarkedChange(s)
    }
    if ((s._flags & DIRTY) !== 0) {
      if (!canWrite) {
        s._flags &= ~(EVICTING | EVICT_REASONS)
        return false
      }
      if ((f & EVICTING) === 0) s._flags |= EVICTING | reason
      list.push(s)
      return true
    }
    this.#drop(s, (f & EVICTING) !== 0 ? f & EVICT_REASONS : reason)
    return true
  }

  #drop(s: Session, reason: number): void {
    if ((s._flags & GONE) !== 0) return
    s._flags = GONE
    if (this.#sessions.get(s._lane) === s) this.#sessions.delete(s._lane)
    this.#dirty.delete(s)
    this.#retry.delete(s)
    this.#closed.delete(s)
    s._timers?._clear()
    this.#bytes -= s._size
    const ev = this.#ev
    if (reason === EVICT_IDLE) ev.idle++
    else if (reason === EVICT_CLOSED) ev.closed++
    else if (reason === EVICT_MEMORY) ev.memory++
    else if (reason === EVICT_MANUAL) ev.manual++
    else if (reason === 0) ev.fenced++
  }

  #startFlush(list: Session[]): Promise<void> {
    const p = this.#flushList(list).finally(() => {
      this.#flushing = undefined
    })
    this.#flushing = p
    return p
  }

  /**
   * Writes the sessions of `list` (skipping clean or gone ones) in fenced batches of
   * `flushBatchSize`. Each batch's records are built in one writer's buffer (no allocation per
   * session or per batch; the values are views of it), and up to FLUSH_IN_FLIGHT batches are in
   * flight at once, so encoding the next batch overlaps the storage writing the previous one.
   * After a failed batch, the batches not yet sent go straight to the retry set.
   */
  async #flushList(list: Session[]): Promise<void> {
    const storage = this.#storage as AbstractStorage
    const size = this.#o.flushBatchSize
    const inFlight: Promise<boolean>[] = []
    let failed = false
    let i = 0
    while (i < list.length) {
      const batch: Session[] = []
      const since: number[] = []
      const versions: number[] = []
      const ends: number[] = []
      const hashes: number[] = []
      const w = this.#writers.pop() ?? new MsgpackWriter(64 * 1024)
      for (; i < list.length && batch.length < size; i++) {
        const s = list[i] as Session
        if ((s._flags & DIRTY) === 0 || (s._flags & (GONE | FLUSHING)) !== 0) continue
        const start = w.pos
        try {
          writeRecord(w, s, this.#encode)
        } catch (err) {
          w.pos = start
          this.#c.encodeErrors++
          this.#dirty.delete(s)
          this.#retry.add(s)
          this.#bridge?.report(
            new WorkerError(WorkerErrorCode.SESSION_ENCODE_FAILED, `encoding the session ${s.key} failed: ${messageOf(err)}`, { uid: s.uid, cause: err }),
          )
          if (this.#gate.pending(s)) this.#gateFailed(s)
          continue
        }
        since.push(s._dirtySince)
        versions.push(s._version)
        this.#dirty.delete(s)
        this.#retry.delete(s)
        s._flags = (s._flags & ~DIRTY) | FLUSHING
        batch.push(s)
        ends.push(w.pos)
        // Hashed now, while the record's bytes are in the cache; it becomes the stored hash once written.
        hashes.push(hashRange(w.view, start, w.pos))
      }
      if (batch.length === 0) {
        this.#freeWriter(w)
        continue
      }
      const bytes = w.buf
      const writes: FencedWrite[] = new Array(batch.length)
      let from = 0
      for (let k = 0; k < batch.length; k++) {
        const s = batch[k] as Session
        const to = ends[k] as number
        const value = bytes.subarray(from, to)
        from = to
        const newSize = this.#sizeOf(s, value.length)
        this.#bytes += newSize - s._size
        s._size = newSize
        writes[k] = { fence: s.key, generation: s._generation, ops: [{ type: 'put', key: s.key, value }], handle: s._handle }
      }
      if (failed) {
        this.#writeFailed(batch, since)
        this.#freeWriter(w)
        continue
      }
      inFlight.push(
        this.#write(storage, writes, batch, since, versions, hashes).then((ok) => {
          if (ok) this.#freeWriter(w)
          return ok
        }),
      )
      if (inFlight.length >= FLUSH_IN_FLIGHT && !(await (inFlight.shift() as Promise<boolean>))) failed = true
    }
    for (const p of inFlight) await p
    // Between flushes one writer is kept (its buffer grown to a batch's size), as before pooling.
    if (this.#writers.length > 1) this.#writers.length = 1
  }

  /** `w` is free again: emptied, and kept for the next batch (up to one per call in flight, plus one). */
  #freeWriter(w: MsgpackWriter): void {
    w.reset()
    if (this.#writers.length <= FLUSH_IN_FLIGHT) this.#writers.push(w)
  }

  /** One writeFenced call; false when it failed (its sessions went to the retry set). */
  async #write(storage: AbstractStorage, writes: FencedWrite[], batch: Session[], since: number[], versions: number[], hashes: number[]): Promise<boolean> {
    let refused: number[]
    try {
      refused = (await storage.writeFenced(writes)).refused
    } catch (err) {
      this.#c.flushErrors++
      this.#failures++
      const delay = Math.min(this.#o.retryMaxMs, this.#o.retryBaseMs * 2 ** Math.min(this.#failures - 1, 20))
      const b = this.#bridge as SessionBridge
      this.#retryAt = b.clock.now() + delay
      // A held gated change is answered by what storage knows: -10008 only if nothing was applied.
      this.#writeFailed(batch, since, isNotApplied(err))
      const now = Date.now()
      if (now - this.#lastFlushReport >= 5000) {
        this.#lastFlushReport = now
        b.report(
          new WorkerError(
            WorkerErrorCode.SESSION_FLUSH_FAILED,
            `writing ${batch.length} sessions failed (${this.#retry.size} dirty sessions wait; retry in ${delay} ms): ${messageOf(err)}`,
            {
              cause: err,
            },
          ),
        )
      }
      return false
    }
    this.#failures = 0
    this.#c.flushes++
    const refusedSet = refused.length > 0 ? new Set(refused) : undefined
    for (let i = 0; i < batch.length; i++) {
      const s = batch[i] as Session
      s._flags &= ~FLUSHING
      if (refusedSet?.has(i) === true) {
        this.#c.fenced++
        this.#bridge?.report(
          new WorkerError(WorkerErrorCode.SESSION_FENCED, `storage refused the session ${s.key}: a newer owner loaded it; this copy is dropped`, {
            uid: s.uid,
          }),
        )
        this.#gate.fail(s)
        this.#drop(s, 0)
        continue
      }
      this.#c.flushedSessions++
      s._storedHash = hashes[i] as number
      if (s._held !== undefined || s._storedVersion < (versions[i] as number)) this.#gate.stored(s, versions[i] as number)
      if ((s._flags & (EVICTING | DIRTY)) === EVICTING) {
        // The eviction's write landed: drop the session, unless its lane is busy now (a session
        // timer started meanwhile); then the eviction is cancelled and the next tick decides again.
        // The record was encoded for this write a moment ago: no unmarked-change check here (an
        // encode per evicted player would halve the churn a worker can take).
        if ((this.#bridge as SessionBridge).laneBusy(s._lane)) s._flags &= ~(EVICTING | EVICT_REASONS)
        else this.#drop(s, s._flags & EVICT_REASONS)
      }
    }
    return true
  }

  /** `known`: storage says the write changed nothing (a batch never sent, or a driver's notApplied). */
  #writeFailed(batch: Session[], since: number[], known = true): void {
    for (let i = 0; i < batch.length; i++) {
      const s = batch[i] as Session
      s._flags &= ~FLUSHING
      if ((s._flags & GONE) !== 0) continue
      if (this.#gate.pending(s)) {
        this.#gateFailed(s, known)
        continue
      }
      const t = since[i] as number
      if ((s._flags & DIRTY) === 0 || t < s._dirtySince) s._dirtySince = t
      s._flags |= DIRTY
      this.#dirty.delete(s)
      this.#retry.add(s)
    }
  }

  /**
   * A write of a session holding gated output failed: its held replies are answered -10008 and
   * it is dropped with every unstored change (the next task reloads it from storage), so nothing
   * a client was told failed is applied later by a retry of the write.
   */
  #gateFailed(s: Session, known = true): void {
    this.#gate.fail(s, known)
    this.#drop(s, -1)
  }

  /** The hash of the record `s` would be written as now; -1 when its encode throws. */
  #recordHash(s: Session): number {
    const w = this.#probe
    try {
      writeRecord(w, s, this.#encode)
      return hashBytes(w.buf.subarray(0, w.pos))
    } catch {
      return -1
    } finally {
      w.reset()
    }
  }

  /**
   * The belt-and-braces check before a clean session is dropped (eviction) or left unwritten
   * (stop): when its record differs from the one last stored (or loaded), a change was made that
   * nothing marked: it is marked dirty now, counted, logged (PEONY_SESSION_UNMARKED_CHANGE,
   * warn, one line per 10 s), and true is returned. One encode and hash of the state.
   */
  #unmarkedChange(s: Session): boolean {
    if ((s._flags & (DIRTY | GONE)) !== 0) return false
    // A new player never marked with 'auto': nothing user code was handed has touched it.
    if (s._storedHash === NEVER_STORED) return false
    const h = this.#recordHash(s)
    if (h === -1 || h === s._storedHash) return false
    this.#c.unmarkedChanges++
    this.markDirty(s)
    // One line per 10 s: the bridge's logger is the runtime's LogLimiter (kind: the message).
    this.#bridge?.logger.warn(
      { code: WorkerErrorCode.SESSION_UNMARKED_CHANGE, uid: s.uid, key: s.key, unmarkedChanges: this.#c.unmarkedChanges },
      "a session changed without being marked dirty (a session object kept past its request, or a missing markDirty() with dirty: 'manual'); it is written before it is dropped",
    )
    return true
  }

  #sizeOf(s: Session, encoded: number): number {
    const f = this.#def?.sizeOf
    if (f === undefined) return encoded
    try {
      const n = f(s._state)
      return Number.isFinite(n) && n >= 0 ? n : encoded
    } catch {
      return encoded
    }
  }
}

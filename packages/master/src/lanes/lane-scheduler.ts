/**
 * Per-worker lanes: the master's queue of tasks for one worker slot, split by routing key.
 *
 * - A lane holds the tasks of one routing key that are not yet dispatched, in arrival order.
 * - At most `maxInFlight` tasks of a lane are dispatched to the worker at a time.
 * - Lanes that have a task and room are "ready"; ready lanes are served in turn (round robin),
 *   so one busy or slow player never holds up the worker's other players.
 * - `queued` counts every task waiting in any lane (the bound behind -10002).
 */
import type { RoutingKey, Task } from '@peony/protocol'

/**
 * A FIFO ring buffer: O(1) push and shift, a power-of-two capacity that doubles when full, so a
 * queue in steady use allocates nothing. Only `compact()` gives capacity back (an idle lane's
 * queue, see LaneScheduler.idle). Used for each lane's tasks and for the ring of ready lanes.
 */
export class Queue<T> {
  private buf: (T | undefined)[]
  private head = 0
  private n = 0
  constructor(capacity = 4) {
    let c = 1
    while (c < capacity) c *= 2
    this.buf = new Array<T | undefined>(c).fill(undefined)
  }
  get size(): number {
    return this.n
  }
  /** Slots allocated. */
  get capacity(): number {
    return this.buf.length
  }
  push(v: T): void {
    if (this.n === this.buf.length) this.grow(this.n + 1)
    this.buf[(this.head + this.n) & (this.buf.length - 1)] = v
    this.n++
  }
  shift(): T | undefined {
    if (this.n === 0) return undefined
    const v = this.buf[this.head]
    this.buf[this.head] = undefined
    this.head = (this.head + 1) & (this.buf.length - 1)
    this.n--
    return v
  }
  /** Puts `vs` back at the head, in their order. */
  unshiftAll(vs: readonly T[]): void {
    if (this.n + vs.length > this.buf.length) this.grow(this.n + vs.length)
    const mask = this.buf.length - 1
    for (let i = vs.length - 1; i >= 0; i--) {
      this.head = (this.head - 1) & mask
      this.buf[this.head] = vs[i]
    }
    this.n += vs.length
  }
  clear(): void {
    this.buf.fill(undefined)
    this.head = 0
    this.n = 0
  }
  /** An empty queue that grew past `max` slots goes back to `to` slots. */
  compact(max: number, to: number): void {
    if (this.n !== 0 || this.buf.length <= max) return
    this.buf = new Array<T | undefined>(to).fill(undefined)
    this.head = 0
  }
  private grow(atLeast: number): void {
    const old = this.buf
    let c = old.length * 2
    while (c < atLeast) c *= 2
    const buf = new Array<T | undefined>(c).fill(undefined)
    for (let i = 0; i < this.n; i++) buf[i] = old[(this.head + i) & (old.length - 1)]
    this.buf = buf
    this.head = 0
  }
}

/** One task as the master holds it. */
export interface Entry {
  task: Task
  /** The task's original msgpack map, forwarded to the worker as is. */
  raw: Uint8Array
  lane: Lane
  /** Dispatch id while in flight (0 when queued). */
  id: number
  /** Dispatch order while in flight (see InFlight). */
  seq: number
  /** When intake read it (performance.now() ms): a client request that waited past maxQueueWaitMs is shed. */
  at: number
}

/** The tasks of one routing key for one worker. */
export class Lane {
  readonly key: RoutingKey
  /** Queued entries, in arrival order. */
  readonly items = new Queue<Entry>(LANE_CAPACITY)
  inFlight = 0
  ready = false
  /** When the lane last became idle (0 while it holds or runs a task); see LaneScheduler.idle. */
  idleSince = 0
  constructor(key: RoutingKey) {
    this.key = key
  }
  get size(): number {
    return this.items.size
  }
}

/** Idle lanes a scheduler keeps by default (about 100 bytes each): the master option laneKeepIdle. */
export const KEEP_IDLE_LANES = 8192

/** A lane's initial queue capacity, and the most an idle lane keeps (a burst's grown queue is given back when it goes idle). */
const LANE_CAPACITY = 4
const IDLE_LANE_MAX_CAPACITY = 16

/**
 * Lanes by routing key, with idle lanes kept for reuse.
 *
 * A lane with no task queued or running is idle. Deleting it at once (and creating it again at
 * the player's next task) made the master churn a Lane, its queue and the Map's table for
 * nearly every task; on the master thread that garbage outlived young-generation collections,
 * grew the heap and brought old-generation collections of 2-7 ms every second or so at
 * 20k tasks/s, the largest part of the intake → handler p99 (docs/benchmarks.md, latency).
 * So idle lanes stay in the map, up to `keepIdle` of them (the master option laneKeepIdle):
 * when one more lane goes idle, the one idle longest is deleted. That bound is all the memory
 * the scheduler keeps for players who have left, however many it has seen; an idle lane's queue
 * is shrunk back to a few slots, so a burst of one player does not stay allocated. A deleted
 * lane is created again, empty, at its key's next task: nothing of its order is lost, since an
 * idle lane holds no task. `idleOrder` is a FIFO with one entry per time a lane went idle;
 * the entry's stamp is its position in that sequence (the head's is `idleClock - size + 1`), and
 * a lane reused since then carries a newer stamp (or 0 while busy), so its old entry is skipped.
 */
export class LaneScheduler {
  readonly lanes = new Map<RoutingKey, Lane>()
  private readonly ring = new Queue<Lane>()
  private readonly keepIdle: number
  private readonly idleOrder = new Queue<Lane>()
  private idleClock = 0
  /** Tasks waiting in lanes (not dispatched). */
  queued = 0
  /** Tasks dispatched and not yet settled. */
  inFlight = 0
  readonly maxInFlight: number
  constructor(maxInFlight: number, keepIdle: number = KEEP_IDLE_LANES) {
    this.maxInFlight = maxInFlight
    this.keepIdle = keepIdle
  }

  /** Lanes with a task queued or running. */
  get activeLanes(): number {
    let n = 0
    for (const lane of this.lanes.values()) if (lane.idleSince === 0) n++
    return n
  }

  /** `lane` has nothing queued or running: keep it for reuse, deleting the longest idle beyond the bound. */
  private idle(lane: Lane): void {
    lane.items.compact(IDLE_LANE_MAX_CAPACITY, LANE_CAPACITY)
    if (this.keepIdle === 0) {
      this.lanes.delete(lane.key)
      return
    }
    const order = this.idleOrder
    if (order.size === this.keepIdle) {
      const headStamp = this.idleClock - order.size + 1
      const old = order.shift()!
      if (old.idleSince === headStamp) this.lanes.delete(old.key)
    }
    lane.idleSince = ++this.idleClock
    order.push(lane)
  }

  /** Queues a task at the tail of its lane; `at` is when intake read it. */
  push(key: RoutingKey, task: Task, raw: Uint8Array, at = 0): void {
    let lane = this.lanes.get(key)
    if (lane === undefined) {
      lane = new Lane(key)
      this.lanes.set(key, lane)
    }
    lane.idleSince = 0
    lane.items.push({ task, raw, lane, id: 0, seq: 0, at })
    this.queued++
    if (!lane.ready && lane.inFlight < this.maxInFlight) this.makeReady(lane)
  }

  private makeReady(lane: Lane): void {
    lane.ready = true
    this.ring.push(lane)
  }

  /** True when some lane can dispatch a task now. */
  hasReady(): boolean {
    return this.ring.size > 0
  }

  /** Takes the next task to dispatch, serving ready lanes in turn; undefined when none is ready. */
  next(): Entry | undefined {
    const lane = this.ring.shift()
    if (lane === undefined) return undefined
    const e = lane.items.shift()!
    this.queued--
    this.inFlight++
    lane.inFlight++
    if (lane.size > 0 && lane.inFlight < this.maxInFlight) this.ring.push(lane)
    else lane.ready = false
    return e
  }

  /** A dispatched task settled: frees its lane's slot. */
  settle(e: Entry): void {
    const lane = e.lane
    lane.inFlight--
    this.inFlight--
    if (lane.size > 0) {
      if (!lane.ready) this.makeReady(lane)
    } else if (lane.inFlight === 0) {
      this.idle(lane)
    }
  }

  /**
   * The worker died: `entries` (dispatched, never started, in dispatch order) go back to the
   * head of their lanes in order; the ready ring is rebuilt. Their wait in the master starts
   * again at `at` (the time they spent in the dead worker was not spent queued here).
   */
  requeue(entries: Entry[], at = 0): void {
    const byLane = new Map<Lane, Entry[]>()
    for (const e of entries) {
      let list = byLane.get(e.lane)
      if (list === undefined) byLane.set(e.lane, (list = []))
      e.id = 0
      e.at = at
      list.push(e)
    }
    for (const [lane, list] of byLane) {
      lane.items.unshiftAll(list)
      lane.inFlight -= list.length
      this.inFlight -= list.length
      this.queued += list.length
      if (!this.lanes.has(lane.key)) this.lanes.set(lane.key, lane)
    }
    this.rebuildRing()
  }

  /** Drops every in-flight count (after a death, once lost and requeued tasks were accounted). */
  forgetInFlight(e: Entry): void {
    e.lane.inFlight--
    this.inFlight--
    if (e.lane.size === 0 && e.lane.inFlight === 0) this.idle(e.lane)
  }

  rebuildRing(): void {
    this.ring.clear()
    for (const lane of this.lanes.values()) {
      lane.ready = lane.size > 0 && lane.inFlight < this.maxInFlight
      if (lane.ready) this.ring.push(lane)
    }
  }

  /** Removes and returns every queued (undispatched) entry, in lane order. */
  drainQueued(): Entry[] {
    const out: Entry[] = []
    for (const lane of this.lanes.values()) {
      let e: Entry | undefined
      if (lane.size === 0) continue
      while ((e = lane.items.shift()) !== undefined) out.push(e)
      if (lane.inFlight === 0) this.idle(lane)
    }
    this.queued = 0
    this.rebuildRing()
    return out
  }
}

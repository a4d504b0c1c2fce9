/**
 * Per-worker lanes: the master's queue of tasks for one worker slot, split by routing key.
 *
 * - A lane holds the tasks of one routing key that are not yet dispatched, in arrival order.
 * - At most `maxInFlight` tasks of a lane are dispatched to the worker at a time.
 * - Lanes that have a task and room are "ready"; ready lanes are served in turn (round robin),
 *   so one busy or slow player never holds up the worker's other players.
 * - `queued` counts every task waiting in any lane (the bound behind -10002).
 */
import type { RoutingKey, Task } from '@peony/broker-client'

/**
 * A FIFO over an array with a moving head: O(1) push and shift, the consumed prefix dropped now
 * and then. Used for each lane's tasks and for the ring of ready lanes.
 */
export class Queue<T> {
  private items: (T | undefined)[] = []
  private head = 0
  get size(): number {
    return this.items.length - this.head
  }
  push(v: T): void {
    this.items.push(v)
  }
  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined
    const v = this.items[this.head]
    this.items[this.head++] = undefined
    if (this.head > 64 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
    return v
  }
  /** Puts `vs` back at the head, in their order. */
  unshiftAll(vs: readonly T[]): void {
    this.items = (vs as (T | undefined)[]).concat(this.items.slice(this.head))
    this.head = 0
  }
  clear(): void {
    this.items = []
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
}

/** The tasks of one routing key for one worker. */
export class Lane {
  readonly key: RoutingKey
  /** Queued entries, in arrival order. */
  readonly items = new Queue<Entry>()
  inFlight = 0
  ready = false
  constructor(key: RoutingKey) {
    this.key = key
  }
  get size(): number {
    return this.items.size
  }
}

export class LaneScheduler {
  readonly lanes = new Map<RoutingKey, Lane>()
  private readonly ring = new Queue<Lane>()
  /** Tasks waiting in lanes (not dispatched). */
  queued = 0
  /** Tasks dispatched and not yet settled. */
  inFlight = 0
  readonly maxInFlight: number
  constructor(maxInFlight: number) {
    this.maxInFlight = maxInFlight
  }

  /** Queues a task at the tail of its lane. */
  push(key: RoutingKey, task: Task, raw: Uint8Array): void {
    let lane = this.lanes.get(key)
    if (lane === undefined) {
      lane = new Lane(key)
      this.lanes.set(key, lane)
    }
    lane.items.push({ task, raw, lane, id: 0, seq: 0 })
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
      this.lanes.delete(lane.key)
    }
  }

  /**
   * The worker died: `entries` (dispatched, never started, in dispatch order) go back to the
   * head of their lanes in order; the ready ring is rebuilt.
   */
  requeue(entries: Entry[]): void {
    const byLane = new Map<Lane, Entry[]>()
    for (const e of entries) {
      let list = byLane.get(e.lane)
      if (list === undefined) byLane.set(e.lane, (list = []))
      e.id = 0
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
    if (e.lane.size === 0 && e.lane.inFlight === 0) this.lanes.delete(e.lane.key)
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
      while ((e = lane.items.shift()) !== undefined) out.push(e)
      if (lane.inFlight === 0) this.lanes.delete(lane.key)
    }
    this.queued = 0
    this.rebuildRing()
    return out
  }
}

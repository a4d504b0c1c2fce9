/**
 * Worker slots and groups: what the master keeps per slot across the incarnations of its worker
 * thread (lanes, in-flight table, shared marks, supervision state, counters).
 *
 *   routing key ──hash──▶ shard (fixed count) ──group's map──▶ slot (worker thread)
 */
import type { Worker, MessagePort } from 'node:worker_threads'
import { LaneScheduler } from './lanes/lane-scheduler.ts'
import { InFlight } from './lanes/in-flight.ts'
import { createJournal } from './thread/egress-journal.ts'
import { emptyCounts, type HandlerCounts } from './stats.ts'

/** A worker thread: assigned to a slot, or the spare (loaded, waiting). */
export interface Thread {
  worker: Worker
  slot: Slot | undefined
  loaded: boolean
  /** The thread reported that it could not load or start the app ('fatal'); its error event and exit follow. */
  fatal?: boolean
}

export interface Group {
  id: number | string
  key: string
  slots: Slot[]
}

export interface Slot {
  index: number
  group: Group
  indexInGroup: number
  sched: LaneScheduler
  worker: Worker | undefined
  live: boolean
  generation: number
  marks: Int32Array
  inFlight: InFlight
  spawnedAt: number
  readyAt: number
  crashStreak: number
  respawnTimer: NodeJS.Timeout | undefined
  stopping: boolean
  lastHeartbeat: number
  lastHeartbeatAt: number
  killReason: string | undefined
  exited: Promise<void>
  onExit: (() => void) | undefined
  egressPort: MessagePort | undefined
  /** This incarnation's egress journal (thread/egress-journal.ts). */
  journal: SharedArrayBuffer
  /** Its exit is not a death: the worker reported 'stopped' (graceful stop), or destroy() ended it. */
  exitExpected: boolean
  /** Tasks queued for this slot since its last dispatch message. */
  sincePump: number
  /** The pending start of the current generation (resolved on 'ready'). */
  started: { resolve: () => void; reject: (err: Error) => void; initial: boolean } | undefined
  /** Its first start failed: start() rejects with that error, so what the dying thread reports next is not logged again. */
  firstStartFailed?: boolean
  /** Counters of earlier generations of this slot, and the current one's last report. */
  carried: HandlerCounts
  current: HandlerCounts
  /** The current generation's last sessions report. */
  sessions: Record<string, unknown> | undefined
  // stats
  workerReq: number
  discards: number
  lost: number
  respawns: number
}

/** The mask of dispatch ids in the shared marks: they must outlive every id a worker may hold (more than claimedMaxSize, a power of two). */
export function markMaskFor(claimedMaxSize: number): number {
  let cap = 1
  while (cap < claimedMaxSize * 4) cap <<= 1
  return cap - 1
}

/** A slot with no worker yet (generation -1: its first spawn makes it 0). */
export function createSlot(index: number, group: Group, indexInGroup: number, laneMaxInFlight: number, laneKeepIdle: number, markMask: number): Slot {
  return {
    index,
    group,
    indexInGroup,
    sched: new LaneScheduler(laneMaxInFlight, laneKeepIdle),
    worker: undefined,
    live: false,
    generation: -1,
    marks: new Int32Array(0),
    inFlight: new InFlight(markMask),
    spawnedAt: 0,
    readyAt: 0,
    crashStreak: 0,
    respawnTimer: undefined,
    stopping: false,
    lastHeartbeat: 0,
    lastHeartbeatAt: 0,
    killReason: undefined,
    exited: Promise.resolve(),
    onExit: undefined,
    egressPort: undefined,
    journal: createJournal(0),
    exitExpected: false,
    started: undefined,
    sincePump: 0,
    carried: emptyCounts(),
    current: emptyCounts(),
    sessions: undefined,
    workerReq: 0,
    discards: 0,
    lost: 0,
    respawns: 0,
  }
}

/**
 * The private protocol between the master, its worker threads and its egress thread.
 *
 * ZeroMQ sockets never live in a thread that runs application code: zeromq.js aborts the whole
 * process when such a thread dies abruptly (`process.exit`, out of memory, terminate). So each
 * worker hands its egress messages, batched per turn, through a MessagePort to the egress thread,
 * which owns the DEALER to the forwarder. Messages a worker posted survive its death, and so do
 * those it produced but had not posted yet: they wait in its egress journal (egress-journal.ts).
 *
 * master → worker: `assign` (slot identity, marks, egress port; a thread boots unassigned and
 *                  may wait as the spare), `tasks` batches (the tasks' original msgpack maps as one msgpack array, and
 *                  their dispatch ids; both transferred),
 *                  `stop` (phase 3–4 of a graceful stop).
 * worker → master: `loaded` (app module loaded), `ready` (assigned, onWorkerStart done), `done` (ids that settled, batched
 *                  per turn), `stopped` (stop hooks ran, egress drained), `fatal` (app failed to load).
 *
 * Shared memory (`Int32Array` over a SharedArrayBuffer, one per slot incarnation):
 *   [0]           heartbeat, incremented by the worker every HEARTBEAT_MS; the master terminates a
 *                 worker whose heartbeat stands still while it holds tasks (its loop is blocked).
 *   [1 + (id & mask)]  the task mark: `id` when the task's first user code started, `-id` once it
 *                 settled or once its reply was sent (journaled or posted), whichever is first. Stores survive the thread's death, so the master can tell, for every
 *                 task it had dispatched, whether it never started (re-queue), ran (lost), or
 *                 finished (done).
 */
import type { MessagePort } from 'node:worker_threads'
import type { EgressMessage } from '@peony/protocol'
import type { SessionOptions } from '@peony/worker/host'
import type { StorageSupports } from '@peony/storage'

/** Session settings without the storage (the worker builds a RemoteStorage to the storage thread). */
export type SessionSettings = Omit<SessionOptions, 'storage'>

/** Which storage the storage thread opens. */
export type StorageConfig =
  | { driver: 'memory' }
  | { driver: 'leveldb'; location: string; writeBufferSize?: number | undefined; fenceCacheSize?: number | undefined }
  | { driver: 'redis'; url?: string | undefined; prefix?: string | undefined }
  /** A module whose default export is a factory `(options) => AbstractStorage` (a third-party driver). */
  | { driver: 'module'; module: string; options?: unknown }

/** What the master passes to the storage thread as `workerData`. */
export interface StorageBoot {
  config: StorageConfig
}

export type ToStorage = { t: 'serve'; port: MessagePort } | { t: 'close' }

export type FromStorage =
  | { t: 'ready'; supports: StorageSupports }
  | { t: 'fatal'; code?: string | undefined; message: string; stack?: string | undefined; cause?: string | undefined }
  | { t: 'closed'; error?: string | undefined }
  /** Something the operator must hear (a storage that lost its data): the master logs it as a warning. */
  | { t: 'warn'; code: string; message: string }

export const HEARTBEAT_MS = 100

/** What the master passes to a worker thread as `workerData`: enough to load the app. */
export interface ThreadBoot {
  appModule: string
  /** pino level name of the master's logger; worker threads log at the same level. */
  logLevel: string
}

/** Assigns a loaded thread to a worker slot. */
export interface Assignment {
  slot: number
  groupId: number | string
  index: number
  serverId: string
  generation: number
  /** This worker's channel to the egress thread: it posts `EgressPost` batches. */
  egressPort: MessagePort
  /** This incarnation's egress journal (egress-journal.ts), also handed to the egress thread with the port. */
  journal: SharedArrayBuffer
  workTimeoutMs: number
  sab: SharedArrayBuffer
  markMask: number
  /** This worker's channel to the storage thread (a RemoteStorage's port); absent without storage. */
  storagePort?: MessagePort | undefined
  /** Write-behind and eviction settings of the app's sessions. */
  sessions?: SessionSettings | undefined
}

export type ToWorker =
  | { t: 'assign'; assignment: Assignment }
  | { t: 'tasks'; buf: ArrayBuffer; ids: Int32Array }
  | { t: 'stop' }
  | { t: 'egress'; port: MessagePort }

export type FromWorker =
  | { t: 'loaded' }
  | { t: 'ready' }
  | { t: 'done'; ids: Int32Array }
  | { t: 'stopped'; stats: Record<string, unknown> }
  | { t: 'fatal'; message: string; stack?: string | undefined }
  | { t: 'stats'; stats: Record<string, unknown> }

/** What the master passes to the egress thread as `workerData`. */
export interface EgressBoot {
  forwarderEndpoint: string
  sender: string
  egressAck: boolean
  egressBufferMax: number
  maxFrameBytes: number
  /** pino level name of the master's logger; the egress thread logs its errors at the same level. */
  logLevel: string
}

/**
 * Egress from a worker, in order: the journal's contents as one buffer (its §2.1 maps and their
 * ends, `JournalWriter.frame()`), numbered 1, 2, … per journal (see egress-journal.ts); or, with
 * seq 0, a message the journal could not take, as an object.
 */
export type EgressPost = { seq: number; frame: ArrayBuffer; batch?: undefined } | { seq: 0; batch: EgressMessage[]; frame?: undefined }

export type ToEgress = { t: 'port'; slot: number; port: MessagePort; journal: SharedArrayBuffer } | { t: 'close'; lingerMs: number }

export type FromEgress = { t: 'ready' } | { t: 'closed'; stats: Record<string, unknown> } | { t: 'stats'; stats: Record<string, unknown> }

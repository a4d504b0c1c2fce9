/**
 * The master's two I/O threads and their channels: the egress thread (the one owner of the
 * workers' DEALER to the forwarder) and the storage thread (opens the configured storage and
 * serves it to each worker over that worker's own port). Channel ends made before a thread
 * exists wait here and are handed over when it starts.
 */
import { randomBytes } from 'node:crypto'
import { MessageChannel, type MessagePort, type Worker } from 'node:worker_threads'
import type { Logger } from 'pino'
import { PeonyError } from '@peony/protocol'
import { MasterErrorCode } from './errors.ts'
import type { MasterOptions } from './options.ts'
import type { Slot } from './slot.ts'
import { handOver, startThread } from './start-thread.ts'
import type { EgressBoot, FromEgress, FromStorage, StorageBoot, ToEgress, ToStorage, ToWorker } from './thread/messages.ts'

export type StorageState = 'none' | 'opening' | 'open' | 'closing' | 'closed' | 'failed'

export class IoThreads {
  egressThread: Worker | undefined
  /** Worker ends of channels made before the egress / storage thread existed: handed over when it starts. */
  private pendingEgressPorts: { slot: number; port: MessagePort; journal: SharedArrayBuffer }[] = []
  private pendingStoragePorts: MessagePort[] = []
  private storageThread: Worker | undefined
  private storageExited: Promise<void> = Promise.resolve()
  storageState: StorageState = 'none'
  private egressExited: Promise<void> = Promise.resolve()
  private egressClosing = false
  /** The egress thread's sender counters, as last reported. */
  egressStats: Record<string, unknown> = {}

  private readonly options: MasterOptions
  private readonly log: Logger
  private readonly slots: Slot[]

  constructor(options: MasterOptions, log: Logger, slots: Slot[]) {
    this.options = options
    this.log = log
    this.slots = slots
  }

  // ───────────────────────────── storage ─────────────────────────────

  /**
   * Starts the storage thread when `options.storage` is set: it opens the storage and serves
   * it to each worker over that worker's own port. Resolves when the storage is open.
   */
  spawnStorageThread(): Promise<void> {
    const config = this.options.storage
    if (config === undefined) return Promise.resolve()
    const t = startThread('storage-main', { config } satisfies StorageBoot, [], { name: 'peony-storage' }, false)
    this.storageThread = t
    this.storageState = 'opening'
    for (const port of this.pendingStoragePorts.splice(0)) handOver(() => t.postMessage({ t: 'serve', port } satisfies ToStorage, [port]))
    let onExit!: () => void
    this.storageExited = new Promise((r) => (onExit = r))
    return new Promise<void>((resolve, reject) => {
      t.on('message', (m: FromStorage) => {
        if (m.t === 'ready') {
          this.storageState = 'open'
          this.log.debug({ driver: config.driver, supports: m.supports }, 'storage open')
          resolve()
        } else if (m.t === 'fatal') {
          this.storageState = 'failed'
          reject(
            new PeonyError(
              MasterErrorCode.STORAGE_OPEN_FAILED,
              `the ${config.driver} storage could not be opened: ${m.code ?? ''} ${m.message}`.replace('  ', ' '),
              {
                cause: Object.assign(new Error(m.message, m.cause === undefined ? undefined : { cause: new Error(m.cause) }), { code: m.code }),
              },
            ),
          )
        } else if (m.t === 'closed') {
          if (m.error !== undefined) this.log.error({ err: m.error }, 'storage close failed')
        } else if (m.t === 'warn') {
          this.log.warn({ code: m.code }, m.message)
        }
      })
      t.on('error', (err) => {
        this.log.error({ err }, 'storage thread error')
        reject(err)
      })
      t.on('exit', (code) => {
        onExit()
        if (this.storageThread !== t) return
        this.storageThread = undefined
        if (this.storageState === 'closing') {
          this.storageState = 'closed'
          return
        }
        this.storageState = 'failed'
        // No application code runs there; a death is a driver bug. Sessions keep their dirty
        // state and retry (PEONY_STORAGE_CLOSED is retryable) until the server is restarted.
        this.log.error({ code }, 'storage thread died: session loads and flushes fail until restart')
        reject(new Error(`storage thread exited with code ${code}`))
      })
    })
  }

  /** Asks the storage thread to close the storage; terminates it after `ms`. */
  async closeStorageThread(ms: number): Promise<void> {
    const t = this.storageThread
    if (t === undefined) return
    this.storageState = 'closing'
    t.postMessage({ t: 'close' } satisfies ToStorage)
    const timer = setTimeout(() => {
      this.log.warn('storage did not close in time; terminating its thread')
      void t.terminate()
    }, ms)
    await this.storageExited
    clearTimeout(timer)
  }

  /** A new channel between a worker and the storage thread; returns the worker's end. */
  storageChannel(): MessagePort | undefined {
    if (this.options.storage === undefined) return undefined
    const t = this.storageThread
    if (t === undefined && this.storageState !== 'none') return undefined
    const { port1, port2 } = new MessageChannel()
    if (t === undefined) this.pendingStoragePorts.push(port1)
    else t.postMessage({ t: 'serve', port: port1 } satisfies ToStorage, [port1])
    return port2
  }

  // ───────────────────────────── egress ─────────────────────────────

  /** Starts the egress thread (the one owner of the workers' DEALER to the forwarder). */
  spawnEgressThread(): Promise<void> {
    const o = this.options
    const boot: EgressBoot = {
      forwarderEndpoint: o.forwarderEndpoint,
      sender: `${o.serverId}/egress.${randomBytes(4).toString('hex')}`,
      egressAck: o.egressAck,
      egressBufferMax: o.egressBufferMax,
      maxFrameBytes: o.maxFrameBytes,
      logLevel: this.log.level,
    }
    const t = startThread('egress-main', boot, [], { name: 'peony-egress' }, false)
    this.egressThread = t
    for (const { slot, port, journal } of this.pendingEgressPorts.splice(0))
      handOver(() => t.postMessage({ t: 'port', slot, port, journal } satisfies ToEgress, [port]))
    let onExit!: () => void
    this.egressExited = new Promise((r) => (onExit = r))
    return new Promise<void>((resolve, reject) => {
      t.on('message', (m: FromEgress) => {
        if (m.t === 'ready') resolve()
        else if (m.t === 'closed' || m.t === 'stats') this.egressStats = { ...this.egressStats, ...m.stats }
      })
      t.on('error', (err) => {
        this.log.error({ err }, 'egress thread error')
        reject(err)
      })
      t.on('exit', (code) => {
        onExit()
        if (this.egressThread !== t) return
        this.egressThread = undefined
        if (this.egressClosing) return
        // Should never happen (no application code runs there); recover all the same.
        this.log.error({ code }, 'egress thread died: restarting it and reconnecting the workers')
        reject(new Error(`egress thread exited with code ${code}`))
        this.spawnEgressThread()
          .then(() => {
            for (const slot of this.slots) {
              if (slot.worker === undefined) continue
              const port = this.egressChannel(slot)
              slot.worker.postMessage({ t: 'egress', port } satisfies ToWorker, [port])
            }
          })
          .catch((err: unknown) => this.log.error({ err }, 'egress thread restart failed'))
      })
    })
  }

  /** A new channel between a worker slot and the egress thread; returns the worker's end. */
  egressChannel(slot: Slot): MessagePort {
    const { port1, port2 } = new MessageChannel()
    if (this.egressThread === undefined) this.pendingEgressPorts.push({ slot: slot.index, port: port1, journal: slot.journal })
    else this.egressThread.postMessage({ t: 'port', slot: slot.index, port: port1, journal: slot.journal } satisfies ToEgress, [port1])
    slot.egressPort = port2
    return port2
  }

  /**
   * Closes the egress thread: it drains for `lingerMs`, and is terminated only after
   * `terminateAfterMs`, because zeromq.js aborts the process when a thread holding sockets is
   * torn down. From here on its exit is not a death.
   */
  async closeEgressThread(lingerMs: number, terminateAfterMs: number): Promise<void> {
    this.egressClosing = true
    const et = this.egressThread
    if (et === undefined) return
    et.postMessage({ t: 'close', lingerMs } satisfies ToEgress)
    const timer = setTimeout(() => void et.terminate(), terminateAfterMs)
    await this.egressExited
    clearTimeout(timer)
  }

  /** Closes the channel ends no thread took (a start that failed before the I/O threads started). */
  closePendingPorts(): void {
    for (const { port } of this.pendingEgressPorts.splice(0)) port.close()
    for (const port of this.pendingStoragePorts.splice(0)) port.close()
  }
}

/**
 * RemoteStorage: a storage whose every call goes over a MessagePort to a serveStorage on the
 * other end (typically the process's storage host thread). Bulk data crosses as one transferred
 * ArrayBuffer per call (see codec.ts). When the port closes (the host stopped serving, or its
 * thread died), pending and later calls reject with PEONY_STORAGE_CLOSED.
 *
 * The port is referenced only while calls are pending, so an idle RemoteStorage never keeps its
 * thread alive. close() does not close the port: the port belongs to whoever created it.
 */
import type { MessagePort } from 'node:worker_threads'
import { StorageError, StorageErrorCode } from '../errors.ts'
import { AbstractStorage, type AbstractStorageOptions, type BatchOp, type ClaimResult, type FencedResult, type FencedWrite } from '../storage.ts'
import {
  type Hello,
  type PackedValues,
  type Request,
  type Response,
  fromWireError,
  keepSpare,
  ownBuffer,
  packKeys,
  packOps,
  packWrites,
  transferOf,
  unpackValues,
} from './codec.ts'

/** Options of {@link RemoteStorage}. */
export interface RemoteStorageOptions extends AbstractStorageOptions {
  /**
   * A call with no answer after this long rejects with PEONY_STORAGE_UNAVAILABLE (retryable; the
   * host may still apply it later). Also bounds open()'s check that the host answers.
   * Default 30,000 ms; `Infinity` for none.
   */
  opTimeoutMs?: number | undefined
}

type Pending = { resolve: (r: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout | undefined }
/** A request before it gets its id. */
type Call = WithoutId<Request>
type WithoutId<R> = R extends unknown ? Omit<R, 'i'> : never

/**
 * A storage served by `serveStorage` at the other end of a MessagePort. `supports` becomes the
 * host storage's when open() resolves. A `prefix` here is applied before the host's own.
 */
export class RemoteStorage extends AbstractStorage {
  readonly #port: MessagePort
  readonly #timeoutMs: number
  readonly #pending = new Map<number, Pending>()
  #nextId = 1
  /** The port closed: every call fails with CLOSED from now on. */
  #portClosed = false
  #listening = false
  /** Values buffers the host handed back after successful writes, to pack later writes into (codec.ts). */
  readonly #spare: ArrayBuffer[] = []

  constructor(port: MessagePort, options: RemoteStorageOptions = {}) {
    if (typeof port?.postMessage !== 'function' || typeof port.on !== 'function') throw new TypeError('RemoteStorage needs a MessagePort')
    super({ persistent: false, shared: false, atomicBatch: false, fencing: true }, options)
    const t = options.opTimeoutMs ?? 30_000
    if (typeof t !== 'number' || !(t > 0)) throw new RangeError('opTimeoutMs must be a positive number (or Infinity)')
    this.#port = port
    this.#timeoutMs = t
    // A 'close' listener neither starts nor references the port.
    port.on('close', this.#onClose)
  }

  protected async _open(): Promise<void> {
    if (this.#portClosed) throw this.#closedError()
    if (!this.#listening) {
      this.#port.on('message', this.#onMessage)
      this.#listening = true
      this.#port.unref()
    }
    try {
      const hello = (await this.#call({ op: 'hello' })) as Hello
      Object.assign(this.supports, hello.supports)
    } catch (err) {
      this.#stopListening()
      throw err
    }
  }

  protected async _close(): Promise<void> {
    this.#stopListening()
    this.#spare.length = 0
  }

  protected async _get(key: string): Promise<Uint8Array | undefined> {
    const r = (await this.#call({ op: 'get', key })) as ArrayBuffer | null
    return r === null ? undefined : new Uint8Array(r)
  }

  protected async _getMany(keys: readonly string[]): Promise<(Uint8Array | undefined)[]> {
    return unpackValues((await this.#call({ op: 'getMany', keys: packKeys(keys) })) as PackedValues)
  }

  protected async _put(key: string, value: Uint8Array): Promise<void> {
    const b = ownBuffer(value)
    await this.#call({ op: 'put', key, value: b }, [b])
  }

  protected async _del(key: string): Promise<void> {
    await this.#call({ op: 'del', key })
  }

  protected async _batch(ops: readonly BatchOp[]): Promise<void> {
    const packed = packOps(ops, this.#spare)
    await this.#call({ op: 'batch', ops: packed }, transferOf(packed))
  }

  protected async _acquire(fence: string): Promise<number> {
    return (await this.#call({ op: 'acquire', fence })) as number
  }

  protected override async _claim(fence: string, keys: readonly string[]): Promise<ClaimResult> {
    const r = (await this.#call({ op: 'claim', fence, keys: packKeys(keys) })) as { generation: number; values: PackedValues; handle?: number }
    return { generation: r.generation, values: unpackValues(r.values), handle: r.handle }
  }

  protected async _writeFenced(writes: readonly FencedWrite[]): Promise<FencedResult> {
    const p = packWrites(writes, this.#spare)
    return (await this.#call({ op: 'writeFenced', ...p }, [
      p.gens.buffer as ArrayBuffer,
      p.handles.buffer as ArrayBuffer,
      p.counts.buffer as ArrayBuffer,
      ...transferOf(p.ops),
    ])) as FencedResult
  }

  #call(req: Call, transfer: ArrayBuffer[] = []): Promise<unknown> {
    if (this.#portClosed) return Promise.reject(this.#closedError(true))
    const i = this.#nextId++
    return new Promise((resolve, reject) => {
      const timer = Number.isFinite(this.#timeoutMs)
        ? setTimeout(() => {
            if (this.#settle(i) === undefined) return
            reject(new StorageError(StorageErrorCode.UNAVAILABLE, `remote storage did not answer ${req.op} within ${this.#timeoutMs} ms`))
          }, this.#timeoutMs)
        : undefined
      if (this.#pending.size === 0) this.#port.ref()
      this.#pending.set(i, { resolve, reject, timer })
      try {
        this.#port.postMessage({ ...req, i }, transfer)
      } catch (err) {
        this.#settle(i)
        reject(err instanceof Error ? err : new Error(String(err)))
      }
    })
  }

  /** Forgets call `i` (returns it, or undefined if already settled). */
  #settle(i: number): Pending | undefined {
    const p = this.#pending.get(i)
    if (p === undefined) return undefined
    this.#pending.delete(i)
    if (p.timer !== undefined) clearTimeout(p.timer)
    if (this.#pending.size === 0 && this.#listening) this.#port.unref()
    return p
  }

  readonly #onMessage = (res: Response): void => {
    const p = this.#settle(res.i)
    if (p === undefined) return
    if (res.ok) {
      if (res.b !== undefined) keepSpare(this.#spare, res.b)
      p.resolve(res.r)
    } else p.reject(fromWireError(res.e))
  }

  readonly #onClose = (): void => {
    this.#portClosed = true
    const err = this.#closedError()
    for (const i of [...this.#pending.keys()]) this.#settle(i)?.reject(err)
    this.#stopListening()
  }

  #stopListening(): void {
    if (!this.#listening) return
    this.#listening = false
    this.#port.off('message', this.#onMessage)
    this.#port.unref()
  }

  /** `notSent`: the call was made after the port closed (it changed nothing); pending calls may have been applied. */
  #closedError(notSent = false): StorageError {
    return new StorageError(StorageErrorCode.CLOSED, 'the remote storage host went away (its port closed)', { notApplied: notSent })
  }
}

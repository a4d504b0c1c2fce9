/**
 * AbstractStorage: the storage contract, Level style. The public methods validate their
 * arguments, check `status`, apply the key prefix and track in-flight calls; then they call the
 * protected `_methods` a driver implements, which always receive normalized arguments (valid,
 * prefixed keys; Uint8Array values; ops checked against their fence's scope). See README.md,
 * "Writing a driver".
 */
import { StorageError, StorageErrorCode, toStorageError } from './errors.ts'
import { checkArray, checkKey, checkKeys, checkOp, checkPrefix, checkValue, checkWrite } from './internal/validate.ts'

/** Where a storage is in its life. A new storage is `'closed'`; `open()` goes through `'opening'`. */
export type StorageStatus = 'opening' | 'open' | 'closing' | 'closed'

/** What a driver can do, declared at construction and readable as `storage.supports`. */
export interface StorageSupports {
  /** Data survives a process restart (memory: false). */
  persistent: boolean
  /** Several processes may use the same data at once (redis: true). */
  shared: boolean
  /** batch() lands all-or-nothing. */
  atomicBatch: boolean
  /** Every driver implements acquire/writeFenced. */
  fencing: true
}

/** One operation of a batch: put a value, or delete a key. */
export type BatchOp = { type: 'put'; key: string; value: Uint8Array } | { type: 'del'; key: string }

/** A write guarded by a fence: applied only while `generation` is the fence's current generation. */
export interface FencedWrite {
  /** The fence key (one per session). */
  fence: string
  /** The writer's generation, as returned by acquire(fence). */
  generation: number
  /** Applied only if `generation` is still the fence's current generation. */
  ops: BatchOp[]
  /**
   * The `handle` of the claim that returned `generation`, if the driver gave one: a hint that lets
   * the driver find the fence without looking its key up. A stale or wrong handle changes nothing
   * but the speed (the driver checks that it names `fence`).
   */
  handle?: number | undefined
}

/** What writeFenced() reports. */
export interface FencedResult {
  /** Indexes (into the writes array) of the writes refused because their generation is not current. */
  refused: number[]
}

/** What claim() resolves with. */
export interface ClaimResult {
  /** The new generation of the fence (as acquire() returns it). */
  generation: number
  /** The values of the claimed keys, in order; `undefined` for a missing key. */
  values: (Uint8Array | undefined)[]
  /**
   * A driver's handle for the fence (LevelStorage: the index of its cache entry), to pass as
   * `FencedWrite.handle` with writes under this generation; undefined when the driver has none.
   */
  handle?: number | undefined
}

/**
 * The public calls of a storage without their argument checks (status, prefix and in-flight
 * tracking still apply). For serveStorage, whose RemoteStorage client checked the arguments
 * already: a client's own prefix may make a key longer than 1024 bytes, which is fine.
 * Internal: not exported from the package.
 */
export type UncheckedCalls = Pick<AbstractStorage, 'get' | 'getMany' | 'put' | 'del' | 'batch' | 'acquire' | 'claim' | 'writeFenced'>
export let uncheckedCalls: (storage: AbstractStorage) => UncheckedCalls

/** Options every driver accepts. */
export interface AbstractStorageOptions {
  /**
   * Prepended to every key and fence before the driver sees it, so several users can share one
   * backend without seeing each other's keys. Must not contain '\0'. Default ''.
   */
  prefix?: string | undefined
}

/**
 * The storage contract. Subclasses implement the protected `_methods`; users call the public ones.
 *
 * Calls made while the storage is not `'open'` (including during `'opening'` and `'closing'`)
 * reject with `PEONY_STORAGE_NOT_OPEN`; they are not deferred. `close()` waits for the calls
 * already in flight.
 */
export abstract class AbstractStorage {
  /** What this driver can do. */
  readonly supports: StorageSupports
  readonly #prefix: string
  #status: StorageStatus = 'closed'
  /** The driver's _open() succeeded and its _close() has not run yet. */
  #driverOpen = false
  /** The tail of the open/close queue: one transition at a time, in call order. */
  #transitions: Promise<void> = Promise.resolve()
  #inflight = 0
  #idle: (() => void) | undefined

  constructor(supports: StorageSupports, options: AbstractStorageOptions = {}) {
    this.supports = { ...supports }
    const prefix = options.prefix ?? ''
    checkPrefix(prefix)
    this.#prefix = prefix
  }

  /** Where this storage is in its life. */
  get status(): StorageStatus {
    return this.#status
  }

  /** The prefix prepended to every key and fence ('' for none). */
  get prefix(): string {
    return this.#prefix
  }

  /**
   * Opens the storage. Idempotent: resolves at once when open, joins a pending open, and waits
   * for a pending close before opening again (a closed storage may be reopened). A failed open
   * leaves the storage `'closed'` and rejects with the driver's error (`PEONY_STORAGE_LOCKED`,
   * `PEONY_STORAGE_UNAVAILABLE`, …).
   */
  open(): Promise<void> {
    if (this.#status === 'closed') this.#status = 'opening'
    return this.#transition(async () => {
      if (this.#driverOpen) {
        this.#status = 'open'
        return
      }
      this.#status = 'opening'
      try {
        await this._open()
      } catch (err) {
        this.#status = 'closed'
        throw toStorageError(err, 'open')
      }
      this.#driverOpen = true
      this.#status = 'open'
    })
  }

  /**
   * Closes the storage. Idempotent. New calls are refused (`PEONY_STORAGE_NOT_OPEN`) from the
   * moment it is called; calls already in flight are awaited, then the driver closes.
   */
  close(): Promise<void> {
    if (this.#status === 'open') this.#status = 'closing'
    return this.#transition(async () => {
      if (!this.#driverOpen) {
        this.#status = 'closed'
        return
      }
      this.#status = 'closing'
      if (this.#inflight > 0) await new Promise<void>((resolve) => (this.#idle = resolve))
      try {
        await this._close()
      } catch (err) {
        throw toStorageError(err, 'close')
      } finally {
        this.#driverOpen = false
        this.#status = 'closed'
      }
    })
  }

  /** Closes the storage (for `await using`). */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close()
  }

  /** The value of `key`, or undefined when there is none. */
  async get(key: string): Promise<Uint8Array | undefined> {
    checkKey(key)
    return this.#get(key)
  }

  /** The values of `keys`, in order; `undefined` for a missing key. */
  async getMany(keys: readonly string[]): Promise<(Uint8Array | undefined)[]> {
    checkKeys(keys)
    return this.#getMany(keys)
  }

  /** Stores `value` under `key`. */
  async put(key: string, value: Uint8Array): Promise<void> {
    checkKey(key)
    checkValue(value)
    return this.#put(key, value)
  }

  /** Deletes `key` (a missing key is not an error). */
  async del(key: string): Promise<void> {
    checkKey(key)
    return this.#del(key)
  }

  /**
   * Applies `ops` in order. All-or-nothing when `supports.atomicBatch`. Every op is checked
   * before any is applied: one bad key or value rejects the whole call and changes nothing.
   */
  async batch(ops: readonly BatchOp[]): Promise<void> {
    checkArray(ops, 'ops')
    for (const op of ops) checkOp(op)
    return this.#batch(ops)
  }

  /**
   * Atomically increments the fence's generation and returns the new one: a positive safe integer
   * (the first is 1 on Memory and LevelDB; Redis starts a fence at its clock in µs). Calls of one
   * fence get their generations in call order. Persistent drivers persist it.
   */
  async acquire(fence: string): Promise<number> {
    checkKey(fence, 'fence')
    return this.#acquire(fence)
  }

  /**
   * acquire(fence) then getMany(keys), in that order (a write fenced off by this acquire is never
   * read). One round trip where the driver can.
   */
  async claim(fence: string, keys: readonly string[]): Promise<ClaimResult> {
    checkKey(fence, 'fence')
    checkKeys(keys)
    return this.#claim(fence, keys)
  }

  /**
   * Applies each write whose generation is the fence's current one and refuses the others (a
   * refusal is reported in `refused`, not thrown). Check and apply are atomic per write, and the
   * writes of one fence are applied in call order. Every write is checked before any is applied:
   * a bad key, value, generation or an op outside its fence's scope rejects the whole call and
   * changes nothing.
   */
  async writeFenced(writes: readonly FencedWrite[]): Promise<FencedResult> {
    checkArray(writes, 'writes')
    for (const w of writes) checkWrite(w)
    return this.#writeFenced(writes)
  }

  // ── The calls after their argument checks: status, prefix, in-flight tracking, error wrapping. ──

  async #get(key: string): Promise<Uint8Array | undefined> {
    this.#enter()
    try {
      return await this._get(this.#prefix + key)
    } catch (err) {
      throw toStorageError(err, 'get')
    } finally {
      this.#leave()
    }
  }

  async #getMany(keys: readonly string[]): Promise<(Uint8Array | undefined)[]> {
    this.#enter()
    try {
      return keys.length === 0 ? [] : await this._getMany(this.#prefixKeys(keys))
    } catch (err) {
      throw toStorageError(err, 'getMany')
    } finally {
      this.#leave()
    }
  }

  async #put(key: string, value: Uint8Array): Promise<void> {
    this.#enter()
    try {
      await this._put(this.#prefix + key, value)
    } catch (err) {
      throw toStorageError(err, 'put')
    } finally {
      this.#leave()
    }
  }

  async #del(key: string): Promise<void> {
    this.#enter()
    try {
      await this._del(this.#prefix + key)
    } catch (err) {
      throw toStorageError(err, 'del')
    } finally {
      this.#leave()
    }
  }

  async #batch(ops: readonly BatchOp[]): Promise<void> {
    this.#enter()
    try {
      if (ops.length > 0) await this._batch(this.#prefix === '' ? ops : ops.map((op) => this.#prefixOp(op)))
    } catch (err) {
      throw toStorageError(err, 'batch')
    } finally {
      this.#leave()
    }
  }

  async #acquire(fence: string): Promise<number> {
    this.#enter()
    try {
      return await this._acquire(this.#prefix + fence)
    } catch (err) {
      throw toStorageError(err, 'acquire')
    } finally {
      this.#leave()
    }
  }

  async #claim(fence: string, keys: readonly string[]): Promise<ClaimResult> {
    this.#enter()
    try {
      return await this._claim(this.#prefix + fence, this.#prefixKeys(keys))
    } catch (err) {
      throw toStorageError(err, 'claim')
    } finally {
      this.#leave()
    }
  }

  async #writeFenced(writes: readonly FencedWrite[]): Promise<FencedResult> {
    this.#enter()
    try {
      if (writes.length === 0) return { refused: [] }
      const p = this.#prefix
      const normalized =
        p === '' ? writes : writes.map((w) => ({ fence: p + w.fence, generation: w.generation, ops: w.ops.map((op) => this.#prefixOp(op)), handle: w.handle }))
      return await this._writeFenced(normalized)
    } catch (err) {
      throw toStorageError(err, 'writeFenced')
    } finally {
      this.#leave()
    }
  }

  static {
    uncheckedCalls = (s) => ({
      get: (key) => s.#get(key),
      getMany: (keys) => s.#getMany(keys),
      put: (key, value) => s.#put(key, value),
      del: (key) => s.#del(key),
      batch: (ops) => s.#batch(ops),
      acquire: (fence) => s.#acquire(fence),
      claim: (fence, keys) => s.#claim(fence, keys),
      writeFenced: (writes) => s.#writeFenced(writes),
    })
  }

  // ── The driver's part. Every key and fence is valid and already prefixed. ──

  /** Opens the backend. Called with status `'opening'`; throw to fail the open. */
  protected abstract _open(): Promise<void>
  /** Closes the backend. Called with status `'closing'`, after every in-flight call settled. */
  protected abstract _close(): Promise<void>
  /** The value of a key, or undefined. Must return a Uint8Array the caller may keep and mutate. */
  protected abstract _get(key: string): Promise<Uint8Array | undefined>
  /** The values of a non-empty list of keys. */
  protected abstract _getMany(keys: readonly string[]): Promise<(Uint8Array | undefined)[]>
  /** Stores a value. The value may be mutated by the caller once the promise settles. */
  protected abstract _put(key: string, value: Uint8Array): Promise<void>
  /** Deletes a key. */
  protected abstract _del(key: string): Promise<void>
  /** Applies a non-empty list of checked ops, in order. */
  protected abstract _batch(ops: readonly BatchOp[]): Promise<void>
  /**
   * Increments and returns a fence's generation (a positive safe integer; 1 for a new fence unless
   * the driver has a reason to start higher), in a keyspace get() cannot see. Generations of one
   * fence must be taken in call order, however long the driver's reads take.
   */
  protected abstract _acquire(fence: string): Promise<number>
  /** Applies the writes whose generation is current; returns the indexes of the others. */
  protected abstract _writeFenced(writes: readonly FencedWrite[]): Promise<FencedResult>

  /**
   * acquire then getMany. The default is `_acquire` followed by `_getMany`; a driver that can do
   * both in one round trip overrides it. Either way no write fenced off by this acquire may be
   * read, and a write accepted before it must be.
   */
  protected async _claim(fence: string, keys: readonly string[]): Promise<ClaimResult> {
    const generation = await this._acquire(fence)
    const values = keys.length === 0 ? [] : await this._getMany(keys)
    return { generation, values }
  }

  // ── internals ──

  #transition(step: () => Promise<void>): Promise<void> {
    const p = this.#transitions.then(step)
    this.#transitions = p.catch(() => undefined)
    return p
  }

  #enter(): void {
    if (this.#status !== 'open') {
      throw new StorageError(StorageErrorCode.NOT_OPEN, `storage is ${this.#status}, not open`)
    }
    this.#inflight++
  }

  #leave(): void {
    if (--this.#inflight === 0 && this.#idle !== undefined) {
      const idle = this.#idle
      this.#idle = undefined
      idle()
    }
  }

  #prefixKeys(keys: readonly string[]): readonly string[] {
    const p = this.#prefix
    return p === '' ? keys : keys.map((k) => p + k)
  }

  #prefixOp(op: BatchOp): BatchOp {
    return op.type === 'put' ? { type: 'put', key: this.#prefix + op.key, value: op.value } : { type: 'del', key: this.#prefix + op.key }
  }
}

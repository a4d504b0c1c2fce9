/**
 * LevelStorage: a LevelDB directory through classic-level 3. One process (and within it one
 * handle) may open a directory at a time, so in Peony one storage host thread opens it and serves
 * the worker threads with `serveStorage` (see `@peony/storage/remote`).
 *
 * Fence generations live under keys that start with '\0' (user keys cannot contain '\0', so get()
 * never sees them). They are cached in memory after the first read; the cache is authoritative
 * because this handle is the only writer. A new generation is persisted before acquire() resolves
 * (concurrent acquires share one LevelDB batch), so a restarted host never hands out a
 * generation a live owner already holds.
 *
 * classic-level is imported when the storage opens, so importing this module loads no addon.
 */
import type { ClassicLevel } from 'classic-level'
import { StorageError, StorageErrorCode } from '../errors.ts'
import { AbstractStorage, type AbstractStorageOptions, type BatchOp, type ClaimResult, type FencedResult, type FencedWrite } from '../storage.ts'

/** Options of {@link LevelStorage}. */
export interface LevelStorageOptions extends AbstractStorageOptions {
  /** The LevelDB directory (created if missing). */
  location: string
  /**
   * LevelDB's write buffer (memtable) size in bytes. Default 4 MiB, LevelDB's own default. Larger
   * buffers absorb bigger write bursts before a compaction, at the cost of memory and a longer
   * recovery after a crash.
   */
  writeBufferSize?: number | undefined
  /**
   * Read with LevelDB's synchronous get (`getSync`) on the calling thread instead of a trip
   * through libuv's thread pool: one thread hand-off less per read (measured on an idle 2-core
   * VM: a get through RemoteStorage p50 104 → 88 µs, p99 197 → 160 µs). But a read that goes to
   * disk blocks the thread, and reads no longer run in parallel. Meant for a storage host thread
   * that does nothing else. Default false.
   */
  readSync?: boolean | undefined
}

type Db = ClassicLevel<string, Uint8Array>

/** Internal keyspace of fence generations ('\0' never starts a user key). */
const FENCE = '\0fence\0'
/** A db.batch() of fenced writes gets at most this many ops or… */
const CHUNK_OPS = 1000
/** …about this many value bytes; a bigger call is split into several batches (each write stays whole). */
const CHUNK_BYTES = 1 << 20

const loadClassicLevel = () => import('classic-level')
let classicLevel: ReturnType<typeof loadClassicLevel> | undefined

/** A storage in a LevelDB directory. supports: persistent, not shared, atomic batches. */
export class LevelStorage extends AbstractStorage {
  /** The LevelDB directory. */
  readonly location: string
  readonly #writeBufferSize: number | undefined
  readonly #readSync: boolean
  #db: Db | undefined
  /** fence → current generation, for every fence read or acquired since open. */
  #gens = new Map<string, number>()
  /** Fences whose cached generation the next generation batch must write. */
  #dirty = new Set<string>()
  /** The generation batch in flight, and the one that will carry the current #dirty. */
  #genWrite: Promise<void> | undefined
  #genNext: Promise<void> | undefined
  /**
   * fence → the last db.batch that carries an accepted write of that fence: in flight while it is
   * in #live (a landed one may linger until no batch is in flight; waiting for it costs nothing).
   */
  #writing = new Map<string, Promise<unknown>>()
  /** The db.batch calls of fenced writes in flight. */
  readonly #live = new Set<Promise<unknown>>()
  /** The last writeFenced still reading generations before its check. */
  #gate: Promise<void> | undefined

  constructor(options: LevelStorageOptions) {
    if (typeof options !== 'object' || options === null || typeof options.location !== 'string' || options.location.length === 0) {
      throw new TypeError('LevelStorage needs options.location, a directory path')
    }
    const wbs = options.writeBufferSize
    if (wbs !== undefined && (!Number.isSafeInteger(wbs) || wbs < 64 * 1024)) throw new RangeError('writeBufferSize must be an integer ≥ 65536')
    super({ persistent: true, shared: false, atomicBatch: true, fencing: true }, options)
    this.location = options.location
    this.#writeBufferSize = wbs
    this.#readSync = options.readSync === true
  }

  protected async _open(): Promise<void> {
    const { ClassicLevel } = await (classicLevel ??= loadClassicLevel())
    const db: Db = new ClassicLevel<string, Uint8Array>(this.location, {
      keyEncoding: 'utf8',
      valueEncoding: 'view',
      ...(this.#writeBufferSize === undefined ? {} : { writeBufferSize: this.#writeBufferSize }),
    })
    try {
      await db.open()
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause
      if (cause?.code === 'LEVEL_LOCKED') {
        throw new StorageError(StorageErrorCode.LOCKED, `LevelDB directory ${this.location} is locked by another process or handle`, { cause: err })
      }
      throw new StorageError(StorageErrorCode.FAILED, `could not open the LevelDB directory ${this.location} (the driver's error is the cause)`, { cause: err })
    }
    this.#db = db
  }

  protected async _close(): Promise<void> {
    const db = this.#db
    if (db === undefined) return
    try {
      while (this.#genNext !== undefined || this.#genWrite !== undefined) await (this.#genNext ?? this.#genWrite)?.catch(() => undefined)
      await db.close()
    } finally {
      this.#db = undefined
      this.#gens.clear()
      this.#dirty.clear()
      this.#writing.clear()
      this.#live.clear()
    }
  }

  protected async _get(key: string): Promise<Uint8Array | undefined> {
    const db = this.#open()
    return this.#readSync ? db.getSync(key) : db.get(key)
  }

  protected _getMany(keys: readonly string[]): Promise<(Uint8Array | undefined)[]> {
    return this.#read(this.#open(), keys)
  }

  protected _put(key: string, value: Uint8Array): Promise<void> {
    return this.#open().put(key, value)
  }

  protected _del(key: string): Promise<void> {
    return this.#open().del(key)
  }

  protected _batch(ops: readonly BatchOp[]): Promise<void> {
    return this.#open().batch(ops as BatchOp[])
  }

  protected async _acquire(fence: string): Promise<number> {
    if (!this.#gens.has(fence)) await this.#load([fence])
    const g = this.#bump(fence)
    await this.#persistGens()
    return g
  }

  protected override async _claim(fence: string, keys: readonly string[]): Promise<ClaimResult> {
    const db = this.#open()
    if (!this.#gens.has(fence)) {
      // One read for the generation and the values. No write of this fence can have been accepted
      // before the generation was cached, so the values are current unless someone cached it meanwhile.
      const got = await this.#read(db, [FENCE + fence, ...keys])
      if (!this.#gens.has(fence)) {
        this.#gens.set(fence, decodeGen(got[0]))
        const generation = this.#bump(fence)
        await this.#persistGens()
        return { generation, values: got.slice(1) }
      }
    }
    const generation = this.#bump(fence)
    // Writes of this fence accepted before the bump may still be in flight: read after they land.
    const inflight = this.#writing.get(fence)
    const [, values] = await Promise.all([
      this.#persistGens(),
      keys.length === 0 ? [] : inflight === undefined ? this.#read(db, keys) : inflight.then(noop, noop).then(() => this.#read(db, keys)),
    ])
    return { generation, values }
  }

  protected async _writeFenced(writes: readonly FencedWrite[]): Promise<FencedResult> {
    const db = this.#open()
    const gens = this.#gens
    let missing: Set<string> | undefined
    for (const w of writes) if (!gens.has(w.fence)) (missing ??= new Set()).add(w.fence)
    if (missing !== undefined || this.#gate !== undefined) {
      // Calls wait for the earlier calls' generation reads, so they are checked in call order.
      const prev = this.#gate
      const fences = missing === undefined ? [] : [...missing]
      const mine = (async () => {
        if (prev !== undefined) await prev.catch(noop)
        if (fences.length > 0) await this.#load(fences)
      })()
      this.#gate = mine
      try {
        await mine
      } finally {
        if (this.#gate === mine) this.#gate = undefined
      }
    }

    // Check and launch in one synchronous pass: an acquire cannot slip between a write's check
    // and its batch, and claim() finds the batch in #writing.
    const refused: number[] = []
    let batches: Promise<void> | Promise<void>[] | undefined
    let chunk: BatchOp[] = []
    let fences: string[] = []
    let bytes = 0
    for (let i = 0; i < writes.length; i++) {
      const w = writes[i]!
      if (gens.get(w.fence) !== w.generation) {
        refused.push(i)
        continue
      }
      const ops = w.ops
      for (let k = 0; k < ops.length; k++) {
        const op = ops[k]!
        chunk.push(op)
        if (op.type === 'put') bytes += op.value.byteLength
      }
      fences.push(w.fence)
      if (chunk.length >= CHUNK_OPS || bytes >= CHUNK_BYTES) {
        const p = this.#launch(db, chunk, fences)
        batches = batches === undefined ? p : Array.isArray(batches) ? (batches.push(p), batches) : [batches, p]
        chunk = []
        fences = []
        bytes = 0
      }
    }
    if (chunk.length > 0) {
      const p = this.#launch(db, chunk, fences)
      batches = batches === undefined ? p : Array.isArray(batches) ? (batches.push(p), batches) : [batches, p]
    }
    if (batches !== undefined) await (Array.isArray(batches) ? Promise.all(batches) : batches)
    return { refused }
  }

  /**
   * Starts `db.batch(ops)` (the ops of accepted writes of `fences`) once the batches in flight
   * that carry writes of the same fences have landed, so writes of one fence land in call order.
   * #writing maps each fence to the last batch that carries a write of it; an entry whose batch
   * has landed is stale and ignored (the map is emptied whenever no batch is in flight).
   */
  #launch(db: Db, ops: BatchOp[], fences: string[]): Promise<void> {
    const writing = this.#writing
    const live = this.#live
    let before: Promise<unknown>[] | undefined
    if (live.size > 0) {
      for (let i = 0; i < fences.length; i++) {
        const w = writing.get(fences[i]!)
        if (w !== undefined && live.has(w) && before?.includes(w) !== true) (before ??= []).push(w)
      }
    }
    const p = before === undefined ? writeBatch(db, ops) : Promise.all(before.map((b) => b.catch(noop))).then(() => writeBatch(db, ops))
    live.add(p)
    for (let i = 0; i < fences.length; i++) writing.set(fences[i]!, p)
    p.then(
      () => this.#landed(p),
      () => this.#landed(p),
    )
    return p
  }

  /** Batch `p` has landed (or failed): it is no longer in flight. */
  #landed(p: Promise<void>): void {
    this.#live.delete(p)
    if (this.#live.size === 0) this.#writing.clear()
  }

  /** getMany, or getSync per key with `readSync`. */
  async #read(db: Db, keys: readonly string[]): Promise<(Uint8Array | undefined)[]> {
    return this.#readSync ? keys.map((k) => db.getSync(k)) : db.getMany(keys as string[])
  }

  #open(): Db {
    const db = this.#db
    if (db === undefined) throw new StorageError(StorageErrorCode.NOT_OPEN, 'LevelDB is not open')
    return db
  }

  /** Reads the generations of fences not cached yet (a concurrent reader's value wins). */
  async #load(fences: string[]): Promise<void> {
    const got = await this.#read(this.#open(), fences.map((f) => FENCE + f))
    for (let i = 0; i < fences.length; i++) {
      const f = fences[i]!
      if (!this.#gens.has(f)) this.#gens.set(f, decodeGen(got[i]))
    }
  }

  /** Increments a cached generation and marks it for the next generation batch. */
  #bump(fence: string): number {
    const g = this.#gens.get(fence)! + 1
    this.#gens.set(fence, g)
    this.#dirty.add(fence)
    return g
  }

  /**
   * Resolves once every generation bumped so far is written. Generation batches run one at a
   * time and write the latest cached value, so the last one to land is never older than the cache.
   */
  #persistGens(): Promise<void> {
    if (this.#genNext !== undefined) return this.#genNext
    const next = (async () => {
      await null // let every bump of this tick join
      if (this.#genWrite !== undefined) await this.#genWrite.catch(noop)
      this.#genNext = undefined
      if (this.#dirty.size === 0) return
      const ops: BatchOp[] = []
      for (const f of this.#dirty) ops.push({ type: 'put', key: FENCE + f, value: encodeGen(this.#gens.get(f)!) })
      this.#dirty.clear()
      const p = this.#open().batch(ops)
      this.#genWrite = p
      try {
        await p
      } finally {
        if (this.#genWrite === p) this.#genWrite = undefined
      }
    })()
    this.#genNext = next
    return next
  }
}

function noop(): void {}

/** abstract-level's implementation hook under db.batch() (not in its types). */
type WithPrivateBatch = { _batch?: (ops: BatchOp[], options: object) => Promise<void> }
const NO_OPTIONS = Object.freeze({})

/**
 * `db.batch(ops)` for fenced writes, through classic-level's own `_batch`: abstract-level's
 * public batch() clones and re-validates every op (its keys and values are already checked, a
 * utf8 key and a 'view' value are passed to the binding as they are) and emits events nobody
 * listens to here: ~0.4 µs per op on the storage host thread (100,000 puts of 1 KB in calls of
 * 500: ~125 ms of the thread's CPU through batch(), ~85 ms through _batch, best of 6 on a loaded VM).
 */
function writeBatch(db: Db, ops: BatchOp[]): Promise<void> {
  const own = (db as unknown as WithPrivateBatch)._batch
  return typeof own === 'function' ? own.call(db, ops, NO_OPTIONS) : db.batch(ops)
}

function encodeGen(g: number): Uint8Array {
  return Buffer.from(String(g), 'latin1')
}

function decodeGen(v: Uint8Array | undefined): number {
  if (v === undefined) return 0
  const g = Number(Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('latin1'))
  if (!Number.isSafeInteger(g) || g < 0) throw new StorageError(StorageErrorCode.FAILED, 'a stored fence generation is corrupt')
  return g
}

/**
 * MemoryStorage: the reference driver, two Maps in this thread's memory. It defines what the
 * compliance suite expects of every driver and is the default for tests (no disk, no server).
 * Values are copied in and out, so neither side can change the other's bytes.
 */
import { AbstractStorage, type AbstractStorageOptions, type BatchOp, type FencedResult, type FencedWrite } from './storage.ts'

/**
 * The data of one or more MemoryStorage instances. Give the same store to a new MemoryStorage to
 * simulate a restart of its owner: data and fence generations are kept.
 */
export class MemoryStore {
  /** key (prefixed) → value. */
  readonly data = new Map<string, Uint8Array>()
  /** fence (prefixed) → current generation. */
  readonly fences = new Map<string, number>()
}

/** Options of {@link MemoryStorage}. */
export interface MemoryStorageOptions extends AbstractStorageOptions {
  /** The store to use (default: a new one). Several instances may share one. */
  store?: MemoryStore | undefined
}

/** A storage in this thread's memory. supports: not persistent, not shared, atomic batches. */
export class MemoryStorage extends AbstractStorage {
  /** The data this instance reads and writes (kept across close/open). */
  readonly store: MemoryStore

  constructor(options: MemoryStorageOptions = {}) {
    super({ persistent: false, shared: false, atomicBatch: true, fencing: true }, options)
    this.store = options.store ?? new MemoryStore()
  }

  protected async _open(): Promise<void> {}

  protected async _close(): Promise<void> {}

  protected async _get(key: string): Promise<Uint8Array | undefined> {
    return copy(this.store.data.get(key))
  }

  protected async _getMany(keys: readonly string[]): Promise<(Uint8Array | undefined)[]> {
    const data = this.store.data
    return keys.map((k) => copy(data.get(k)))
  }

  protected async _put(key: string, value: Uint8Array): Promise<void> {
    this.store.data.set(key, new Uint8Array(value))
  }

  protected async _del(key: string): Promise<void> {
    this.store.data.delete(key)
  }

  protected async _batch(ops: readonly BatchOp[]): Promise<void> {
    apply(this.store.data, ops)
  }

  protected async _acquire(fence: string): Promise<number> {
    const g = (this.store.fences.get(fence) ?? 0) + 1
    this.store.fences.set(fence, g)
    return g
  }

  protected async _writeFenced(writes: readonly FencedWrite[]): Promise<FencedResult> {
    const { data, fences } = this.store
    const refused: number[] = []
    for (let i = 0; i < writes.length; i++) {
      const w = writes[i]!
      if (fences.get(w.fence) === w.generation) apply(data, w.ops)
      else refused.push(i)
    }
    return { refused }
  }
}

function apply(data: Map<string, Uint8Array>, ops: readonly BatchOp[]): void {
  for (const op of ops) {
    if (op.type === 'put') data.set(op.key, new Uint8Array(op.value))
    else data.delete(op.key)
  }
}

function copy(v: Uint8Array | undefined): Uint8Array | undefined {
  return v === undefined ? undefined : v.slice()
}

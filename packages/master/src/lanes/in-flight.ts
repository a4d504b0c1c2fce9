/**
 * A slot's dispatched, unsettled tasks, by dispatch id: an array indexed by `id & mask`
 * instead of a Map (a Map set + get + delete cost ~85 ns per task on the master's hot path;
 * this costs a few).
 *
 * Ids are positive int32s handed out in increasing order, skipping any whose index is taken by
 * a task still in flight. So no two tasks in flight share an index: neither here nor in the
 * worker's shared start/end marks, which use the same `id & mask` (a task held by a slow
 * handler while more than `mask` later ids pass can no longer be confused with a newer one).
 * `mask + 1` must exceed the most tasks a slot may have in flight (the claimed window).
 */
import type { Entry } from './lane-scheduler.ts'

export class InFlight {
  readonly mask: number
  private readonly table: (Entry | undefined)[]
  private lastId = 0
  private seq = 0
  /** Tasks in flight. */
  size = 0

  constructor(mask: number) {
    this.mask = mask
    this.table = new Array<Entry | undefined>(mask + 1).fill(undefined)
  }

  /** Gives `e` the next free id, records it in flight, and returns the id. */
  add(e: Entry): number {
    const table = this.table
    const mask = this.mask
    if (this.size > mask) throw new RangeError('in-flight table full')
    let id = this.lastId
    do {
      id = (id + 1) & 0x7fffffff
      if (id === 0) id = 1
    } while (table[id & mask] !== undefined)
    this.lastId = id
    e.id = id
    e.seq = ++this.seq
    table[id & mask] = e
    this.size++
    return id
  }

  /** The entry in flight under `id`, if any. */
  get(id: number): Entry | undefined {
    const e = this.table[id & this.mask]
    return e !== undefined && e.id === id ? e : undefined
  }

  /** Removes and returns the entry in flight under `id`, if any. */
  take(id: number): Entry | undefined {
    const i = id & this.mask
    const e = this.table[i]
    if (e === undefined || e.id !== id) return undefined
    this.table[i] = undefined
    this.size--
    return e
  }

  /** Every entry in flight, in dispatch order. */
  inOrder(): Entry[] {
    const out: Entry[] = []
    if (this.size === 0) return out
    for (const e of this.table) if (e !== undefined) out.push(e)
    return out.sort((a, b) => a.seq - b.seq)
  }

  clear(): void {
    if (this.size === 0) return
    this.table.fill(undefined)
    this.size = 0
  }
}

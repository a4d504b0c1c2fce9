/**
 * A growable ring buffer: O(1) push at the back, shift at the front and indexed reads. The send
 * buffers of the broker client and the egress sender hold up to `bufferMax` entries, where
 * `Array.prototype.shift` would be O(n).
 */

/** A double-ended queue with indexed access (0 is the front). */
export class Deque<T> {
  #buf: (T | undefined)[]
  #head = 0
  #size = 0

  constructor(initialCapacity = 16) {
    let cap = 1
    while (cap < initialCapacity) cap *= 2
    this.#buf = new Array<T | undefined>(cap)
  }

  /** Number of entries. */
  get length(): number {
    return this.#size
  }

  /** Appends at the back. */
  push(value: T): void {
    if (this.#size === this.#buf.length) this.#grow()
    this.#buf[(this.#head + this.#size) & (this.#buf.length - 1)] = value
    this.#size++
  }

  /** Removes and returns the front entry. */
  shift(): T | undefined {
    if (this.#size === 0) return undefined
    const v = this.#buf[this.#head]
    this.#buf[this.#head] = undefined
    this.#head = (this.#head + 1) & (this.#buf.length - 1)
    this.#size--
    return v
  }

  /** Removes and returns the back entry. */
  pop(): T | undefined {
    if (this.#size === 0) return undefined
    const i = (this.#head + this.#size - 1) & (this.#buf.length - 1)
    const v = this.#buf[i]
    this.#buf[i] = undefined
    this.#size--
    return v
  }

  /** The entry at `index` from the front, or undefined when out of range. */
  at(index: number): T | undefined {
    if (index < 0 || index >= this.#size) return undefined
    return this.#buf[(this.#head + index) & (this.#buf.length - 1)]
  }

  /** The front entry. */
  peek(): T | undefined {
    return this.at(0)
  }

  /** Removes every entry. */
  clear(): void {
    this.#buf = new Array<T | undefined>(16)
    this.#head = 0
    this.#size = 0
  }

  #grow(): void {
    const old = this.#buf
    const next = new Array<T | undefined>(old.length * 2)
    for (let i = 0; i < this.#size; i++) next[i] = old[(this.#head + i) & (old.length - 1)]
    this.#buf = next
    this.#head = 0
  }
}

/**
 * The egress journal: what a worker produced but has not yet posted to the egress thread, kept
 * in shared memory so that it outlives the worker thread.
 *
 * A worker batches its egress (replies, pushes, messages to other players) and posts it to the
 * egress thread once per turn: one postMessage per turn instead of one per message. A message
 * posted survives the thread's death; one still in the batch did not, so every request that
 * finished in a dying worker's last turn went unanswered (process.exit in a handler, a throw
 * outside one, a blocked loop, an out-of-memory kill). Now each message is also encoded into
 * this journal as it is sent, before the task that produced it is marked finished; posting the
 * batch empties the journal. When the worker's port closes (after everything it posted was
 * delivered), the egress thread sends whatever the journal still holds that it did not receive,
 * so a reply a handler produced is never lost with its thread, and none is sent twice.
 *
 * Layout (one SharedArrayBuffer per worker incarnation):
 *   Int32 [0]  seq: the number the journal's contents will be posted under (batches count 1, 2, …)
 *   Int32 [1]  bytes used after the header
 *   Int32 [2]  messages in it
 *   bytes 16…  the messages as msgpack maps (protocol §2.1), back to back
 *
 * The worker writes the bytes before it stores the counts, and it stores them before the task's
 * finished mark; the egress thread reads only after the worker's port closed. If the worker dies
 * between posting a batch and emptying the journal, the egress thread has received that seq and
 * skips the journal. One writer, one reader, never at the same time: no lock.
 */
import { decodeEgress, type EgressMessage, MsgpackWriter, writeEgress } from '@peony/protocol'

const HEADER = 16
/** Journal bytes per worker by default: a turn that produces more posts its batch early. */
export const JOURNAL_BYTES = 256 * 1024

export function createJournal(bytes = JOURNAL_BYTES): SharedArrayBuffer {
  const sab = new SharedArrayBuffer(HEADER + bytes)
  Atomics.store(new Int32Array(sab, 0, 4), 0, 1)
  return sab
}

/** The worker's side. */
export class JournalWriter {
  readonly #head: Int32Array
  readonly #data: Uint8Array
  readonly #w = new MsgpackWriter(4096)
  /** Where each journaled map ends (what `frame()` posts with the bytes). */
  readonly #ends: number[] = []
  #used = 0
  #count = 0

  constructor(sab: SharedArrayBuffer) {
    this.#head = new Int32Array(sab, 0, 4)
    this.#data = new Uint8Array(sab, HEADER)
    this.#used = Atomics.load(this.#head, 1)
    this.#count = Atomics.load(this.#head, 2)
  }

  /** The seq the next posted batch carries. */
  get seq(): number {
    return Atomics.load(this.#head, 0)
  }

  get empty(): boolean {
    return this.#count === 0
  }

  /** Messages in it. */
  get count(): number {
    return this.#count
  }

  /**
   * Journals one message. 'full' when it does not fit after what is there (post the batch,
   * then append again); 'large' when it is larger than the whole journal (post it at once);
   * 'unencodable' when the codec refuses it (the egress thread counts it when it arrives).
   */
  append(msg: EgressMessage): 'ok' | 'full' | 'large' | 'unencodable' {
    const w = this.#w
    w.pos = 0
    try {
      writeEgress(w, msg)
    } catch {
      w.reset()
      return 'unencodable'
    }
    const n = w.pos
    if (n > this.#data.length) {
      w.reset()
      return 'large'
    }
    if (this.#used + n > this.#data.length) return 'full'
    this.#data.set(w.buf.subarray(0, n), this.#used)
    this.#used += n
    this.#count++
    this.#ends.push(this.#used)
    Atomics.store(this.#head, 1, this.#used)
    Atomics.store(this.#head, 2, this.#count)
    return 'ok'
  }

  /**
   * What the journal holds, to post as one transferred buffer: `count`, each map's end, then the
   * maps (read with `framedMaps`). Each message was encoded once, for the journal; the egress
   * thread queues these bytes as they are (no structured clone here, no decode and re-encode
   * there). Call `posted(seq)` after posting it.
   */
  frame(): ArrayBuffer {
    const n = this.#count
    const out = new ArrayBuffer(4 * (1 + n) + this.#used)
    const head = new Uint32Array(out, 0, 1 + n)
    head[0] = n
    for (let i = 0; i < n; i++) head[1 + i] = this.#ends[i] as number
    new Uint8Array(out, 4 * (1 + n)).set(this.#data.subarray(0, this.#used))
    return out
  }

  /** The batch numbered `seq` was posted: the journal is empty and belongs to the next seq. */
  posted(seq: number): void {
    Atomics.store(this.#head, 0, seq + 1)
    this.#used = 0
    this.#count = 0
    this.#ends.length = 0
    Atomics.store(this.#head, 2, 0)
    Atomics.store(this.#head, 1, 0)
  }
}

/** The maps of a posted `frame()`, in order (views of it). */
export function framedMaps(frame: ArrayBuffer): Uint8Array[] {
  const n = new Uint32Array(frame, 0, 1)[0] as number
  const ends = new Uint32Array(frame, 4, n)
  const base = 4 * (1 + n)
  const out: Uint8Array[] = new Array(n)
  let from = 0
  for (let i = 0; i < n; i++) {
    const to = ends[i] as number
    out[i] = new Uint8Array(frame, base + from, to - from)
    from = to
  }
  return out
}

/**
 * The egress thread's side, once the worker's port has closed: the messages of the journal that
 * were never posted (none when the batch of that seq was received, `lastSeq` ≥ the journal's).
 */
export function unposted(sab: SharedArrayBuffer, lastSeq: number): EgressMessage[] {
  const head = new Int32Array(sab, 0, 4)
  const seq = Atomics.load(head, 0)
  const used = Atomics.load(head, 1)
  const count = Atomics.load(head, 2)
  if (count === 0 || seq <= lastSeq) return []
  // The maps back to back, behind an array32 header: one egress frame of `count` messages.
  const frame = new Uint8Array(5 + used)
  frame[0] = 0xdd
  new DataView(frame.buffer).setUint32(1, count)
  frame.set(new Uint8Array(sab, HEADER, used), 5)
  return decodeEgress(frame, { maxFrameBytes: Number.MAX_SAFE_INTEGER }).messages
}

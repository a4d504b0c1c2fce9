/**
 * Drives many distinct players through a real server (issue 9): each player sends one `count`
 * request (task cmd 10, connId = uid) and is never seen again, so the server loads its session,
 * answers, and sooner or later evicts it. Requests go out in frames of `batch` tasks on one
 * DEALER, with at most `window` unanswered at a time; answers are counted by a forwarder that
 * only counts (the test process neither decodes nor keeps half a million messages).
 */
import { readFileSync } from 'node:fs'
import * as zmq from 'zeromq'
import { encodeTaskFrames, packValue, type Task } from '@peony/protocol'

/** Every player's one request: `count` (its session's counter goes to 1, so it is written before it is evicted). */
const BODY = packValue({ cmd: 'count', sn: 1, data: null })

/** The resident set of process `pid` in bytes (VmRSS of /proc/<pid>/status). */
export function rssOf(pid: number): number {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  if (m === null) throw new Error(`no VmRSS for process ${pid}`)
  return Number(m[1]) * 1024
}

/**
 * A forwarder (ROUTER) that counts the egress messages it receives: a frame is one message (a
 * msgpack map) or an array of them, and only the array header is read.
 */
export class CountingForwarder {
  readonly #sock = new zmq.Router({ linger: 0 })
  readonly #loop: Promise<void>
  /** Messages received. */
  count = 0
  readonly endpoint: string
  constructor() {
    this.#sock.bindSync('tcp://127.0.0.1:0')
    this.endpoint = this.#sock.lastEndpoint!
    this.#loop = this.#receive()
  }
  async #receive(): Promise<void> {
    try {
      for await (const [, f] of this.#sock) {
        if (f === undefined || f.length === 0) continue
        const b = f[0]!
        if (b >= 0x90 && b <= 0x9f) this.count += b & 0x0f
        else if (b === 0xdc) this.count += f.readUInt16BE(1)
        else if (b === 0xdd) this.count += f.readUInt32BE(1)
        else this.count++
      }
    } catch (err) {
      if (!this.#sock.closed) throw err
    }
  }
  async close(): Promise<void> {
    this.#sock.close()
    await this.#loop
  }
}

export interface DriveOptions {
  intake: string
  fwd: CountingForwarder
  /** Distinct players in all (uids firstUid … firstUid + players - 1). */
  players: number
  /** A checkpoint after every this many players (all answered). */
  every: number
  firstUid?: number
  /** Unanswered requests at most (default 8,000). */
  window?: number
  /** Tasks per frame (default 500). */
  batch?: number
  /** Gives up when no answer came for this long (default 15 s). */
  stallMs?: number
  /** Called at each checkpoint with the players driven so far; driving waits for it. */
  checkpoint: (players: number) => Promise<void>
}

/** Sends one request for each of `players` distinct uids; returns how many answers came. */
export async function drivePlayers(o: DriveOptions): Promise<number> {
  const window = o.window ?? 8000
  const batch = o.batch ?? 500
  const stallMs = o.stallMs ?? 15_000
  const first = o.firstUid ?? 1
  const dealer = new zmq.Dealer({ sendHighWaterMark: 0, linger: 0 })
  dealer.connect(o.intake)
  let answered = 0
  const collect = (): void => {
    answered = o.fwd.count
  }
  const waitAnswers = async (upTo: number): Promise<void> => {
    let last = answered
    let since = Date.now()
    for (;;) {
      collect()
      if (answered >= upTo) return
      if (answered !== last) {
        last = answered
        since = Date.now()
      } else if (Date.now() - since > stallMs) {
        throw new Error(`no answer for ${stallMs} ms: ${answered} answered, waiting for ${upTo}`)
      }
      await new Promise((resolve) => setTimeout(resolve, 1))
    }
  }
  try {
    let sent = 0
    while (sent < o.players) {
      const stop = Math.min(o.players, (Math.floor(sent / o.every) + 1) * o.every)
      while (sent < stop) {
        await waitAnswers(Math.max(0, sent + batch - window))
        const n = Math.min(batch, stop - sent)
        const tasks: Task[] = new Array<Task>(n)
        for (let i = 0; i < n; i++) {
          const uid = first + sent + i
          tasks[i] = { cmd: 10, uid, nodeId: 1, connId: uid, body: BODY }
        }
        for (const f of encodeTaskFrames(tasks)) await dealer.send(f)
        sent += n
      }
      await waitAnswers(sent)
      if (sent % o.every === 0 || sent === o.players) await o.checkpoint(sent)
    }
    collect()
    return answered
  } finally {
    dealer.close()
  }
}

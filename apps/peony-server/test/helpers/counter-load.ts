/**
 * Load and bookkeeping for the counter tests of the real server (fixtures/gate-app.ts): broker
 * connections (DEALERs) that send the requests of their own players, a ledger of every request
 * sent and every answer the fake forwarder got (stamped when the test read it, so a stamp is never
 * earlier than the answer really arrived), a closed loop that keeps a window of requests
 * outstanding per player, and readers of the counters the storage holds (LevelDB or Redis).
 *
 * Each player is its own client connection (`connId` = uid), so an answer is matched to its
 * request by `connId` and the echoed `sn`.
 */
import * as zmq from 'zeromq'
import { waitFor } from '@peony/test-utils'
import type { FakeForwarder } from '@peony/fake-forwarder'
import { encodeTaskFrames, msgpackBodyCodec, packValue, type Task, unpackValue } from '@peony/protocol'
import type { AbstractStorage } from '@peony/storage'

export interface Player {
  uid: number
  /** Last sn sent. */
  sn: number
  /** Requests sent and not answered yet. */
  outstanding: number
}

export interface Sent {
  uid: number
  sn: number
  cmd: string
  /** performance.now() when handed to the socket. */
  at: number
}

export interface Answer {
  uid: number
  sn: number
  ret: number
  count: number | undefined
  /** The worker thread that answered (handler replies only). */
  tid: number | undefined
  /** Date.now() when the test read it. */
  wall: number
  /** performance.now() when the test read it. */
  at: number
}

/** Everything sent and answered, by `uid:sn`. */
export class Ledger {
  readonly sent = new Map<string, Sent>()
  readonly answers = new Map<string, Answer[]>()
  /** Every answer in the order read. */
  readonly all: Answer[] = []
  private cursor = 0
  private readonly players = new Map<number, Player>()
  private readonly fwd: FakeForwarder
  constructor(fwd: FakeForwarder) {
    this.fwd = fwd
  }

  player(uid: number): Player {
    let p = this.players.get(uid)
    if (p === undefined) {
      p = { uid, sn: 0, outstanding: 0 }
      this.players.set(uid, p)
    }
    return p
  }

  request(p: Player, cmd: string, nodeId = 1): Task {
    const sn = ++p.sn
    p.outstanding++
    this.sent.set(`${p.uid}:${sn}`, { uid: p.uid, sn, cmd, at: performance.now() })
    return { cmd: 10, uid: p.uid, nodeId, connId: p.uid, body: packValue({ cmd, sn, data: null }) }
  }

  /** Reads what the forwarder received since the last call; returns the new answers. */
  collect(): Answer[] {
    const msgs = this.fwd.messages
    const out: Answer[] = []
    const wall = Date.now()
    const at = performance.now()
    for (; this.cursor < msgs.length; this.cursor++) {
      const m = msgs[this.cursor]!
      if (m.cmd !== 220) continue
      const b = msgpackBodyCodec.decodeReply(m.body) as { sn?: unknown; ret: number; data?: { count?: number; tid?: number } }
      const uid = Number(m.connId)
      const sn = Number(b.sn)
      const a: Answer = { uid, sn, ret: b.ret, count: b.data?.count, tid: b.data?.tid, wall, at }
      const key = `${uid}:${sn}`
      const l = this.answers.get(key)
      if (l === undefined) {
        this.answers.set(key, [a])
        const p = this.players.get(uid)
        if (p !== undefined) p.outstanding--
      } else l.push(a)
      this.all.push(a)
      out.push(a)
    }
    return out
  }

  /** Requests answered more than once. */
  answeredTwice(): number {
    let n = 0
    for (const l of this.answers.values()) if (l.length > 1) n++
    return n
  }

  /** The highest counter each uid was answered with (ret 0), among answers passing `ok`. */
  highest(ok: (a: Answer) => boolean = () => true): Map<number, number> {
    const out = new Map<number, number>()
    for (const a of this.all) {
      if (a.ret !== 0 || a.count === undefined || !ok(a)) continue
      if (a.count > (out.get(a.uid) ?? -1)) out.set(a.uid, a.count)
    }
    return out
  }

  /** Latency (ms) of the first answer of each answered request passing `ok` (given the answer and the request): p50, p99, max. */
  latency(ok: (a: Answer, s: Sent) => boolean = () => true): { count: number; p50: number; p99: number; max: number } {
    const l: number[] = []
    for (const [k, as] of this.answers) {
      const a = as[0]!
      const s = this.sent.get(k)
      if (s !== undefined && ok(a, s)) l.push(a.at - s.at)
    }
    l.sort((x, y) => x - y)
    const q = (f: number): number => (l.length === 0 ? 0 : Math.round(l[Math.min(l.length - 1, Math.floor(f * l.length))]! * 10) / 10)
    return { count: l.length, p50: q(0.5), p99: q(0.99), max: q(1) }
  }

  /** Answers counted by ret. */
  byRet(): Record<string, number> {
    const out: Record<string, number> = {}
    for (const a of this.all) out[a.ret] = (out[a.ret] ?? 0) + 1
    return out
  }
}

/** A broker connection: one DEALER; frames go out in order. */
export class Conn {
  readonly sock = new zmq.Dealer({ sendHighWaterMark: 0, linger: 0 })
  private chain: Promise<void> = Promise.resolve()
  constructor(endpoint: string) {
    this.sock.connect(endpoint)
  }
  send(tasks: Task[]): Promise<void> {
    for (const f of encodeTaskFrames(tasks)) this.chain = this.chain.then(() => this.sock.send(f))
    return this.chain
  }
  async drain(): Promise<void> {
    await this.chain.catch(() => {})
  }
  close(): void {
    if (!this.sock.closed) this.sock.close()
  }
}

/**
 * Sends one `cmd` for each player (player `i` on `conns[i % conns.length]`) and waits until every
 * one is answered.
 */
export async function everyOnce(ledger: Ledger, conns: Conn[], players: Player[], cmd: string, timeoutMs = 30_000): Promise<void> {
  const tasks: Task[][] = conns.map(() => [])
  const keys: string[] = []
  players.forEach((p, i) => {
    tasks[i % conns.length]!.push(ledger.request(p, cmd))
    keys.push(`${p.uid}:${p.sn}`)
  })
  await Promise.all(conns.map((c, i) => c.send(tasks[i]!)))
  await waitFor(() => (ledger.collect(), keys.every((k) => ledger.answers.has(k))), { timeoutMs, intervalMs: 2, message: `every player answered ${cmd}` })
}

/**
 * Closed loop: every millisecond, reads the answers and tops each player up to `window`
 * outstanding requests of `cmd` (`cmdOf` may choose per player), on the connection owning the
 * player (`conns[i % conns.length]` owns `players[i]`). `onAnswers` sees each batch of new answers.
 * Returns a function that stops it.
 */
export function closedLoop(ledger: Ledger, conns: Conn[], players: Player[], cmd: string, window = 1, onAnswers?: (as: Answer[]) => void): () => void {
  const owned: Player[][] = conns.map(() => [])
  players.forEach((p, i) => owned[i % conns.length]!.push(p))
  let stopped = false
  const tick = (): void => {
    if (stopped) return
    const as = ledger.collect()
    if (as.length > 0) onAnswers?.(as)
    owned.forEach((ps, c) => {
      const tasks: Task[] = []
      for (const p of ps) while (p.outstanding < window) tasks.push(ledger.request(p, cmd))
      if (tasks.length > 0) void conns[c]!.send(tasks).catch(() => {})
    })
  }
  const timer = setInterval(tick, 1)
  tick()
  return () => {
    stopped = true
    clearInterval(timer)
  }
}

/** The counter in a stored session record (msgpack `[1, state bytes, timers]`), or undefined. */
export function counterOf(v: Uint8Array | undefined): number | undefined {
  if (v === undefined) return undefined
  return (unpackValue((unpackValue(v) as [number, Uint8Array])[1]) as { count: number }).count
}

/** Opens `storage`, reads the stored counters of `uids` (key `player:<uid>`), closes it. */
export async function storedCounters(storage: AbstractStorage, uids: number[]): Promise<Map<number, number | undefined>> {
  await storage.open()
  try {
    const out = new Map<number, number | undefined>()
    for (let i = 0; i < uids.length; i += 1000) {
      const part = uids.slice(i, i + 1000)
      const values = await storage.getMany(part.map((u) => `player:${u}`))
      part.forEach((u, k) => out.set(u, counterOf(values[k])))
    }
    return out
  } finally {
    await storage.close()
  }
}

/** The parsed JSON log lines of a server's stdout. */
export function logLines<T = Record<string, unknown>>(stdout: string): T[] {
  const out: T[] = []
  for (const l of stdout.split('\n')) {
    if (!l.startsWith('{')) continue
    try {
      out.push(JSON.parse(l) as T)
    } catch {
      // not a log line
    }
  }
  return out
}

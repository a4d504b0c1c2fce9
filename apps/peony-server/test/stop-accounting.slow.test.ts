/**
 * Graceful stop under open-loop load, exactly-once accounting (issue 8), on the real server
 * process with LevelDB sessions. Brokers (several DEALER connections, each sending the requests
 * of its own players, a counter increment each, several thousand requests/s in total) keep
 * sending while the server gets SIGTERM; three runs, a fresh process each, one LevelDB directory.
 * The stop drains for a while: without a kill, a 500 ms request is still running when SIGTERM
 * comes, and once the stop has begun its player also sends bursts of slower requests (all of
 * which must be refused); with a kill, a request blocks a worker until the blocked-loop monitor
 * terminates it, during the stop. Per run:
 * - on every connection, no request of a player is accepted (answered with a result) after an
 *   earlier request of that player on that connection was refused −10003;
 * - every request the server read (`client_req` of its `stopped` line) is answered exactly once
 *   at the forwarder (replies + the master's refusals), egress overflow being the one allowed loss;
 * - without a kill: no worker dies during the stop (`deaths` empty, `lost_in_flight` 0, no
 *   `worker died` or `worker error` line);
 * - with a kill (a worker blocked while the stop drains): the death is counted and logged, the
 *   blocked request is answered −10001 and every other task the worker held is answered.
 * After the runs, each player's stored counter equals the value of its last answered request.
 *
 * Each run prints one JSON line: requests read / answered / unanswered / answered twice.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { tempDir, waitFor } from '@peony/test-utils'
import { startFakeForwarder, type FakeForwarder } from '@peony/fake-forwarder'
import { encodeTaskFrames, msgpackBodyCodec, packValue, ReplyCode, routingHash, type Task, unpackValue } from '@peony/protocol'
import { LevelStorage } from '@peony/storage/leveldb'
import { freePort, run, type Run } from './helpers/run-server.ts'
import { Conn } from './helpers/counter-load.ts'

const APP = 'test/fixtures/counter-app.ts'
const WORKERS = 2
const SHARDS = 256
/** The worker slot of an int uid (one group of WORKERS, SHARDS shards: architecture.md, routing). */
const slotOf = (uid: number): number => (routingHash({ cmd: 10, uid }) % SHARDS) % WORKERS

const RUNS = 3
const CONNS = 8
const PLAYERS_PER_CONN = 2
/** Requests per second over all load connections. */
const RATE = 6000
/** The blocked-loop timeout of the kill test: the blocked worker dies this long into the stop. */
const BLOCKED_MS = 2000

let fwd: FakeForwarder | undefined
const open: RunConn[] = []
afterEach(async () => {
  for (const c of open.splice(0)) c.close()
  await fwd?.close()
  fwd = undefined
})

interface Player {
  uid: number
  /** Last sn sent; sns keep growing across runs. */
  sn: number
}

interface Sent {
  run: number
  conn: number
  uid: number
  sn: number
}

interface Answer {
  ret: number
  count: number | undefined
}

/** Everything sent and answered over the runs of one test, by `uid:sn` (each player has its own client connection: connId = uid). */
class Ledger {
  readonly sent = new Map<string, Sent>()
  readonly answers = new Map<string, Answer[]>()
  private cursor = 0
  private readonly f: FakeForwarder
  constructor(f: FakeForwarder) {
    this.f = f
  }

  request(run: number, conn: number, p: Player, cmd: string, data: unknown = null): Task {
    const sn = ++p.sn
    this.sent.set(`${p.uid}:${sn}`, { run, conn, uid: p.uid, sn })
    return { cmd: 10, uid: p.uid, nodeId: 1 + conn, connId: p.uid, tag: run, body: packValue({ cmd, sn, data }) }
  }

  /** Reads what the forwarder received since the last call. */
  collect(): void {
    const msgs = this.f.messages
    for (; this.cursor < msgs.length; this.cursor++) {
      const m = msgs[this.cursor]!
      if (m.cmd !== 220) continue
      const b = msgpackBodyCodec.decodeReply(m.body) as { sn?: unknown; ret: number; data?: { count?: number } }
      const key = `${Number(m.connId)}:${Number(b.sn)}`
      const l = this.answers.get(key) ?? []
      l.push({ ret: b.ret, count: b.data?.count })
      this.answers.set(key, l)
    }
  }

  answersOf(p: Player, sn: number): Answer[] {
    return this.answers.get(`${p.uid}:${sn}`) ?? []
  }

  /** Sent requests of one run. */
  ofRun(run: number): [string, Sent][] {
    return [...this.sent].filter(([, s]) => s.run === run)
  }
}

/** A broker connection of a run (one DEALER, frames in order: helpers' Conn) with its players. */
class RunConn extends Conn {
  readonly index: number
  readonly players: Player[]
  constructor(endpoint: string, index: number, players: Player[]) {
    super(endpoint)
    this.index = index
    this.players = players
    open.push(this)
  }
}

/**
 * Open loop: every connection sends, each millisecond, the rounds that are due (a round is one
 * `count` of each of its players) so the connections together send `rate` requests/s. Returns a
 * function that stops it.
 */
function startLoad(ledger: Ledger, run: number, conns: RunConn[], rate: number): () => void {
  const players = conns.reduce((n, c) => n + c.players.length, 0)
  const roundsPerMs = rate / players / 1000
  const t0 = performance.now()
  const done = conns.map(() => 0)
  const timer = setInterval(() => {
    const due = Math.floor((performance.now() - t0) * roundsPerMs)
    for (const c of conns) {
      // A test process that fell behind catches up by at most 4 rounds (several requests of one player in a frame).
      const n = Math.min(4, due - done[c.index]!)
      done[c.index] = due
      if (n <= 0) continue
      const tasks: Task[] = []
      for (let r = 0; r < n; r++) for (const p of c.players) tasks.push(ledger.request(run, c.index, p, 'count'))
      void c.send(tasks).catch(() => {})
    }
  }, 1)
  return () => clearInterval(timer)
}

interface StoppedStats {
  client_req: number
  deaths: Record<string, number>
  lost_in_flight: { all: number }
  refused: Record<string, number>
  discard_tasks: { reasons: Record<string, number> }
  egress: { workers: { overflow?: number; discarded?: number }; master: { overflow?: number; discarded?: number } }
}

interface LogLine {
  msg?: string
  cause?: string
  err?: { message?: string }
}

function logLines(r: Run): LogLine[] {
  const out: LogLine[] = []
  for (const l of r.stdout().split('\n')) {
    if (!l.startsWith('{')) continue
    try {
      out.push(JSON.parse(l) as LogLine)
    } catch {
      // not a log line
    }
  }
  return out
}

/** Requests of this run answered with a result after an earlier request of the same player on the same connection was refused −10003. */
function acceptedAfterRefusal(ledger: Ledger, run: number): { uid: number; refusedSn: number; acceptedSn: number }[] {
  const byPlayer = new Map<string, Sent[]>()
  for (const [, s] of ledger.ofRun(run)) {
    const k = `${s.conn}/${s.uid}`
    const l = byPlayer.get(k) ?? []
    l.push(s)
    byPlayer.set(k, l)
  }
  const out: { uid: number; refusedSn: number; acceptedSn: number }[] = []
  for (const list of byPlayer.values()) {
    list.sort((a, b) => a.sn - b.sn)
    let refusedSn: number | undefined
    for (const s of list) {
      const as = ledger.answers.get(`${s.uid}:${s.sn}`) ?? []
      if (refusedSn === undefined) {
        if (as.some((a) => a.ret === ReplyCode.SHUTTING_DOWN)) refusedSn = s.sn
      } else if (as.some((a) => a.ret === 0)) out.push({ uid: s.uid, refusedSn, acceptedSn: s.sn })
    }
  }
  return out
}

async function storedCounts(db: string, uids: number[]): Promise<Map<number, number | undefined>> {
  const level = new LevelStorage({ location: db })
  await level.open()
  try {
    const values = await level.getMany(uids.map((u) => `player:${u}`))
    const out = new Map<number, number | undefined>()
    uids.forEach((u, i) => {
      const v = values[i]
      out.set(u, v === undefined ? undefined : (unpackValue((unpackValue(v) as [number, Uint8Array])[1]) as { count: number }).count)
    })
    return out
  } finally {
    await level.close()
  }
}

/** Int uids from `from` on whose slot passes `ok`. */
function pickUids(n: number, from: number, ok: (slot: number) => boolean): number[] {
  const out: number[] = []
  for (let u = from; out.length < n; u++) if (ok(slotOf(u))) out.push(u)
  return out
}

/**
 * Three runs of: start the server, load it, make its stop drain for a while (a slow request in
 * flight, or a worker blocked by a request), SIGTERM while the load goes on, then check the run.
 */
async function stopRuns(kill: boolean): Promise<void> {
  const db = join(tempDir(), 'db')
  fwd = await startFakeForwarder()
  const ledger = new Ledger(fwd)
  // With a kill, the load stays off the worker that dies (slot 1): a dead worker loses the
  // session changes it had not written yet (sessions.md), which would make the stored counters
  // of its players differ from their last answers by design, not by a bug.
  const loadUids = pickUids(CONNS * PLAYERS_PER_CONN, 1, (s) => !kill || s === 0)
  const conns: Player[][] = []
  for (let c = 0; c < CONNS; c++) conns.push(loadUids.slice(c * PLAYERS_PER_CONN, (c + 1) * PLAYERS_PER_CONN).map((uid) => ({ uid, sn: 0 })))
  // The extra connection: the slow request (no kill), or the killer frame's players (kill): 20
  // players of slot 1 and the one whose request blocks it.
  const slow: Player = { uid: pickUids(1, 10_000, () => true)[0]!, sn: 0 }
  const victims: Player[] = pickUids(20, 20_000, (s) => s === 1).map((uid) => ({ uid, sn: 0 }))
  const blocker: Player = { uid: pickUids(1, 30_000, (s) => s === 1)[0]!, sn: 0 }
  const extraPlayers = kill ? [...victims, blocker] : [slow]
  const allPlayers = [...conns.flat(), ...extraPlayers]

  const failures: string[] = []
  for (let runNo = 1; runNo <= RUNS; runNo++) {
    const marks = join(tempDir(), 'marks.txt')
    writeFileSync(marks, '')
    const intake = `tcp://127.0.0.1:${await freePort()}`
    const args = [
      '--app',
      APP,
      '--intake',
      intake,
      '--forwarder',
      fwd.endpoint,
      '--workers',
      String(WORKERS),
      '--shards',
      String(SHARDS),
      '--storage',
      'leveldb',
      '--storage-path',
      db,
      '--log-level',
      'info',
      '--stop-timeout-ms',
      '10000',
      '--worker-close-timeout-ms',
      '4000',
    ]
    if (kill) args.push('--blocked-timeout-ms', String(BLOCKED_MS))
    const server = run(args, { PEONY_TEST_MARKS: marks })
    await server.line(/^peony ready: /)
    const load = conns.map((players, i) => new RunConn(intake, i, players))
    const extra = new RunConn(intake, CONNS, extraPlayers)
    const stopLoad = startLoad(ledger, runNo, load, RATE)
    const answeredOk = (p: Player, fromSn: number): boolean => {
      for (let sn = fromSn; sn <= p.sn; sn++) if (ledger.answersOf(p, sn).some((a) => a.ret === 0)) return true
      return false
    }
    const firstSn = new Map(allPlayers.map((p) => [p.uid, p.sn + 1]))
    // The extra players' sessions resident first (with a kill: so the killer frame's requests run in one turn).
    await extra.send(extraPlayers.map((p) => ledger.request(runNo, CONNS, p, 'get')))
    // Every player has been answered in this run (the load is flowing, sessions are loaded).
    await waitFor(
      () => {
        ledger.collect()
        return allPlayers.every((p) => answeredOk(p, firstSn.get(p.uid)!))
      },
      { timeoutMs: 20_000, message: `run ${runNo}: every player answered once` },
    )
    let fatalSn = 0
    const held: { p: Player; sn: number }[] = []
    if (kill) {
      // One frame: a `get` of each of 20 players of slot 1, then a request that blocks slot 1's
      // worker, then two more requests of that player (dispatched with it, never started).
      const tasks = victims.map((p) => ledger.request(runNo, CONNS, p, 'get'))
      for (const p of victims) held.push({ p, sn: p.sn })
      tasks.push(ledger.request(runNo, CONNS, blocker, 'block'))
      fatalSn = blocker.sn
      for (let i = 0; i < 2; i++) {
        tasks.push(ledger.request(runNo, CONNS, blocker, 'get'))
        held.push({ p: blocker, sn: blocker.sn })
      }
      expect(encodeTaskFrames(tasks).length).toBe(1)
      await extra.send(tasks)
      await waitFor(() => readFileSync(marks, 'utf8').includes(`blocking ${blocker.uid}`), { timeoutMs: 10_000 })
    } else {
      // A request still running when the stop begins: the drain (phase 2) lasts about 500 ms.
      await extra.send([ledger.request(runNo, CONNS, slow, 'count', { wait: 500 })])
      await waitFor(() => readFileSync(marks, 'utf8').includes(`started ${slow.uid}`), { timeoutMs: 10_000 })
    }
    server.child.kill('SIGTERM')
    let burst: NodeJS.Timeout | undefined
    const burstKeys: string[] = []
    if (!kill) {
      // Once the stop has begun, the slow player also sends bursts of 8 slower requests every
      // 2 ms. All of them must be refused; one accepted after the refusals (bug 1) fills the
      // player's lane beyond what its worker may hold at once, and the rest go to the worker
      // as its earlier ones settle, however late in the stop that is (bug 2).
      await server.line(/"msg":"stopping/)
      burst = setInterval(() => {
        const tasks: Task[] = []
        for (let i = 0; i < 8; i++) {
          tasks.push(ledger.request(runNo, CONNS, slow, 'count', { wait: 20 }))
          burstKeys.push(`${slow.uid}:${slow.sn}`)
        }
        void extra.send(tasks).catch(() => {})
      }, 2)
    }
    const exit = await server.exit
    clearInterval(burst)
    stopLoad()
    for (const c of [...load, extra]) await c.drain()
    for (const c of [...load, extra]) c.close()

    const logs = logLines(server)
    const stoppedLine = logs.find((l) => l.msg === 'stopped') as (LogLine & { stats: StoppedStats }) | undefined
    if (stoppedLine === undefined) {
      failures.push(`run ${runNo}: no "stopped" line (exit ${JSON.stringify(exit)})`)
      continue
    }
    const stats = stoppedLine.stats
    const overflow = (stats.egress.workers.overflow ?? 0) + (stats.egress.master.overflow ?? 0)
    const ofRun = ledger.ofRun(runNo)
    const answeredCount = (): number => {
      ledger.collect()
      return ofRun.filter(([k]) => ledger.answers.has(k)).length
    }
    // What the server sent before it exited is on its way: wait for it (bounded), then count.
    await waitFor(() => answeredCount() + overflow >= stats.client_req, { timeoutMs: 5_000 }).catch(() => {})
    const answered = answeredCount()
    const twice = ofRun.filter(([k]) => (ledger.answers.get(k)?.length ?? 0) > 1).length
    const violations = acceptedAfterRefusal(ledger, runNo)
    const refused = ofRun.filter(([k]) => ledger.answers.get(k)?.some((a) => a.ret === ReplyCode.SHUTTING_DOWN)).length
    const died = logs.filter((l) => l.msg === 'worker died')
    const workerErrors = logs.filter((l) => l.msg === 'worker error')
    console.log(
      JSON.stringify({
        test: kill ? 'stop with a worker killed' : 'stop',
        run: runNo,
        read: stats.client_req,
        answered,
        unanswered: stats.client_req - answered,
        answeredTwice: twice,
        egressOverflow: overflow,
        sent: ofRun.length,
        refused,
        acceptedAfterRefusal: violations.length,
        example: violations[0],
        deaths: stats.deaths,
        lost_in_flight: stats.lost_in_flight.all,
        workerDiedLines: died.length,
        workerErrorLines: workerErrors.map((l) => l.err?.message),
        stop_deadline: stats.discard_tasks.reasons.stop_deadline,
        egressDiscarded: (stats.egress.workers.discarded ?? 0) + (stats.egress.master.discarded ?? 0),
        exit,
      }),
    )
    const check = (ok: boolean, what: string): void => {
      if (!ok) failures.push(`run ${runNo}: ${what}`)
    }
    check(exit.code === 0 && exit.signal === null, `exit ${JSON.stringify(exit)}`)
    check(
      violations.length === 0,
      `${violations.length} requests accepted after an earlier request of their player on their connection was refused -10003 (e.g. ${JSON.stringify(violations[0])})`,
    )
    check(answered + overflow === stats.client_req, `read ${stats.client_req} = answered ${answered} + egress overflow ${overflow}`)
    check(twice === 0, `${twice} requests answered twice`)
    check(workerErrors.length === 0, `worker error lines: ${JSON.stringify(workerErrors.map((l) => l.err?.message))}`)
    if (!kill) {
      // The burst began after the "stopping" line: every request of it the server read is refused.
      const burstAnswers = burstKeys.flatMap((k) => ledger.answers.get(k) ?? [])
      check(burstAnswers.length > 0, 'no request of the burst sent after "stopping" was answered')
      check(
        burstAnswers.every((a) => a.ret === ReplyCode.SHUTTING_DOWN),
        `burst requests answered ${JSON.stringify([...new Set(burstAnswers.map((a) => a.ret))])}, expected only -10003`,
      )
      check(Object.keys(stats.deaths).length === 0, `deaths ${JSON.stringify(stats.deaths)}`)
      check(stats.lost_in_flight.all === 0, `lost_in_flight ${stats.lost_in_flight.all}`)
      check(died.length === 0, `worker died lines: ${JSON.stringify(died)}`)
    } else {
      check(JSON.stringify(stats.deaths) === JSON.stringify({ blocked: 1 }), `deaths ${JSON.stringify(stats.deaths)}, expected { blocked: 1 }`)
      check(stats.lost_in_flight.all === 1, `lost_in_flight ${stats.lost_in_flight.all}, expected 1`)
      check(died.length === 1 && died[0]!.cause === 'blocked', `worker died lines: ${JSON.stringify(died)}`)
      const out = server.stdout()
      check(out.indexOf('"msg":"worker died"') > out.indexOf('"msg":"stopping'), 'the worker died during the stop (after the "stopping" line)')
      const fatal = ledger.answersOf(blocker, fatalSn).map((a) => a.ret)
      check(JSON.stringify(fatal) === JSON.stringify([ReplyCode.HANDLER_FAILED]), `the blocked request answered ${JSON.stringify(fatal)}, expected [-10001]`)
      const heldUnanswered = held.filter(({ p, sn }) => !ledger.answersOf(p, sn).some((a) => a.ret === 0))
      check(heldUnanswered.length === 0, `${heldUnanswered.length} of the ${held.length} other requests the killed worker held not answered with a result`)
    }
  }

  // After the runs: each player's stored counter is the value of its last answered request.
  const stored = await storedCounts(
    db,
    allPlayers.map((p) => p.uid),
  )
  const mismatched: string[] = []
  for (const p of allPlayers) {
    let last: number | undefined
    for (let sn = p.sn; sn >= 1 && last === undefined; sn--) last = ledger.answersOf(p, sn).find((a) => a.ret === 0)?.count
    if ((stored.get(p.uid) ?? 0) !== (last ?? 0)) mismatched.push(`uid ${p.uid}: stored ${stored.get(p.uid)}, last answered ${last}`)
  }
  console.log(
    JSON.stringify({
      test: kill ? 'stop with a worker killed' : 'stop',
      players: allPlayers.length,
      storedCounterMismatches: mismatched.length,
      example: mismatched[0],
    }),
  )
  if (mismatched.length > 0) failures.push(`${mismatched.length} stored counters differ from the last answered value: ${mismatched.slice(0, 5).join('; ')}`)
  expect(failures).toEqual([])
}

describe('graceful stop under open-loop load: every request read is answered exactly once (3 runs, LevelDB)', () => {
  it('SIGTERM: nothing accepted after a refusal, no worker death, read = answered, counters = last answers', async () => {
    await stopRuns(false)
  }, 60_000)

  it('SIGTERM with a worker blocked during the stop: its death counted and logged, its tasks answered, read = answered', async () => {
    await stopRuns(true)
  }, 60_000)
})

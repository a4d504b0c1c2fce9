/**
 * A gated store that fails (docs/sessions.md, "Output gate"; protocol §4, −10008), on the real
 * server process with a redis-server the test owns: players are warmed (3 gated `buy`s each,
 * stored), Redis goes down, and every player sends one gated `buy`:
 * - each is answered −10008 (not stored, nothing applied), none 0, within a bounded time;
 * then Redis comes back and the client retries each failed request until it is answered 0
 * (a retry may meet −10005 or −10008 while the server reconnects; it is sent again):
 * - each failed request succeeds exactly once, and the stored counter (read from Redis and
 *   answered by `get`) equals exactly warm value + successful buys: nothing applied twice;
 * - `stats.sessions.gate` of the `stopped` line counts the −10008 answers (`notStored`) and the
 *   failed gated writes (`failures`).
 * Two ways down: Redis SIGKILLed and started again on its append-only file (connections refused:
 * the gated write fails at once), and Redis SIGSTOPped then SIGCONTed (connections stay open,
 * nothing is answered: the gated write fails when the storage's command timeout, 2 s, ends).
 *
 * Each case prints one JSON line with the figures.
 *
 * KNOWN BUG (the paused case's "nothing applied twice" is `it.fails`): a gated write that timed
 * out is answered -10008 ("nothing applied"), but the write is still in the Redis connection and
 * runs when Redis resumes, with a generation that is still current, so it is applied; the
 * client's retry then applies the buy a second time.
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { pingRedis, sleep, startFakeForwarder, startRedisServer, tempDir, waitFor, type FakeForwarder, type RedisServer } from '@peony/test-utils'
import { ReplyCode } from '@peony/broker-client'
import { RedisStorage } from '@peony/storage/redis'
import type { SessionStats } from '@peony/worker'
import { freePort, run } from './helpers/run-server.ts'
import { Conn, Ledger, logLines, storedCounters, type Answer, type Player } from './helpers/counter-load.ts'

const APP = 'test/fixtures/gate-app.ts'
const PLAYERS = 200
const WARM_BUYS = 3

async function storeFails(outage: 'killed' | 'paused') {
  const redis = await startRedisServer({ persistDir: tempDir() })
  let fwd: FakeForwarder | undefined
  let conn: Conn | undefined
  try {
    fwd = await startFakeForwarder()
    // A DEALER connects to an endpoint nobody has bound yet, and keeps trying until the server binds it.
    const intake = `tcp://127.0.0.1:${await freePort()}`
    conn = new Conn(intake)
    return await scenario(outage, redis, fwd, conn, intake)
  } finally {
    conn?.close()
    await fwd?.close()
    redis.resume()
    await redis.stop()
  }
}

async function scenario(outage: 'killed' | 'paused', redis: RedisServer, fwd: FakeForwarder, conn: Conn, intake: string) {
  const ledger = new Ledger(fwd)
  const prefix = `peony-gatetest:${process.pid}:${outage}:`
  const server = run([
    '--app', APP, '--intake', intake, '--forwarder', fwd.endpoint, '--workers', '2', '--log-level', 'info',
    '--storage', 'redis', '--redis-url', redis.url, '--redis-prefix', prefix,
    '--max-unflushed-age-ms', '3600000', '--max-queue-wait-ms', '0',
  ])
  await server.line(/^peony ready: /)
  const players: Player[] = Array.from({ length: PLAYERS }, (_, i) => ledger.player(i + 1))
  /** Sends `cmd` for `ps` in one frame burst and waits for every answer; returns them by uid. */
  const round = async (ps: Player[], cmd: string, timeoutMs = 20_000): Promise<Map<number, Answer>> => {
    const tasks = ps.map((p) => ledger.request(p, cmd))
    const keys = ps.map((p) => `${p.uid}:${p.sn}`)
    await conn.send(tasks)
    await waitFor(() => (ledger.collect(), keys.every((k) => ledger.answers.has(k))), { timeoutMs, intervalMs: 2, message: `answers to ${cmd}` })
    return new Map(keys.map((k, i) => [ps[i]!.uid, ledger.answers.get(k)![0]!]))
  }

  // Warm: every player's session loaded and 3 buys stored.
  for (let i = 1; i <= WARM_BUYS; i++) {
    const as = await round(players, 'buy')
    expect([...as.values()].every((a) => a.ret === 0 && a.count === i)).toBe(true)
  }

  // Redis down; one gated buy per player.
  if (outage === 'killed') await redis.stop()
  else redis.pause()
  const downAt = performance.now()
  const failed = await round(players, 'buy', 30_000)
  const failedRets: Record<string, number> = {}
  for (const a of failed.values()) failedRets[a.ret] = (failedRets[a.ret] ?? 0) + 1
  const failedLatency = [...failed.values()].map((a) => a.at - downAt).sort((x, y) => x - y)

  // Redis back; the client retries each failed request until it is answered 0.
  if (outage === 'killed') await redis.start()
  else redis.resume()
  await waitFor(() => pingRedis(redis.url, 200), { timeoutMs: 10_000 })
  const upAt = performance.now()
  const retryRets: Record<string, number> = {}
  let todo = players.filter((p) => failed.get(p.uid)!.ret !== 0)
  for (let attempt = 0; todo.length > 0 && attempt < 100; attempt++) {
    const as = await round(todo, 'buy')
    for (const a of as.values()) retryRets[a.ret] = (retryRets[a.ret] ?? 0) + 1
    todo = todo.filter((p) => as.get(p.uid)!.ret !== 0)
    if (todo.length > 0) await sleep(100)
  }
  const retriedInMs = Math.round(performance.now() - upAt)
  const got = await round(players, 'get')

  server.child.kill('SIGTERM')
  const exit = await server.exit
  const stoppedLine = logLines<{ msg?: string; stats?: { sessions?: Pick<SessionStats, 'gate' | 'flushErrors'> } }>(server.stdout()).find((l) => l.msg === 'stopped')
  const gate = stoppedLine?.stats?.sessions?.gate

  const stored = await storedCounters(new RedisStorage({ url: redis.url, prefix }), players.map((p) => p.uid))

  // Per player: the buys answered 0, over the whole test.
  const okBuys = new Map<number, number>()
  for (const [k, as] of ledger.answers) {
    const s = ledger.sent.get(k)!
    if (s.cmd === 'buy' && as[0]!.ret === 0) okBuys.set(s.uid, (okBuys.get(s.uid) ?? 0) + 1)
  }
  const twice: { uid: number; stored: number | undefined; get: number | undefined; okBuys: number }[] = []
  const short: typeof twice = []
  for (const p of players) {
    const n = okBuys.get(p.uid) ?? 0
    const s = stored.get(p.uid)
    const g = got.get(p.uid)!.count
    const row = { uid: p.uid, stored: s, get: g, okBuys: n }
    if ((s ?? 0) > n || (g ?? 0) > n) twice.push(row)
    else if ((s ?? 0) < n || (g ?? 0) < n) short.push(row)
  }
  const notStoredAnswers = ledger.all.filter((a) => a.ret === ReplyCode.NOT_STORED).length
  console.log(
    JSON.stringify({
      test: `gated store fails (Redis ${outage})`,
      players: PLAYERS,
      warmBuys: WARM_BUYS,
      duringOutage: failedRets,
      notStoredLatencyMs: { min: Math.round(failedLatency[0]!), max: Math.round(failedLatency.at(-1)!) },
      retries: retryRets,
      retriedInMs,
      appliedTwice: twice.length,
      exampleTwice: twice[0],
      lost: short.length,
      exampleLost: short[0],
      answeredTwice: ledger.answeredTwice(),
      notStoredAnswers,
      stoppedGate: gate,
      stoppedFlushErrors: stoppedLine?.stats?.sessions?.flushErrors,
      exit,
    }),
  )
  return { failedRets, failedLatencyMaxMs: failedLatency.at(-1)!, todo: todo.length, answeredTwice: ledger.answeredTwice(), twice, short, exit, gate, notStoredAnswers }
}

type Result = Awaited<ReturnType<typeof scenario>>

/** Everything but "nothing applied twice": -10008 for all, bounded, retries answered 0 once, nothing lost, stats. */
function checkAnswers(r: Result, outage: 'killed' | 'paused'): void {
  expect(r.failedRets).toEqual({ [ReplyCode.NOT_STORED]: PLAYERS })
  // Bounded: at once when Redis refuses connections; within the storage's 2 s command timeout
  // (plus the group commit and the way back) when it does not answer.
  expect(r.failedLatencyMaxMs).toBeLessThan(outage === 'killed' ? 1000 : 4000)
  expect(r.todo).toBe(0)
  expect(r.answeredTwice).toBe(0)
  expect(r.short).toEqual([])
  expect(r.exit).toEqual({ code: 0, signal: null })
  expect(r.gate).toBeDefined()
  expect(r.gate!.notStored).toBe(r.notStoredAnswers)
  expect(r.gate!.failures).toBeGreaterThanOrEqual(PLAYERS)
  expect(r.gate!.waiting).toBe(0)
}

describe('output gate: a gated store that fails (Redis killed, restarted on its AOF)', () => {
  let r: Result
  beforeAll(async () => {
    r = await storeFails('killed')
  }, 60_000)

  it('every request answered -10008 at once; each retry answered 0 once; stats count them', () => {
    checkAnswers(r, 'killed')
  })

  it('nothing applied twice: stored counter = warm value + successful buys', () => {
    expect(r.twice).toEqual([])
  })
})

describe('output gate: a gated store that times out (Redis paused by SIGSTOP, then SIGCONT)', () => {
  let r: Result
  beforeAll(async () => {
    r = await storeFails('paused')
  }, 60_000)

  it('every request answered -10008 within the 2 s command timeout; each retry answered 0 once; stats count them', () => {
    checkAnswers(r, 'paused')
  })

  // KNOWN BUG (reported with this test, not fixed here): the timed-out write stays in the Redis
  // connection and runs when Redis resumes, before the retry's load (same connection, in order);
  // the generation it carries is still the key's, so it is applied. The client was told -10008
  // ("nothing applied") and its retry applies the buy a second time: every player's counter ends
  // at 5 with 4 buys answered 0 (3 warm + the retry). Remove `.fails` once a timed-out gated write
  // cannot be applied later (or is no longer answered -10008).
  it.fails('nothing applied twice: stored counter = warm value + successful buys', () => {
    expect(r.twice).toEqual([])
  })
})

/**
 * What an operator reads during a fault, on the real server process: Redis (a redis-server this
 * test started) is SIGKILLed for 10 s while players send requests in rounds, some of them already
 * loaded (their writes fail and are retried) and some new (their loads fail), then started again.
 * The server's stdout (the master's lines and every worker thread's) must stay readable: at most
 * one warning or error line per kind per thread per 10 s, each with its PEONY_ code, a `suppressed`
 * count on the lines that stand for others, and the driver's text only as a cause.
 */
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'
import * as zmq from 'zeromq'
import { sleep, startRedisServer, tempDir, type RedisServer } from '@peony/test-utils'
import { startFakeForwarder, type FakeForwarder } from '@peony/fake-forwarder'
import { encodeTaskFrames, packValue, type Task } from '@peony/protocol'
import { freePort, run } from './helpers/run-server.ts'

/** The master's session test app: a counter per player, incremented by every `count` request. */
const COUNTER_APP = fileURLToPath(new URL('../../../packages/master/test/fixtures/session-app.ts', import.meta.url))
const OUTAGE_MS = 10_000
const WINDOW_MS = 10_000
const SUMMARY = 'similar log lines suppressed'

let fwd: FakeForwarder | undefined
let dealer: zmq.Dealer | undefined
let redis: RedisServer | undefined
afterEach(async () => {
  dealer?.close()
  dealer = undefined
  await fwd?.close()
  fwd = undefined
  await redis?.stop()
  redis = undefined
})

/** One pino JSON line of the server. */
interface Line {
  level: number
  time: number
  msg?: string
  slot?: number
  code?: string
  kind?: string
  suppressed?: number
  err?: { message?: string; stack?: string }
  [k: string]: unknown
}

describe('log lines during a 10 s Redis outage under load (real server process)', () => {
  it('at most one line per kind per thread per 10 s, each with its PEONY_ code and the suppressed count', async () => {
    // Redis keeps its data across the outage (an append-only file), as a production one would.
    redis = await startRedisServer({ persistDir: tempDir('peony-redis-aof-') })
    fwd = await startFakeForwarder()
    const intake = `tcp://127.0.0.1:${await freePort()}`
    const server = run([
      ...['--app', COUNTER_APP, '--intake', intake, '--forwarder', fwd.endpoint, '--workers', '2', '--log-level', 'info'],
      ...['--storage', 'redis', '--redis-url', redis.url, '--redis-prefix', `peony-test:${process.pid}:logs:`],
      ...['--flush-interval-ms', '100', '--max-unflushed-age-ms', '200'],
    ])
    await server.line(/^peony ready: /)
    dealer = new zmq.Dealer({ linger: 0, sendHighWaterMark: 0 })
    dealer.connect(intake)

    // Each round: 100 resident players (their changes wait in the retry set while Redis is away)
    // and 20 players never seen before (their loads fail while Redis is away).
    const RESIDENT = 100
    let sn = 0
    let fresh = 1000
    let sent = 0
    const round = async (): Promise<void> => {
      const tasks: Task[] = []
      for (let u = 1; u <= RESIDENT; u++) tasks.push({ cmd: 10, uid: u, nodeId: 1, connId: u, body: packValue({ cmd: 'count', sn: ++sn, data: null }) })
      for (let i = 0; i < 20; i++, fresh++)
        tasks.push({ cmd: 10, uid: fresh, nodeId: 1, connId: fresh, body: packValue({ cmd: 'count', sn: ++sn, data: null }) })
      for (const f of encodeTaskFrames(tasks)) await dealer!.send(f)
      sent += tasks.length
      await sleep(50)
    }
    for (let i = 0; i < 10; i++) await round()
    await fwd.until(sent, 30_000)

    const outageAt = Date.now()
    await redis.stop()
    while (Date.now() - outageAt < OUTAGE_MS) await round()
    await redis.start()
    for (let i = 0; i < 10; i++) await round()
    await fwd.until(sent, 30_000)
    // Let the windows opened during the outage end, so their summary lines are printed.
    await sleep(WINDOW_MS + 500)
    server.child.kill('SIGTERM')
    expect((await server.exit).code).toBe(0)

    const lines: Line[] = []
    for (const l of server.stdout().split('\n')) {
      if (!l.startsWith('{')) continue
      lines.push(JSON.parse(l) as Line)
    }
    const stopped = lines.find((l) => l.msg === 'stopped') as { stats: { sessions: { loadFailures: number; flushErrors: number } } } | undefined
    expect(stopped).toBeDefined()
    const { loadFailures, flushErrors } = stopped!.stats.sessions
    expect(loadFailures).toBeGreaterThan(100)
    expect(flushErrors).toBeGreaterThan(0)

    // A kind, as coarse as the test can tell it: the thread and the code (or message).
    const faults = lines.filter((l) => l.level >= 40)
    const byKind = new Map<string, Line[]>()
    for (const l of faults) {
      const k = `${l.slot === undefined ? 'master' : `slot ${l.slot}`} ${l.code ?? l.msg}`
      byKind.set(k, [...(byKind.get(k) ?? []), l])
    }
    const figures = Object.fromEntries([...byKind].map(([k, ls]) => [k, { lines: ls.length, suppressed: ls.reduce((n, l) => n + (l.suppressed ?? 0), 0) }]))
    console.log(JSON.stringify({ loadFailures, flushErrors, faultLines: faults.length, byKind: figures }))

    // (`time` is stamped when a line is written, after the limiter looked at the clock: on two
    // busy cores a thread can be descheduled between the two for tens of ms, and a worker's line
    // crosses to the master's logger: seen 371 ms late with a benchmark running alongside. A
    // limiter that let lines through would put them ms apart, so 1 s of slack still catches it.)
    expect(
      [...byKind.values()].some((ls) => ls.length >= 2),
      'some kind logged twice: the spacing below is checked',
    ).toBe(true)
    for (const [kind, ls] of byKind) {
      for (let i = 1; i < ls.length; i++) {
        expect(ls[i]!.time - ls[i - 1]!.time, `${kind}: lines ${i - 1} and ${i} closer than ${WINDOW_MS} ms`).toBeGreaterThanOrEqual(WINDOW_MS - 1000)
      }
    }
    for (const l of faults) {
      expect(l.code, `a line without a PEONY_ code: ${JSON.stringify(l).slice(0, 300)}`).toMatch(/^PEONY_[A-Z_]+$/)
      // The driver's own words are a cause, never the message.
      expect(l.msg ?? '').not.toMatch(/Stream isn't writeable|ECONNREFUSED|enableOfflineQueue|Connection is closed/)
    }
    // Nothing is lost in the counting: every failed load is a line of its own or counted in a
    // `suppressed` (on a summary line, which stands for no failure of its own, or on a later line).
    const loadLines = faults.filter((l) => l.code === 'PEONY_SESSION_LOAD_FAILED' || l.code === 'PEONY_SESSION_LOAD_TIMEOUT')
    expect(loadLines.length).toBeGreaterThan(0)
    expect(loadLines.some((l) => (l.suppressed ?? 0) > 0)).toBe(true)
    expect(loadLines.reduce((n, l) => n + (l.msg === SUMMARY ? 0 : 1) + (l.suppressed ?? 0), 0)).toBe(loadFailures)
    // The first line of the kind tells what happened in Peony's words, with the driver's text as the cause.
    const first = loadLines[0]!
    expect(first.msg).toMatch(/Redis storage at redis:\/\/127\.0\.0\.1:\d+ is not reachable/)
    expect(JSON.stringify(first.err)).toMatch(/PEONY_STORAGE_UNAVAILABLE/)
    expect(JSON.stringify(first.err)).toMatch(/Stream isn't writeable|ECONNREFUSED|Connection is closed/)
  }, 60_000)
})

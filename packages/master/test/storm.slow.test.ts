/**
 * A storm of malformed frames from another process (paced at STORM_RATE frames/s: random bytes,
 * truncated values, wrong types, oversized and multipart messages) while good traffic flows.
 * Every good task is answered, every rejection cause is counted, and the log stays bounded
 * (rate-limited per cause). How fast good traffic goes during a storm is a speed figure:
 * `node tools/bench/storm.mjs` measures it against the calm rate (target ≥ 0.8, docs/benchmarks.md).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { Writable } from 'node:stream'
import { afterEach, describe, expect, it } from 'vitest'
import pino from 'pino'
import { sleep, waitFor } from '@peony/test-utils'
import { encodeTaskFrames, type Task } from '@peony/protocol'
import { masterFixture, req } from './helpers.ts'

/**
 * Storm intensity: 3,000 malformed frames/s, about 3× the good traffic's frame rate here. Each
 * costs the server ~20 µs of CPU (mostly zeromq.js's per-message receive, the same as a good
 * 64-task frame), so the good rate's drop scales with it: at ~5,000/s it measured 0.76–0.78.
 */
const STORM_RATE = 3000
const STORM = fileURLToPath(new URL('./peer/storm.mjs', import.meta.url))
const boot = masterFixture()
let storm: ChildProcess | undefined

afterEach(() => {
  storm?.kill('SIGKILL')
  storm = undefined
})

describe('malformed-frame storm', () => {
  it('good traffic is all answered during the storm, every cause is counted, and the log stays bounded', async () => {
    let logLines = 0
    const sink = new Writable({
      write(_chunk, _enc, cb) {
        logLines++
        cb()
      },
    })
    const { master, fwd, broker } = await boot({ maxFrameBytes: 16384, queueMaxSize: 100_000, logger: pino({ level: 'info' }, sink) })
    const intakeEndpoint = broker.endpoint
    const N = 40_000
    const tasks: Task[] = []
    for (let i = 0; i < N; i++) tasks.push(req(1 + (i % 1000), 'echo', { seq: i }))
    const frames = encodeTaskFrames(tasks.slice(0, 64)).length === 1 ? chunk(tasks) : []
    let delivered = 0
    async function goodRun(): Promise<void> {
      for (const f of frames) await broker.sock.send(f)
      delivered += N
      await fwd.until(delivered, 60_000)
    }
    const ROUNDS = 3
    const stormRates: number[] = []
    for (let round = 0; round < ROUNDS; round++) {
      await goodRun()
      // The attacker is on another host in production; here it shares our 2 cores, so its own
      // CPU use runs at the lowest priority and only the server's cost of the storm is measured.
      storm = spawn('nice', ['-n', '19', process.execPath, STORM, intakeEndpoint, String(STORM_RATE), '17000'], { stdio: 'ignore' })
      const rejectedNow = (): number => Object.values(master.stats().rejects).reduce((a, b) => a + b, 0)
      const w0 = rejectedNow()
      await waitFor(() => rejectedNow() > w0 + 500, { timeoutMs: 15_000 })
      const r0 = rejectedNow()
      const t0 = performance.now()
      await goodRun()
      stormRates.push(Math.round((rejectedNow() - r0) / ((performance.now() - t0) / 1000)))
      await sleep(200)
      storm.kill('SIGKILL')
      storm = undefined
      await sleep(100)
    }
    const s = master.stats()
    const rejected = Object.values(s.rejects).reduce((a, b) => a + b, 0)
    console.log(JSON.stringify({ stormRates, rejected, logLines, rejects: s.rejects }))
    expect(rejected).toBeGreaterThan(1000)
    // the niced sender does not always reach its pace on 2 busy cores; the storm must still be one
    expect(Math.max(...stormRates)).toBeGreaterThan(1000)
    for (const code of [
      'PEONY_BROKER_MALFORMED',
      'PEONY_BROKER_FRAME_TOO_LARGE',
      'PEONY_BROKER_MULTIPART',
      'PEONY_BROKER_NOT_A_MAP',
      'PEONY_BROKER_WRONG_TYPE',
      'PEONY_BROKER_MISSING_FIELD',
    ]) {
      expect(s.rejects[code] ?? 0).toBeGreaterThan(0)
    }
    expect(s.client_req).toBe(2 * ROUNDS * N)
    // one line per cause per 10 s window (the first, then a "suppressed" summary), for the whole
    // test (tens of thousands of rejections)
    expect(logLines).toBeLessThan(200)
  }, 60_000)
})

function chunk(tasks: Task[]): Uint8Array[] {
  const out: Uint8Array[] = []
  for (let i = 0; i < tasks.length; i += 64) out.push(...encodeTaskFrames(tasks.slice(i, i + 64)))
  return out
}

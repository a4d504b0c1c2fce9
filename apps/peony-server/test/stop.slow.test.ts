/**
 * Graceful stop under load, with and without the forwarder, on the real server process:
 * SIGTERM arrives while thousands of tasks are queued and more keep coming. Every task the
 * server read is either handled (recorded by the handler itself) or refused with -10003; nothing
 * queued is lost; the process exits 0 within its stop budget.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import * as zmq from 'zeromq'
import { tempDir, waitFor } from '@peony/test-utils'
import { startFakeForwarder, type FakeForwarder } from '@peony/fake-forwarder'
import { encodeTaskFrames, msgpackBodyCodec, packValue, ReplyCode, type Task } from '@peony/protocol'
import { freePort, run } from './helpers/run-server.ts'

let fwd: FakeForwarder | undefined
afterEach(async () => {
  await fwd?.close()
  fwd = undefined
})

function work(sn: number, uid: number): Task {
  return { cmd: 10, uid, nodeId: 1, connId: sn, body: packValue({ cmd: 'work', sn, data: { wait: 2 } }) }
}

async function stopUnderLoad(withForwarder: boolean): Promise<void> {
  const handledFile = join(tempDir(), 'handled.txt')
  writeFileSync(handledFile, '')
  const intake = `tcp://127.0.0.1:${await freePort()}`
  let forwarder = `tcp://127.0.0.1:${await freePort()}`
  if (withForwarder) {
    fwd = await startFakeForwarder()
    forwarder = fwd.endpoint
  }
  const r = run(
    [
      '--app',
      'test/fixtures/stop-app.ts',
      '--intake',
      intake,
      '--forwarder',
      forwarder,
      '--workers',
      '2',
      // 6,000 tasks queued at once may wait past the default queue-wait bound on a busy machine: off here.
      '--queue-max-size',
      '100000',
      '--max-queue-wait-ms',
      '0',
      '--stop-timeout-ms',
      '8000',
      '--log-level',
      'info',
    ],
    { PEONY_TEST_HANDLED: handledFile },
  )
  await r.line(/^peony ready: /)
  const broker = new zmq.Dealer({ sendHighWaterMark: 0 })
  broker.connect(intake)
  const A = 6000
  const B = 2000
  let sn = 0
  const first: Task[] = []
  for (let i = 0; i < A; i++) first.push(work(++sn, 1 + (i % 40)))
  for (const f of encodeTaskFrames(first)) await broker.send(f)
  // Let the server read the first load, then stop it while it is still draining.
  await waitFor(() => readFileSync(handledFile, 'utf8').length > 0, { timeoutMs: 20_000 })
  r.child.kill('SIGTERM')
  await r.line(/stopping/)
  // Tasks that arrive while it drains are refused with -10003, not lost.
  const second: Task[] = []
  for (let i = 0; i < B; i++) second.push(work(++sn, 1 + (i % 40)))
  for (const f of encodeTaskFrames(second)) await broker.send(f)
  const exit = await r.exit
  broker.linger = 0
  broker.close()
  expect(exit, `server stderr:\n${r.stderr()}`).toEqual({ code: 0, signal: null })

  const handled = readFileSync(handledFile, 'utf8').split('\n').filter(Boolean).map(Number)
  expect(new Set(handled).size).toBe(handled.length) // none twice
  const stopped = r
    .stdout()
    .split('\n')
    .find((l) => l.includes('"msg":"stopped"'))
  expect(stopped).toBeDefined()
  const stats = (
    JSON.parse(stopped!) as {
      stats: {
        client_req: number
        refused: Record<string, number>
        discard_tasks: { all: number; reasons: Record<string, number> }
        lost_in_flight: { all: number }
      }
    }
  ).stats
  const refused = stats.refused[String(ReplyCode.SHUTTING_DOWN)] ?? 0
  // Everything the server read is accounted for: handled or refused with -10003; nothing lost.
  expect(stats.client_req).toBe(A + B)
  expect(handled.length + refused).toBe(A + B)
  expect(stats.lost_in_flight.all).toBe(0)
  expect(stats.discard_tasks.reasons.stop_deadline).toBe(0)
  // All of the first load was queued before the stop began: all of it was handled.
  for (let i = 1; i <= A; i++) if (!handled.includes(i)) throw new Error(`task ${i} of the first load was not handled`)
  if (withForwarder) {
    await waitFor(() => fwd!.messages.length >= A + B, { timeoutMs: 10_000 })
    let ok = 0
    let shuttingDown = 0
    for (const m of fwd!.messages) {
      if (m.cmd !== 220) continue
      const body = msgpackBodyCodec.decodeReply(m.body) as { ret: number }
      if (body.ret === 0) ok++
      else if (body.ret === ReplyCode.SHUTTING_DOWN) shuttingDown++
    }
    expect(ok).toBe(handled.length)
    expect(shuttingDown).toBe(refused)
  }
}

describe('graceful stop under load', () => {
  it('with the forwarder up: every read task handled or answered -10003, exit 0', async () => {
    await stopUnderLoad(true)
  }, 90_000)

  it('with no forwarder at all: still exits 0, nothing queued lost', async () => {
    await stopUnderLoad(false)
  }, 90_000)
})

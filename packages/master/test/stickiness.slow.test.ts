/**
 * Stickiness and order at scale: 2 brokers × 100k tasks × 1,000 uids × 2 workers, handlers that
 * await 0–2 ms on half the tasks. Every reply is checked: per (broker, uid) the sequence numbers
 * arrive in order with no gap, every uid is served by one worker only, and each worker owns at
 * least 40 % of the uids.
 */
import { describe, expect, it, onTestFinished } from 'vitest'
import { msgpackBodyCodec, type Task } from '@peony/protocol'
import { masterFixture, req, TestBroker } from './helpers.ts'

const boot = masterFixture()

describe('stickiness and per-uid order', () => {
  it('2 brokers × 100k tasks × 1,000 uids × 2 workers, async handlers', async () => {
    const PER_BROKER = 100_000
    const UIDS = 1000
    // the fixture's broker is the first of the two
    const {
      master,
      fwd,
      broker: first,
    } = await boot({
      queueMaxSize: 2 * PER_BROKER,
      // 200k tasks queued at once wait longer than the default queue-wait bound: this test is about order
      maxQueueWaitMs: 0,
      // 200k replies can outrun the in-test forwarder; this test is about order, not egress capacity
      egressBufferMax: 4 * PER_BROKER,
      stopTimeoutMs: 10_000,
    })
    const sends: Promise<void>[] = []
    const second = new TestBroker(first.endpoint)
    onTestFinished(() => second.close())
    for (let b = 0; b < 2; b++) {
      const broker = b === 0 ? first : second
      const tasks: Task[] = []
      for (let i = 0; i < PER_BROKER; i++) {
        const uid = 1 + (i % UIDS)
        const seq = Math.floor(i / UIDS)
        const wait = i % 2 === 0 ? (i >> 1) % 3 : 0
        tasks.push(req(uid, 'echo', { b, seq, wait }))
      }
      sends.push(broker.send(tasks))
    }
    await Promise.all(sends)
    await fwd.until(2 * PER_BROKER, 120_000)

    const next = new Map<string, number>()
    const owner = new Map<unknown, unknown>()
    let outOfOrder = 0
    for (const m of fwd.messages) {
      if (m.cmd !== 220) continue
      const body = msgpackBodyCodec.decodeReply(m.body) as { ret: number; data: { b: number; seq: number; slot: number } }
      expect(body.ret).toBe(0)
      const uid = Number(m.connId) - 1000
      const key = body.data.b + ':' + uid
      if ((next.get(key) ?? 0) !== body.data.seq) outOfOrder++
      next.set(key, body.data.seq + 1)
      const o = owner.get(uid)
      if (o === undefined) owner.set(uid, body.data.slot)
      else expect(body.data.slot).toBe(o)
    }
    expect(outOfOrder).toBe(0)
    expect(next.size).toBe(2 * UIDS)
    for (const v of next.values()) expect(v).toBe(PER_BROKER / UIDS)
    const perSlot = [0, 0]
    for (const s of owner.values()) perSlot[s as number]!++
    expect(perSlot[0]! / UIDS).toBeGreaterThanOrEqual(0.4)
    expect(perSlot[1]! / UIDS).toBeGreaterThanOrEqual(0.4)
    const s = master.stats()
    expect(s.client_req).toBe(2 * PER_BROKER)
    expect(s.discard_tasks.all).toBe(0)
    expect(s.egress.workers.overflow ?? 0).toBe(0)
  }, 180_000)
})

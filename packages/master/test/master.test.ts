import { Writable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import pino from 'pino'
import { waitFor } from '@peony/test-utils'
import { packValue, ReplyCode, type Task } from '@peony/protocol'
import { createMaster, masterDefaults } from '../src/index.ts'
import { masterFixture, replies, req, TEST_APP } from './helpers.ts'

const boot = masterFixture({ stopTimeoutMs: 5_000 })

describe('master', () => {
  it('routes every task of a uid to one worker, in order, and replies through egress', async () => {
    const { master, fwd, broker } = await boot()
    const tasks: Task[] = []
    for (let seq = 0; seq < 20; seq++) for (let uid = 1; uid <= 100; uid++) tasks.push(req(uid, 'echo', { b: uid, seq }))
    await broker.send(tasks)
    await fwd.until(tasks.length, 20_000)
    const rs = replies(fwd.messages)
    expect(rs).toHaveLength(2000)
    const slotOf = new Map<number, unknown>()
    const last = new Map<number, number>()
    for (const r of rs) {
      expect(r.ret).toBe(0)
      const d = r.body.data!
      const uid = d.b as number
      if (slotOf.has(uid)) expect(d.slot).toBe(slotOf.get(uid))
      else slotOf.set(uid, d.slot)
      expect(d.seq).toBe((last.get(uid) ?? -1) + 1)
      last.set(uid, d.seq as number)
      expect(d.slot).toBe(master.slotOf({ cmd: 10, uid }))
    }
    const s = master.stats()
    expect(s.client_req).toBe(2000)
    expect(s.workers).toBe(2)
    expect(s.worker_req.workers[0]! + s.worker_req.workers[1]!).toBe(2000)
    expect(s.worker_req.workers[0]).toBeGreaterThan(0)
    expect(s.worker_req.workers[1]).toBeGreaterThan(0)
  })

  it('keeps at most laneKeepIdle idle lanes per worker, and a player whose lane was deleted keeps its worker and order', async () => {
    expect(() => createMaster({ serverId: 't', appModule: TEST_APP, laneKeepIdle: -1 })).toThrow(/laneKeepIdle/)
    const { master, fwd, broker } = await boot({ laneKeepIdle: 3 })
    // 200 players once each: every lane goes idle; each worker keeps 3 of them.
    const once: Task[] = []
    for (let uid = 1; uid <= 200; uid++) once.push(req(uid, 'echo', { b: uid, seq: 0 }))
    await broker.send(once)
    await fwd.until(200, 20_000)
    await waitFor(() => master.stats().in_flight.all === 0)
    expect(master.stats().lanes.workers).toEqual([3, 3])
    // They come back with 5 tasks each: their lanes are created again, same worker, same order.
    const again: Task[] = []
    for (let seq = 1; seq <= 5; seq++) for (let uid = 1; uid <= 200; uid++) again.push(req(uid, 'echo', { b: uid, seq }))
    await broker.send(again)
    await fwd.until(1200, 20_000)
    const slotOf = new Map<number, unknown>()
    const last = new Map<number, number>()
    for (const r of replies(fwd.messages)) {
      expect(r.ret).toBe(0)
      const d = r.body.data!
      const uid = d.b as number
      if (slotOf.has(uid)) expect(d.slot).toBe(slotOf.get(uid))
      else slotOf.set(uid, d.slot)
      expect(d.seq).toBe((last.get(uid) ?? -1) + 1)
      last.set(uid, d.seq as number)
    }
    expect([...last.values()].every((s) => s === 5)).toBe(true)
    await waitFor(() => master.stats().in_flight.all === 0)
    expect(master.stats().lanes.all).toBe(6)
  })

  it('answers an unknown body cmd with -10000 and an undecodable body with -10004, echoing cmd and sn', async () => {
    const { fwd, broker } = await boot()
    await broker.send([
      { cmd: 10, uid: 5, nodeId: 1, connId: 2, tag: 9, body: packValue({ cmd: 'nope', sn: 42 }) },
      { cmd: 10, uid: 5, nodeId: 1, connId: 3, body: new Uint8Array([0xc1]) },
    ])
    await fwd.until(2)
    const rs = replies(fwd.messages)
    expect(rs[0]!.ret).toBe(ReplyCode.NO_HANDLER)
    expect(rs[0]!.body).toMatchObject({ cmd: 'nope', sn: 42, ret: ReplyCode.NO_HANDLER })
    expect(rs[0]!.msg).toMatchObject({ nodeId: 1, connId: 2, tag: 9 })
    expect(rs[1]!.ret).toBe(ReplyCode.BODY_UNDECODABLE)
  })

  it('refuses client requests with -10002 when a worker queue is full, but never 15/20', async () => {
    const { master, fwd, broker } = await boot({ queueMaxSize: 5, laneMaxInFlight: 1, claimedMaxSize: 1, groups: [{ id: 1, count: 1 }] })
    const tasks: Task[] = [req(1, 'slow', { ms: 300 })]
    for (let i = 0; i < 20; i++) tasks.push(req(2 + i, 'echo', { seq: i }))
    for (let i = 0; i < 10; i++) tasks.push({ cmd: 20, uid: 100 + i, nodeId: 7, connId: 1 })
    await broker.send(tasks, 1000)
    await waitFor(() => master.stats().discard_tasks.reasons.queue_full > 0)
    await waitFor(() => master.stats().pending_tasks.all === 0 && master.stats().in_flight.all === 0, { timeoutMs: 10_000 })
    const s = master.stats()
    const refused = replies(fwd.messages).filter((r) => r.ret === ReplyCode.QUEUE_FULL)
    expect(refused.length).toBe(s.discard_tasks.reasons.queue_full)
    expect(refused.length).toBeGreaterThan(0)
    // every client request got exactly one answer; the 10 close tasks were all accepted
    await waitFor(() => replies(fwd.messages).length === 21)
    expect(s.discard_tasks.all).toBe(refused.length)
    expect(refused[0]!.body.ret).toBe(ReplyCode.QUEUE_FULL)
    expect(refused[0]!.body.cmd).toBe('echo')
  })

  it('sheds a client request that waited past maxQueueWaitMs with -10002 (queue_wait), never 15/20, and runs fresh ones', async () => {
    const { master, fwd, broker } = await boot({ maxQueueWaitMs: 200, laneMaxInFlight: 1, claimedMaxSize: 1, groups: [{ id: 1, count: 1 }] })
    // The one worker is busy for 600 ms; everything behind it waits in the master.
    const tasks: Task[] = [req(1, 'slow', { ms: 600 })]
    for (let i = 0; i < 10; i++) tasks.push(req(2 + i, 'echo', { seq: i }, {}, 100 + i))
    for (let i = 0; i < 5; i++) tasks.push({ cmd: 20, uid: 100 + i, nodeId: 7, connId: 1 })
    await broker.send(tasks, 1000)
    await waitFor(() => master.stats().pending_tasks.all === 0 && master.stats().in_flight.all === 0, { timeoutMs: 10_000 })
    await waitFor(() => replies(fwd.messages).length === 11)
    const s = master.stats()
    const shed = replies(fwd.messages).filter((r) => r.ret === ReplyCode.QUEUE_FULL)
    // all 10 waited ~600 ms > 200: each answered once, with its cmd and sn echoed; the close tasks all ran
    expect(shed.map((r) => Number(r.body.sn)).sort((a, b) => a - b)).toEqual([100, 101, 102, 103, 104, 105, 106, 107, 108, 109])
    expect(shed[0]!.body.cmd).toBe('echo')
    expect(s.discard_tasks.reasons.queue_wait).toBe(10)
    expect(s.discard_tasks.all).toBe(10)
    // a request that arrives now does not wait, and runs
    await broker.send([req(50, 'echo', { seq: 50 }, {}, 500)])
    await waitFor(() => replies(fwd.messages).length === 12)
    expect(replies(fwd.messages).at(-1)!.ret).toBe(0)
  })

  it('with egressAck, replies carry sender and contiguous seqs (the egress thread re-encodes what workers journaled)', async () => {
    const { fwd, broker } = await boot({ egressAck: true }, { ack: true })
    const tasks: Task[] = []
    for (let uid = 1; uid <= 50; uid++) tasks.push(req(uid, 'echo', { b: uid }, {}, uid))
    await broker.send(tasks)
    await fwd.until(50)
    const rs = replies(fwd.messages)
    expect(rs.map((r) => Number(r.body.sn)).sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1))
    expect(rs.every((r) => r.ret === 0 && typeof (r.msg as { sender?: unknown }).sender === 'string')).toBe(true)
    // one egress thread sender: its seqs are 1…50 with no gap
    expect(fwd.messages.map((m) => Number(m.seq)).sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1))
  })

  it('answers -10007 when the router names no group', async () => {
    const { master, fwd, broker } = await boot({ router: (t) => (t.uid === 13 ? 99 : 1), groups: [{ id: 1, count: 1 }] })
    await broker.send([req(13, 'echo', {}), req(14, 'echo', {})])
    await fwd.until(2)
    expect(
      replies(fwd.messages)
        .map((r) => r.ret)
        .sort(),
    ).toEqual([ReplyCode.NO_ROUTE, 0].sort())
    expect(master.stats().discard_tasks.reasons.no_route).toBe(1)
  })

  it('a refusal of a request with a uint64 sn (> 2^63-1) echoes it exactly; the rest of its frame is served', async () => {
    const { master, fwd, broker } = await boot({ router: (t) => (t.uid === 13 ? 99 : 1), groups: [{ id: 1, count: 1 }] })
    await broker.send([req(13, 'echo', {}, {}, 2n ** 64n - 1n), req(14, 'echo', {}, {}, 5), req(15, 'echo', {}, {}, 6)])
    await fwd.until(3)
    const rs = replies(fwd.messages)
    expect(rs.map((r) => r.ret).sort()).toEqual([ReplyCode.NO_ROUTE, 0, 0].sort())
    expect(rs.find((r) => r.ret === ReplyCode.NO_ROUTE)!.body).toEqual({ cmd: 'echo', sn: 2n ** 64n - 1n, ret: ReplyCode.NO_ROUTE })
    expect(master.stats().discard_tasks.reasons.no_route).toBe(1)
  })

  it('a router that throws: every task is answered -10007, the log gets one line per 10 s and a count at stop', async () => {
    const lines: Record<string, unknown>[] = []
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>)
        cb()
      },
    })
    const router = (t: Task): number => {
      if (t.uid !== 1) throw new Error('no group for this uid')
      return 1
    }
    const { master, fwd, broker } = await boot({ router, groups: [{ id: 1, count: 1 }], logger: pino({ level: 'warn' }, sink) })
    const tasks: Task[] = []
    for (let uid = 2; uid <= 101; uid++) tasks.push(req(uid, 'echo', {}))
    await broker.send(tasks)
    await fwd.until(100)
    expect(replies(fwd.messages).every((r) => r.ret === ReplyCode.NO_ROUTE)).toBe(true)
    const routerLines = () => lines.filter((l) => l.code === 'PEONY_ROUTER_FAILED')
    expect(routerLines()).toHaveLength(1)
    expect(routerLines()[0]).toMatchObject({ msg: 'group router threw; task has no route', err: { message: 'no group for this uid' } })
    await master.stop()
    expect(routerLines().slice(1)).toEqual([expect.objectContaining({ msg: 'similar log lines suppressed', kind: 'router-throw', suppressed: 99 })])
    // the discards (-10007) are a kind of their own
    expect(lines.filter((l) => l.msg === 'task not handled')).toHaveLength(1)
  })

  it('starts the storage thread after the workers load, for an app without sessions too, and serves', async () => {
    // The workers close their storage ports (no sessions) before the storage thread exists.
    const { master, fwd, broker } = await boot({ storage: { driver: 'memory' } })
    expect(master.stats().storage).toEqual({ driver: 'memory', state: 'open' })
    await broker.send([req(5, 'echo', { seq: 1 })])
    await fwd.until(1)
    expect(replies(fwd.messages)[0]!.ret).toBe(0)
    await master.stop()
    expect(master.stats().storage.state).toBe('closed')
  })

  it('keeps a uid on its shard when the worker count of a group changes by a divisor', () => {
    const a = createMaster({ serverId: 'a', appModule: TEST_APP, groups: [{ id: 1, count: 2 }] })
    const b = createMaster({ serverId: 'b', appModule: TEST_APP, groups: [{ id: 1, count: 4 }] })
    for (let uid = 1; uid < 500; uid++) expect(b.slotOf({ cmd: 10, uid })! % 2).toBe(a.slotOf({ cmd: 10, uid }))
  })

  it('rejects bad options with clear errors', () => {
    expect(() => createMaster({ serverId: '', appModule: TEST_APP })).toThrow(/serverId/)
    expect(() => createMaster({ serverId: 'x', appModule: TEST_APP, groups: [{ id: 1, count: 0 }] })).toThrow(/count/)
    expect(() =>
      createMaster({
        serverId: 'x',
        appModule: TEST_APP,
        groups: [
          { id: 1, count: 1 },
          { id: 1, count: 1 },
        ],
      }),
    ).toThrow(/duplicate/)
  })

  it('checks the options it shares with the server against the same definitions (one range each), every problem at once', () => {
    // maxFrameBytes: 1 KiB–256 MiB, the server's documented range (the master alone took ≥ 64 before).
    expect(() => createMaster({ serverId: 'x', appModule: TEST_APP, maxFrameBytes: 512 })).toThrow(
      /maxFrameBytes must be an integer from 1024 to 268435456 \(bytes\) \(got 512\)/,
    )
    expect(() => createMaster({ serverId: 'x', appModule: TEST_APP, shards: 70_000 })).toThrow(/shards must be an integer from 1 to 65536/)
    let err: unknown
    try {
      createMaster({ serverId: 'x', appModule: TEST_APP, queueMaxSize: 0, spareWorkers: 2, respawnMaxDelayMs: -1 })
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(RangeError)
    expect((err as Error).message.split('; ').map((m) => m.split(' ')[2])).toEqual(['queueMaxSize', 'spareWorkers', 'respawnMaxDelayMs'])
    expect(masterDefaults).toMatchObject({
      maxFrameBytes: 1024 * 1024,
      laneKeepIdle: 8192,
      intakeEndpoints: ['tcp://127.0.0.1:9250'],
      groups: [{ id: 1, count: 2 }],
    })
  })
})

describe('work timeout', () => {
  it('answers -10001 for a handler past its deadline, counts it, keeps its lane waiting, and keeps the worker', async () => {
    const { master, fwd, broker } = await boot({ workTimeoutMs: 300, groups: [{ id: 1, count: 1 }] })
    await broker.send([req(1, 'slow', { ms: 1200 }, {}, 1), req(1, 'echo', { seq: 2 }, {}, 2), req(2, 'echo', { seq: 3 }, {}, 3)])
    await fwd.until(3, 10_000)
    const rs = replies(fwd.messages)
    // uid 2 is not held up; uid 1's timeout answer comes first, its next task only after the slow one settled
    expect(rs.map((r) => [r.body.sn, r.ret])).toEqual([
      [3, 0],
      [1, ReplyCode.HANDLER_FAILED],
      [2, 0],
    ])
    await waitFor(() => master.stats().handlers.timed_out === 1)
    const s = master.stats()
    expect(s.respawns.all).toBe(0)
    expect(s.deaths).toEqual({})
    // the late reply of the timed-out handler was dropped: one answer per request
    await new Promise((r) => setTimeout(r, 1000))
    expect(replies(fwd.messages)).toHaveLength(3)
  })
})

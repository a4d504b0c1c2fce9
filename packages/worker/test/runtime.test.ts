import { type EgressMessage, isPeonyError, msgpackBodyCodec, packValue, type Task } from '@peony/protocol'
import fc from 'fast-check'
import { describe, expect, test } from 'vitest'
import { WorkerErrorCode, createApp, type PeonyApp } from '@peony/worker'
import { ManualClock, WorkerRuntime, createMemoryLogger, type TaskOutcome } from '@peony/worker/host'
import { createTestHarness } from '@peony/worker/testing'

const info = { slot: 0, groupId: 1, index: 0, serverId: 's', generation: 0 }
const idle = (): Promise<void> => new Promise((r) => setImmediate(r))

function body(cmd: number | string, data?: unknown, sn?: number): Uint8Array {
  return packValue({ cmd, sn, data })
}

/** A runtime with a recording host. */
function host(app: PeonyApp, workTimeoutMs = 0) {
  const clock = new ManualClock(1_000)
  const calls: string[] = []
  const egress: { msg: EgressMessage; taskId: number | undefined }[] = []
  const outcomes = new Map<number, TaskOutcome>()
  const logger = createMemoryLogger()
  const runtime = new WorkerRuntime({
    app,
    info,
    clock,
    logger,
    workTimeoutMs,
    egress: { send: (msg, taskId) => void egress.push({ msg, taskId }) },
    onTaskStart: (id) => void calls.push(`start ${id}`),
    onTaskDone: (id, outcome) => {
      calls.push(`done ${id} ${outcome}`)
      outcomes.set(id, outcome)
    },
  })
  const replies = (taskId: number) =>
    egress.filter((e) => e.taskId === taskId && e.msg.cmd === 220).map((e) => msgpackBodyCodec.decodeReply((e.msg as { body: Uint8Array }).body))
  return { runtime, clock, calls, egress, outcomes, replies, logger }
}

describe('lanes', () => {
  test('per uid strictly one after another with async handlers, other uids interleave', async () => {
    const events: string[] = []
    const app = createApp().route('work', async (req) => {
      const { name, ms } = req.data as { name: string; ms: number }
      events.push(`start ${name}`)
      await req.worker.sleep(ms)
      events.push(`end ${name}`)
    })
    const { runtime, clock } = host(app)
    await runtime.start()
    runtime.dispatch(1, { cmd: 10, uid: 1, body: body('work', { name: 'a1', ms: 50 }) })
    runtime.dispatch(2, { cmd: 10, uid: 1, body: body('work', { name: 'a2', ms: 10 }) })
    runtime.dispatch(3, { cmd: 10, uid: 2, body: body('work', { name: 'b1', ms: 20 }) })
    runtime.dispatch(4, { cmd: 10, nodeId: 1, connId: 5, body: body('work', { name: 'c1', ms: 5 }) })
    expect(events).toEqual(['start a1', 'start b1', 'start c1'])
    expect(runtime.stats()).toMatchObject({ running: 3, queued: 1, lanes: 3 })
    await clock.advanceAsync(100)
    expect(events).toEqual(['start a1', 'start b1', 'start c1', 'end c1', 'end b1', 'end a1', 'start a2', 'end a2'])
    await runtime.stop()
    expect(runtime.stats()).toMatchObject({ handled: 4, ok: 4, running: 0, queued: 0, lanes: 0 })
  })

  test('a lane is deleted once it has nothing queued or running', async () => {
    let release: () => void = () => {}
    const app = createApp()
      .route('wait', () => new Promise<void>((r) => (release = r)))
      .route('sync', () => {})
    const { runtime } = host(app)
    await runtime.start()
    runtime.dispatch(1, { cmd: 10, uid: 'p', body: body('sync') })
    expect(runtime.stats().lanes).toBe(0)
    runtime.dispatch(2, { cmd: 10, uid: 'p', body: body('wait') })
    runtime.dispatch(3, { cmd: 10, uid: 'p', body: body('sync') })
    expect(runtime.stats()).toMatchObject({ lanes: 1, running: 1, queued: 1 })
    release()
    await idle()
    expect(runtime.stats()).toMatchObject({ lanes: 0, running: 0, queued: 0, handled: 3 })
    await runtime.stop()
  })

  test('property: any mix of uids and delays keeps per-key order and never overlaps a key', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ key: fc.integer({ min: 1, max: 4 }), ms: fc.integer({ min: 0, max: 30 }), sync: fc.boolean() }), { maxLength: 40 }),
        async (tasks) => {
          const log: { key: number; i: number; phase: 'start' | 'end' }[] = []
          const app = createApp().route('t', (req) => {
            const { i, ms, sync } = req.data as { i: number; ms: number; sync: boolean }
            const key = req.uid as number
            log.push({ key, i, phase: 'start' })
            if (sync) {
              log.push({ key, i, phase: 'end' })
              return undefined
            }
            return req.worker.sleep(ms).then(() => void log.push({ key, i, phase: 'end' }))
          })
          const { runtime, clock, outcomes } = host(app)
          await runtime.start()
          tasks.forEach((t, i) => runtime.dispatch(i + 1, { cmd: 10, uid: t.key, body: body('t', { i, ms: t.ms, sync: t.sync }) }))
          await clock.runAllAsync()
          await runtime.stop()
          expect(outcomes.size).toBe(tasks.length)
          for (let key = 1; key <= 4; key++) {
            const mine = log.filter((e) => e.key === key)
            const expected = tasks.flatMap((t, i) =>
              t.key === key
                ? [
                    { key, i, phase: 'start' },
                    { key, i, phase: 'end' },
                  ]
                : [],
            )
            expect(mine).toEqual(expected)
          }
        },
      ),
      { numRuns: 60 },
    )
  })
})

describe('onTaskStart / onTaskDone', () => {
  test('start right before user code, done after onRequestEnd; no start for tasks that run no user code', async () => {
    const calls: string[] = []
    const app = createApp()
      .addHook('preRequest', () => void calls.push('preRequest'))
      .addHook('onRequestEnd', () => void calls.push('onRequestEnd'))
      .route('x', () => void calls.push('handler'))
    const clock = new ManualClock()
    const runtime = new WorkerRuntime({
      app,
      info,
      clock,
      logger: createMemoryLogger(),
      egress: { send: () => {} },
      onTaskStart: (id) => void calls.push(`start ${id}`),
      onTaskDone: (id, o) => void calls.push(`done ${id} ${o}`),
    })
    await runtime.start()
    runtime.dispatch(1, { cmd: 10, uid: 1, nodeId: 1, connId: 1, body: body('x') })
    runtime.dispatch(2, { cmd: 10, uid: 1, nodeId: 1, connId: 1, body: body('unknown') })
    runtime.dispatch(3, { cmd: 10, uid: 1, nodeId: 1, connId: 1, body: new Uint8Array([0xc1]) })
    runtime.dispatch(4, { cmd: 99, uid: 1 })
    await runtime.stop()
    expect(calls).toEqual(['start 1', 'preRequest', 'handler', 'onRequestEnd', 'done 1 ok', 'done 2 no-handler', 'done 3 bad-body', 'done 4 no-handler'])
  })

  test('an async task reports done only after it settled', async () => {
    let release: () => void = () => {}
    const app = createApp().route('x', () => new Promise<void>((r) => (release = r)))
    const { runtime, calls } = host(app)
    await runtime.start()
    runtime.dispatch(7, { cmd: 10, uid: 1, body: body('x') })
    await idle()
    expect(calls).toEqual(['start 7'])
    release()
    await idle()
    expect(calls).toEqual(['start 7', 'done 7 ok'])
    await runtime.stop()
  })
})

describe('automatic replies', () => {
  test('unknown body cmd → -10000 with cmd and sn echoed, node/conn/tag kept', async () => {
    const { runtime, egress, replies, outcomes } = host(createApp())
    await runtime.start()
    runtime.dispatch(1, { cmd: 10, uid: 5, nodeId: 3, connId: 2n ** 60n, tag: 77, body: body('nope', { a: 1 }, 41) })
    expect(egress).toHaveLength(1)
    expect(egress[0]?.msg).toMatchObject({ cmd: 220, nodeId: 3, connId: 2n ** 60n, tag: 77, ret: -10000 })
    expect(replies(1)).toEqual([{ cmd: 'nope', sn: 41, ret: -10000 }])
    expect(outcomes.get(1)).toBe('no-handler')
    expect(runtime.stats()).toMatchObject({ noHandler: 1, handled: 1 })
    await runtime.stop()
  })

  test('undecodable body → -10004, echoing cmd/sn when they can be read; an empty 10 body too', async () => {
    const { runtime, replies, outcomes } = host(createApp().route('x', () => {}))
    await runtime.start()
    // a map with a readable cmd and sn but a float sn... no: a map whose cmd is a bool (unroutable), sn readable
    runtime.dispatch(1, { cmd: 10, nodeId: 1, connId: 1, body: packValue({ cmd: true, sn: 9 }) })
    // truncated: the map header says 3 entries, only cmd/sn present
    const truncated = packValue({ cmd: 'x', sn: 8, data: 'long string here' }).subarray(0, 12)
    runtime.dispatch(2, { cmd: 10, nodeId: 1, connId: 1, body: truncated })
    runtime.dispatch(3, { cmd: 10, nodeId: 1, connId: 1 }) // no body at all
    runtime.dispatch(4, { cmd: 10, nodeId: 1, connId: 1, body: new Uint8Array([0x92, 1, 2]) }) // not a map
    expect(replies(1)).toEqual([{ sn: 9, ret: -10004 }])
    expect(replies(2)).toEqual([{ cmd: 'x', sn: 8, ret: -10004 }])
    expect(replies(3)).toEqual([{ ret: -10004 }])
    expect(replies(4)).toEqual([{ ret: -10004 }])
    expect([...outcomes.values()]).toEqual(['bad-body', 'bad-body', 'bad-body', 'bad-body'])
    expect(runtime.stats().badBody).toBe(4)
    await runtime.stop()
  })

  test('no automatic reply without a connection, nor for a 15/20/generic task', async () => {
    const app = createApp()
      .route('boom', () => {
        throw new Error('x')
      })
      .addHook('onClientClosed', () => {
        throw new Error('y')
      })
    const { runtime, egress, outcomes } = host(app)
    await runtime.start()
    runtime.dispatch(1, { cmd: 100, uid: 9, body: body('nope') })
    runtime.dispatch(2, { cmd: 100, uid: 9, body: new Uint8Array([0xc1]) })
    runtime.dispatch(3, { cmd: 100, uid: 9, body: body('boom') })
    runtime.dispatch(4, { cmd: 20, nodeId: 1, connId: 1 })
    await runtime.stop()
    expect(egress).toEqual([])
    expect([...outcomes.values()]).toEqual(['no-handler', 'bad-body', 'failed', 'failed'])
  })

  test('a 100 task routes on its body cmd and is answered when it names a connection', async () => {
    const app = createApp().route('relay', (req) => void req.reply({ via: req.taskCmd }))
    const { runtime, replies } = host(app)
    await runtime.start()
    runtime.dispatch(1, { cmd: 100, nodeId: 2, connId: 3, body: body('relay', undefined, 5) })
    expect(replies(1)).toEqual([{ cmd: 'relay', sn: 5, ret: 0, data: { via: 100 } }])
    await runtime.stop()
  })
})

describe('failures', () => {
  test('a throwing handler gets -10001 and the next task of that uid still runs', async () => {
    const app = createApp()
      .route('boom', async () => {
        await null
        throw new Error('kaput')
      })
      .route('ok', (req) => void req.reply('fine'))
    const { runtime, replies, outcomes } = host(app)
    await runtime.start()
    runtime.dispatch(1, { cmd: 10, uid: 3, nodeId: 1, connId: 1, body: body('boom', undefined, 1) })
    runtime.dispatch(2, { cmd: 10, uid: 3, nodeId: 1, connId: 1, body: body('ok', undefined, 2) })
    await runtime.stop()
    expect(replies(1)).toEqual([{ cmd: 'boom', sn: 1, ret: -10001 }])
    expect(replies(2)).toEqual([{ cmd: 'ok', sn: 2, ret: 0, data: 'fine' }])
    expect(outcomes.get(1)).toBe('failed')
    expect(outcomes.get(2)).toBe('ok')
    expect(runtime.stats()).toMatchObject({ failed: 1, ok: 1, handled: 2 })
  })

  test('a reply whose data cannot be encoded throws in the handler, which then gets -10001', async () => {
    const app = createApp().route('x', (req) => void req.reply({ f: () => 1 }))
    const { runtime, replies, outcomes } = host(app)
    await runtime.start()
    runtime.dispatch(1, { cmd: 10, nodeId: 1, connId: 1, body: body('x', undefined, 3) })
    await runtime.stop()
    expect(replies(1)).toEqual([{ cmd: 'x', sn: 3, ret: -10001 }])
    expect(outcomes.get(1)).toBe('failed')
  })
})

describe('work timeout', () => {
  test('a handler past its deadline is answered -10001; the lane waits for it to settle', async () => {
    let release: () => void = () => {}
    const events: string[] = []
    const app = createApp()
      .route('hang', async (req) => {
        await new Promise<void>((r) => (release = r))
        events.push('hang settled')
        expect(req.reply('too late')).toBe(false) // already answered by the timeout
      })
      .route('next', () => void events.push('next ran'))
      .addHook('onError', (err) => void events.push(`onError ${err.code}`))
      .addHook('onRequestEnd', (req, err) => void events.push(`end ${String(req.cmd)} ${err?.code}`))
    const { runtime, clock, replies, outcomes, logger } = host(app, 1_000)
    await runtime.start()
    runtime.dispatch(1, { cmd: 10, uid: 1, nodeId: 1, connId: 1, body: body('hang', undefined, 1) })
    runtime.dispatch(2, { cmd: 10, uid: 1, nodeId: 1, connId: 1, body: body('next', undefined, 2) })
    await clock.advanceAsync(999)
    expect(replies(1)).toEqual([])
    await clock.advanceAsync(1)
    expect(replies(1)).toEqual([{ cmd: 'hang', sn: 1, ret: -10001 }])
    expect(runtime.stats()).toMatchObject({ timedOut: 1, running: 1, queued: 1 })
    expect(events).toEqual([`onError ${WorkerErrorCode.HANDLER_TIMEOUT}`])
    expect(logger.entries.some((e) => e.level === 'warn')).toBe(true)
    // the lane still waits: 'next' has not run
    await clock.advanceAsync(10_000)
    expect(events).not.toContain('next ran')
    release()
    await runtime.stop()
    expect(events).toEqual([
      `onError ${WorkerErrorCode.HANDLER_TIMEOUT}`,
      'hang settled',
      `end hang ${WorkerErrorCode.HANDLER_TIMEOUT}`,
      'next ran',
      'end next undefined',
    ])
    expect(outcomes.get(1)).toBe('timed-out')
    expect(outcomes.get(2)).toBe('ok')
    expect(replies(1)).toHaveLength(1)
    expect(runtime.stats()).toMatchObject({ timedOut: 1, ok: 1, handled: 2 })
  })

  test('a per-route deadline overrides the runtime one; a handler that replied gets no -10001', async () => {
    const app = createApp()
      .route('quick', (req) => req.worker.sleep(100), { workTimeoutMs: 50 })
      .route('replied', async (req) => {
        req.reply('early')
        await req.worker.sleep(5_000)
      })
    const { runtime, clock, replies, outcomes } = host(app, 1_000)
    await runtime.start()
    runtime.dispatch(1, { cmd: 10, uid: 1, nodeId: 1, connId: 1, body: body('quick', undefined, 1) })
    runtime.dispatch(2, { cmd: 10, uid: 2, nodeId: 1, connId: 2, body: body('replied', undefined, 2) })
    await clock.advanceAsync(50)
    expect(replies(1)).toEqual([{ cmd: 'quick', sn: 1, ret: -10001 }])
    await clock.advanceAsync(5_000)
    await runtime.stop()
    expect(replies(2)).toEqual([{ cmd: 'replied', sn: 2, ret: 0, data: 'early' }])
    expect(outcomes.get(1)).toBe('timed-out')
    expect(outcomes.get(2)).toBe('timed-out')
    expect(runtime.stats().timedOut).toBe(2)
  })

  test('tasks that settle in time never time out', async () => {
    const app = createApp().route('x', (req) => req.worker.sleep(10))
    const { runtime, clock, outcomes } = host(app, 100)
    await runtime.start()
    for (let i = 1; i <= 5; i++) runtime.dispatch(i, { cmd: 10, uid: 1, nodeId: 1, connId: 1, body: body('x') })
    await clock.advanceAsync(1_000)
    await runtime.stop()
    expect([...outcomes.values()]).toEqual(['ok', 'ok', 'ok', 'ok', 'ok'])
    expect(runtime.stats().timedOut).toBe(0)
  })
})

describe('connection tasks (B1)', () => {
  test('15 and 20 tasks without a body reach their hooks; cmd/sn/data read as undefined, nothing throws', async () => {
    const seen: unknown[] = []
    const app = createApp()
      .addHook('onClientCreated', (req) => void seen.push(['created', req.cmd, req.sn, req.data, req.body, String(req)]))
      .addHook('onClientClosed', (req) => void seen.push(['closed', req.cmd, req.nodeId, req.connId, JSON.stringify(req)]))
    const { runtime, outcomes } = host(app)
    await runtime.start()
    runtime.dispatch(1, { cmd: 15, nodeId: 4, connId: 8 })
    runtime.dispatch(2, { cmd: 20, nodeId: 4, connId: 8, body: new Uint8Array(0) })
    await runtime.stop()
    expect(seen).toEqual([
      ['created', undefined, undefined, undefined, undefined, 'PeonyRequest(taskCmd=15 cmd=undefined sn=undefined uid=undefined conn=4:8)'],
      ['closed', undefined, 4, 8, expect.stringContaining('"taskCmd":20')],
    ])
    expect([...outcomes.values()]).toEqual(['ok', 'ok'])
  })
})

describe('lifecycle', () => {
  test('dispatch before start and after stop throws a coded error', async () => {
    const { runtime } = host(createApp())
    const task: Task = { cmd: 10 }
    expect(() => runtime.dispatch(1, task)).toThrow(expect.objectContaining({ code: WorkerErrorCode.WORKER_NOT_STARTED }))
    await runtime.start()
    await expect(runtime.start()).rejects.toMatchObject({ code: WorkerErrorCode.ALREADY_STARTED })
    await runtime.stop()
    await runtime.stop() // idempotent
    expect(runtime.status).toBe('stopped')
    let err: unknown
    try {
      runtime.dispatch(2, task)
    } catch (e) {
      err = e
    }
    expect(isPeonyError(err, WorkerErrorCode.WORKER_STOPPED)).toBe(true)
  })

  test('tasks dispatched while async onWorkerStart runs wait for it', async () => {
    const events: string[] = []
    const app = createApp()
      .addHook('onWorkerStart', async (w) => {
        await w.sleep(10)
        events.push('started')
      })
      .route('x', () => void events.push('x'))
    const { runtime, clock } = host(app)
    const started = runtime.start()
    runtime.dispatch(1, { cmd: 10, body: body('x') })
    expect(events).toEqual([])
    await clock.advanceAsync(10)
    await started
    await idle()
    expect(events).toEqual(['started', 'x'])
    await runtime.stop()
  })

  test('stop waits for running tasks, cancels timers, then runs onWorkerStop', async () => {
    const events: string[] = []
    const app = createApp()
      .addHook('onWorkerStart', (w) => {
        w.timers.every(10, () => void events.push('tick'))
      })
      .addHook('onWorkerStop', (w) => void events.push(`stop timers=${w.timers.size}`))
      .route('slow', async (req) => {
        await req.worker.sleep(15)
        events.push('slow done')
      })
    const { runtime, clock } = host(app)
    await runtime.start()
    runtime.dispatch(1, { cmd: 10, uid: 1, body: body('slow') })
    const stopped = runtime.stop()
    await clock.advanceAsync(15)
    await stopped
    expect(events).toEqual(['tick', 'slow done', 'stop timers=0'])
    await clock.advanceAsync(100)
    expect(events).toHaveLength(3)
  })

  test('bad options are programmer errors', () => {
    const app = createApp()
    expect(() => new WorkerRuntime({ app: {} as PeonyApp, info, egress: { send() {} } })).toThrow(TypeError)
    expect(() => new WorkerRuntime({ app, info, egress: {} as never })).toThrow(TypeError)
    expect(() => new WorkerRuntime({ app, info, egress: { send() {} }, workTimeoutMs: -1 })).toThrow(RangeError)
  })

  test('a throwing onTaskDone or onTaskStart host callback does not break the runtime', async () => {
    const app = createApp().route('x', (req) => void req.reply(1))
    const sent: EgressMessage[] = []
    const runtime = new WorkerRuntime({
      app,
      info,
      logger: createMemoryLogger(),
      egress: { send: (m) => void sent.push(m) },
      onTaskStart: () => {
        throw new Error('host start')
      },
      onTaskDone: () => {
        throw new Error('host done')
      },
    })
    await runtime.start()
    runtime.dispatch(1, { cmd: 10, uid: 1, nodeId: 1, connId: 1, body: body('x') })
    runtime.dispatch(2, { cmd: 10, uid: 1, nodeId: 1, connId: 1, body: body('x') })
    await runtime.stop()
    expect(sent).toHaveLength(2)
    expect(runtime.stats()).toMatchObject({ handled: 2, ok: 2 })
  })
})

test('the harness attributes egress to the task that produced it', async () => {
  const app = createApp().route('x', (req) => void req.reply(req.data))
  const h = createTestHarness(app)
  const [a, b] = await Promise.all([h.inject({ cmd: 'x', data: 'a', uid: 1 }), h.inject({ cmd: 'x', data: 'b', uid: 2 })])
  expect(a.replies.map((r) => r.data)).toEqual(['a'])
  expect(b.replies.map((r) => r.data)).toEqual(['b'])
  expect(h.egress).toHaveLength(2)
  await h.stop()
})

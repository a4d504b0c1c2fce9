import { type EgressMessage, msgpackBodyCodec, unpackValue } from '@peony/protocol'
import { describe, expect, test } from 'vitest'
import { createApp, type PeonyRequest } from '@peony/worker'
import { createTestHarness } from '@peony/worker/testing'

const push = (b: Uint8Array): unknown => msgpackBodyCodec.decodeReply(b)

/** Runs `fn` as the handler of one request and returns what it sent. */
async function run(fn: (req: PeonyRequest) => unknown, input: Parameters<ReturnType<typeof createTestHarness>['inject']>[0]) {
  const app = createApp().route('t', fn)
  const h = createTestHarness(app)
  const r = await h.inject(input)
  await h.stop()
  return { ...r, logs: h.logs }
}

describe('task fields', () => {
  test('every task field has a getter', async () => {
    let seen: Record<string, unknown> = {}
    await run(
      (req) => {
        seen = {
          taskCmd: req.taskCmd,
          uid: req.uid,
          nodeId: req.nodeId,
          connId: req.connId,
          tag: req.tag,
          userdata: req.userdata,
          custom: req.custom,
          flags: req.flags,
          clientIp: req.clientIp,
          ts: req.ts,
          cmd: req.cmd,
          sn: req.sn,
          data: req.data,
          route: req.route?.name,
          hasConnection: req.hasConnection,
          worker: req.worker.serverId,
        }
      },
      {
        cmd: 't',
        sn: 5,
        data: [1, 2],
        uid: 2n ** 62n,
        nodeId: 3,
        connId: 2n ** 55n,
        tag: 9,
        userdata: 6,
        custom: 7,
        flags: 2,
        clientIp: '::1',
        ts: 1_700_000_000_000,
      },
    )
    expect(seen).toEqual({
      taskCmd: 10,
      uid: 2n ** 62n,
      nodeId: 3,
      connId: 2n ** 55n,
      tag: 9,
      userdata: 6,
      custom: 7,
      flags: 2,
      clientIp: '::1',
      ts: 1_700_000_000_000,
      cmd: 't',
      sn: 5,
      data: [1, 2],
      route: 't',
      hasConnection: true,
      worker: 'test',
    })
  })

  test('uid 0 and "" read as not logged in', async () => {
    const uids: unknown[] = []
    const app = createApp().route('t', (req) => void uids.push(req.uid))
    const h = createTestHarness(app)
    await h.inject({ cmd: 't', uid: 0 })
    await h.inject({ cmd: 't', uid: '' })
    await h.inject({ cmd: 't', uid: 'p1' })
    expect(uids).toEqual([undefined, undefined, 'p1'])
    await h.stop()
  })
})

describe('reply', () => {
  test('220 to the connection with tag, ret and {cmd, sn, ret, data}', async () => {
    const r = await run((req) => void req.reply({ gold: 5 }, 7), { cmd: 't', sn: 11, nodeId: 4, connId: 12, tag: 3 })
    expect(r.egress).toHaveLength(1)
    expect(r.egress[0]).toMatchObject({ cmd: 220, nodeId: 4, connId: 12, tag: 3, ret: 7 })
    expect(r.replies).toEqual([{ cmd: 't', sn: 11, ret: 7, data: { gold: 5 } }])
  })

  test('a second reply is ignored with a warning', async () => {
    const results: boolean[] = []
    const r = await run(
      (req) => {
        results.push(req.reply(1), req.reply(2), req.replied)
      },
      { cmd: 't' },
    )
    expect(results).toEqual([true, false, true])
    expect(r.replies.map((x) => x.data)).toEqual([1])
    expect(r.logs.filter((e) => e.level === 'warn').map((e) => e.msg)).toEqual([expect.stringContaining('second reply')])
  })

  test('reply and connection helpers do nothing for a task without a connection', async () => {
    const results: boolean[] = []
    const r = await run(
      (req) => {
        results.push(req.reply(1), req.closeClient(), req.loginClient(5), req.logoutClient(), req.clearClientTasks(), req.push('p'))
      },
      { cmd: 't', taskCmd: 100, nodeId: undefined, connId: undefined },
    )
    expect(results).toEqual([false, false, false, false, false, false])
    expect(r.egress).toEqual([])
  })
})

describe('push and egress helpers', () => {
  test('push goes to the uid (230) when the task has an int uid', async () => {
    const r = await run((req) => void req.push('hp', 90), { cmd: 't', uid: 7 })
    expect(r.egress).toHaveLength(1)
    const m = r.egress[0] as Extract<EgressMessage, { cmd: 230 }>
    expect(m.cmd).toBe(230)
    expect(m.rows[0]?.uids).toEqual([7])
    expect(push(m.rows[0]!.body)).toEqual({ cmd: 'hp', data: 90 })
    expect(r.pushes).toEqual([{ cmd: 'hp', data: 90 }])
  })

  test('push goes to the connection (220, no ret) without a uid, or with a string uid', async () => {
    for (const uid of [undefined, 'str-uid']) {
      const r = await run((req) => void req.push('hp', 1), { cmd: 't', uid, nodeId: 2, connId: 3, tag: 8 })
      expect(r.egress).toEqual([{ cmd: 220, nodeId: 2, connId: 3, tag: 8, body: expect.any(Uint8Array) }])
      expect(r.pushes).toEqual([{ cmd: 'hp', data: 1 }])
      expect(r.replies).toEqual([])
    }
  })

  test('every egress command of protocol §2.1', async () => {
    const raw = new Uint8Array([1, 2, 3])
    const r = await run(
      (req) => {
        req.writeToUsers([{ uids: [-1], body: raw, userdata: 4, exclude: [9] }])
        req.pushToUsers([1, 2], 'news', 'hi', { userdata: 1 })
        req.closeUsers([-3], { exclude: [1] })
        req.closeClient()
        req.loginClient(77, 5)
        req.logoutClient()
        req.clearClientTasks()
        req.writeToWorker({ uid: 77 }, { cmd: 'later', data: 1 })
        req.writeToWorker({ nodeId: 5, connId: 6 }, raw)
      },
      { cmd: 't', nodeId: 5, connId: 6 },
    )
    const m = r.egress
    expect(m.map((x) => x.cmd)).toEqual([230, 230, 250, 240, 260, 270, 280, 100, 100])
    expect(m[0]).toEqual({ cmd: 230, rows: [{ uids: [-1], body: raw, userdata: 4, exclude: [9] }] })
    expect(m[1]).toMatchObject({ cmd: 230, rows: [{ uids: [1, 2], userdata: 1 }] })
    expect(m[2]).toEqual({ cmd: 250, uids: [-3], exclude: [1] })
    expect(m[3]).toEqual({ cmd: 240, nodeId: 5, connId: 6 })
    expect(m[4]).toEqual({ cmd: 260, nodeId: 5, connId: 6, uid: 77, userdata: 5 })
    expect(m[5]).toEqual({ cmd: 270, nodeId: 5, connId: 6 })
    expect(m[6]).toEqual({ cmd: 280, nodeId: 5, connId: 6 })
    expect(m[7]).toMatchObject({ cmd: 100, uid: 77 })
    expect(unpackValue((m[7] as { body: Uint8Array }).body)).toEqual({ cmd: 'later', data: 1 })
    expect(msgpackBodyCodec.decodeRequest((m[7] as { body: Uint8Array }).body)).toEqual({ cmd: 'later', data: 1, sn: undefined })
    expect(m[8]).toEqual({ cmd: 100, nodeId: 5, connId: 6, body: raw })
    expect(r.pushes).toEqual([{ cmd: 'news', data: 'hi' }])
  })

  test('writeToWorker without a target is a programmer error (the handler fails)', async () => {
    const r = await run((req) => req.writeToWorker({} as never, new Uint8Array()), { cmd: 't' })
    expect(r.outcome).toBe('failed')
  })

  test('worker.egress works outside requests, e.g. from a timer', async () => {
    const app = createApp().addHook('onWorkerStart', (w) => {
      w.timers.once(10, () => {
        w.egress.pushToClient(1, 2, 'tick', 1, { tag: 3 })
        w.egress.pushToUsers([-1], 'all', 2)
        w.egress.writeToClient(1, 2, new Uint8Array([9]), { ret: 4 })
        w.egress.closeClient(1, 2)
        w.egress.closeUsers([5])
        w.egress.loginClient(1, 2, 'u')
        w.egress.logoutClient(1, 2)
        w.egress.clearClientTasks(1, 2)
        w.egress.writeToWorker({ uid: 'u' }, { cmd: 'x' })
        w.egress.writeToUsers([])
        w.egress.send({ cmd: 240, nodeId: 9, connId: 9 })
      })
    })
    const h = createTestHarness(app)
    await h.ready
    expect(h.egress).toEqual([])
    await h.advance(10)
    expect(h.egress.map((m) => m.cmd)).toEqual([220, 230, 220, 240, 250, 260, 270, 280, 100, 230, 240])
    expect(h.egress[0]).toMatchObject({ cmd: 220, nodeId: 1, connId: 2, tag: 3 })
    expect(push((h.egress[0] as { body: Uint8Array }).body)).toEqual({ cmd: 'tick', data: 1 })
    expect(h.egress[2]).toEqual({ cmd: 220, nodeId: 1, connId: 2, body: new Uint8Array([9]), ret: 4 })
    await h.stop()
  })
})

describe('locals', () => {
  test('a preRequest hook hands a resource to onRequestEnd through req.locals', async () => {
    const released: unknown[] = []
    const app = createApp()
      .addHook('preRequest', (req) => {
        req.locals.lock = `lock:${String(req.uid)}`
      })
      .addHook('onRequestEnd', (req) => void released.push(req.locals.lock))
      .route('t', () => {
        throw new Error('even on failure')
      })
    const h = createTestHarness(app)
    await h.inject({ cmd: 't', uid: 3 })
    expect(released).toEqual(['lock:3'])
    await h.stop()
  })
})

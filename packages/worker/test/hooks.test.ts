import { isPeonyError, type PeonyError } from '@peony/protocol'
import { describe, expect, test } from 'vitest'
import { Blueprint, WorkerErrorCode, appHookNames, createApp, type AppHookName, type PeonyRequest, type PeonyApp } from '@peony/worker'
import { createTestHarness } from '@peony/worker/testing'

/** An app with every hook on the app, on two blueprints' app-hooks, and on blueprint A's own hooks. */
function instrumented(): { app: PeonyApp; log: string[]; a: Blueprint; b: Blueprint } {
  const log: string[] = []
  const app = createApp()
  const a = new Blueprint('A')
  const b = new Blueprint('B')
  for (const name of appHookNames) {
    if (name === 'onError') continue
    app.addHook(name, () => void log.push(`app:${name}`))
    a.addAppHook(name, () => void log.push(`A:app:${name}`))
    b.addAppHook(name, () => void log.push(`B:app:${name}`))
  }
  a.addHook('preRequest', () => void log.push('A:own:preRequest'))
  a.addHook('onRequestEnd', () => void log.push('A:own:onRequestEnd'))
  a.route('a', (req) => {
    log.push('handler:a')
    req.reply()
  })
  app.route('plain', () => void log.push('handler:plain'))
  app.register(a).register(b)
  return { app, log, a, b }
}

/** Lets every pending promise job run (the worker goes idle at the end of a microtask turn). */
const idle = (): Promise<void> => new Promise((r) => setImmediate(r))

const triple = (name: AppHookName): string[] => [`app:${name}`, `A:app:${name}`, `B:app:${name}`]
const tripleEnd = (name: AppHookName): string[] => [`A:app:${name}`, `B:app:${name}`, `app:${name}`]

describe('hook order', () => {
  test('a blueprint route: start hooks app → blueprints → owner; end hooks owner → blueprints → app', async () => {
    const { app, log } = instrumented()
    const h = createTestHarness(app)
    await h.ready
    expect(log.splice(0)).toEqual(triple('onWorkerStart'))

    const r = await h.inject({ cmd: 'a' })
    expect(r.outcome).toBe('ok')
    await h.stop()
    expect(log.splice(0)).toEqual([
      ...triple('onWorkerActivate'),
      ...triple('preFirstRequest'),
      ...triple('preRequest'),
      'A:own:preRequest',
      'handler:a',
      'A:own:onRequestEnd',
      ...tripleEnd('onRequestEnd'),
      ...tripleEnd('onWorkerDeactivate'),
      ...tripleEnd('onWorkerStop'),
    ])
  })

  test('an app route skips the blueprint-local hooks; preFirstRequest runs once', async () => {
    const { app, log } = instrumented()
    const h = createTestHarness(app)
    await h.inject({ cmd: 'a' })
    await idle()
    log.length = 0
    await h.inject({ cmd: 'plain' })
    await idle()
    expect(log).toEqual([
      ...triple('onWorkerActivate'),
      ...triple('preRequest'),
      'handler:plain',
      ...tripleEnd('onRequestEnd'),
      ...tripleEnd('onWorkerDeactivate'),
    ])
    await h.stop()
  })

  test('task cmd 15 and 20 run onClientCreated / onClientClosed between the pre and end hooks', async () => {
    const { app, log } = instrumented()
    const h = createTestHarness(app)
    await h.ready
    log.length = 0
    const created = await h.inject({ taskCmd: 15, nodeId: 3, connId: 9 })
    await idle()
    expect(created.outcome).toBe('ok')
    expect(log.splice(0)).toEqual([
      ...triple('onWorkerActivate'),
      ...triple('preFirstRequest'),
      ...triple('preRequest'),
      ...triple('onClientCreated'),
      ...tripleEnd('onRequestEnd'),
      ...tripleEnd('onWorkerDeactivate'),
    ])
    await h.inject({ taskCmd: 20, nodeId: 3, connId: 9 })
    await idle()
    expect(log.splice(0)).toEqual([
      ...triple('onWorkerActivate'),
      ...triple('preRequest'),
      ...triple('onClientClosed'),
      ...tripleEnd('onRequestEnd'),
      ...tripleEnd('onWorkerDeactivate'),
    ])
    await h.stop()
  })

  test('other task cmds run onTask (registered with app.onTask or a blueprint mirror)', async () => {
    const seen: string[] = []
    const app = createApp()
      .onTask((req) => void seen.push(`app:${req.taskCmd}:${String(req.cmd)}`))
      .register(new Blueprint('bp').addAppHook('onTask', (req) => void seen.push(`bp:${req.taskCmd}`)))
    const h = createTestHarness(app)
    const r = await h.inject({ taskCmd: 77, cmd: 'x' })
    expect(r.outcome).toBe('ok')
    expect(seen).toEqual(['app:77:x', 'bp:77'])
    await h.stop()
  })

  test('a task cmd nobody handles is no-handler and runs no hooks', async () => {
    const log: string[] = []
    const app = createApp().addHook('preRequest', () => void log.push('pre'))
    const h = createTestHarness(app)
    const r = await h.inject({ taskCmd: 77 })
    expect(r.outcome).toBe('no-handler')
    expect(r.egress).toEqual([])
    expect(log).toEqual([])
    expect(h.stats().noHandler).toBe(1)
    await h.stop()
  })

  test('async hooks are awaited one after another', async () => {
    const log: string[] = []
    const slow = async (tag: string): Promise<void> => {
      for (let i = 0; i < 5; i++) await null
      log.push(tag)
    }
    const app = createApp()
      .addHook('preRequest', () => slow('pre1'))
      .addHook('preRequest', () => void log.push('pre2'))
      .addHook('onRequestEnd', () => slow('end1'))
      .addHook('onRequestEnd', () => void log.push('end2'))
      .route('x', async () => {
        await slow('handler')
      })
    const h = createTestHarness(app)
    await h.inject({ cmd: 'x' })
    expect(log).toEqual(['pre1', 'pre2', 'handler', 'end1', 'end2'])
    await h.stop()
  })
})

describe('interrupt and failures', () => {
  test('interrupt() in a pre-hook skips the later pre-hooks and the handler; every end hook still runs (B3)', async () => {
    const log: string[] = []
    const a = new Blueprint('A')
      .addAppHook('preRequest', (req) => {
        log.push('A:app:pre')
        req.reply({ denied: true }, 403)
        req.interrupt()
      })
      .addHook('preRequest', () => void log.push('A:own:pre'))
      .addHook('onRequestEnd', (req, err) => void log.push(`A:own:end interrupted=${req.interrupted} err=${String(err)}`))
      .route('a', () => void log.push('handler'))
    const app = createApp()
      .addHook('preRequest', () => void log.push('app:pre'))
      .addHook('onRequestEnd', () => void log.push('app:end'))
      .register(a)
      .register(new Blueprint('B').addAppHook('preRequest', () => void log.push('B:app:pre')).addAppHook('onRequestEnd', () => void log.push('B:app:end')))
    const h = createTestHarness(app)
    const r = await h.inject({ cmd: 'a', sn: 4 })
    expect(r.outcome).toBe('interrupted')
    expect(r.replies).toEqual([{ cmd: 'a', sn: 4, ret: 403, data: { denied: true } }])
    expect(log).toEqual(['app:pre', 'A:app:pre', 'A:own:end interrupted=true err=undefined', 'B:app:end', 'app:end'])
    expect(h.stats()).toMatchObject({ interrupted: 1, handled: 1 })
    await h.stop()
  })

  test('a throwing pre-hook ends the request with -10001; the end hooks run with the error', async () => {
    const log: string[] = []
    const errors: PeonyError[] = []
    const app = createApp()
      .addHook('preRequest', () => {
        throw new Error('auth down')
      })
      .addHook('preRequest', () => void log.push('second pre'))
      .addHook('onRequestEnd', (_req, err) => void log.push(`end ${err?.code}`))
      .addHook('onError', (err) => void errors.push(err))
      .route('x', () => void log.push('handler'))
    const h = createTestHarness(app)
    const r = await h.inject({ cmd: 'x', sn: 12 })
    expect(r.outcome).toBe('failed')
    expect(r.replies).toEqual([{ cmd: 'x', sn: 12, ret: -10001 }])
    expect(r.egress[0]).toMatchObject({ cmd: 220, ret: -10001 })
    expect(log).toEqual([`end ${WorkerErrorCode.HOOK_FAILED}`])
    expect(errors).toHaveLength(1)
    expect(errors[0]).toMatchObject({ code: WorkerErrorCode.HOOK_FAILED, hook: 'preRequest', cmd: 'x' })
    expect((errors[0]?.cause as Error | undefined)?.message).toBe('auth down')
    expect(h.stats()).toMatchObject({ failed: 1, hookFailed: 1 })
    await h.stop()
  })

  test('a throwing handler: -10001, onError(PEONY_HANDLER_FAILED) with cmd, uid and cause, end hooks see it', async () => {
    const errors: [PeonyError, PeonyRequest | undefined][] = []
    const ends: (string | undefined)[] = []
    const boom = new Error('boom')
    const app = createApp()
      .route('x', () => {
        throw boom
      })
      .addHook('onError', (err, req) => void errors.push([err, req]))
      .addHook('onRequestEnd', (_req, err) => void ends.push(err?.code))
    const h = createTestHarness(app)
    const r = await h.inject({ cmd: 'x', uid: 42, sn: 3 })
    expect(r.outcome).toBe('failed')
    expect(r.replies).toEqual([{ cmd: 'x', sn: 3, ret: -10001 }])
    const [err, req] = errors[0] ?? []
    expect(isPeonyError(err, WorkerErrorCode.HANDLER_FAILED)).toBe(true)
    expect(err).toMatchObject({ cmd: 'x', uid: 42, taskCmd: 10 })
    expect(err?.cause).toBe(boom)
    expect(req?.uid).toBe(42)
    expect(ends).toEqual([WorkerErrorCode.HANDLER_FAILED])
    expect(h.logs.some((e) => e.level === 'error')).toBe(true)
    await h.stop()
  })

  test('a throwing on* hook is reported and does not stop the other hooks or the task', async () => {
    const log: string[] = []
    const errors: string[] = []
    const app = createApp()
      .addHook('onWorkerActivate', () => {
        throw new Error('metrics down')
      })
      .addHook('onWorkerActivate', () => void log.push('activate 2'))
      .addHook('onRequestEnd', async () => {
        await null
        throw new Error('end 1 failed')
      })
      .addHook('onRequestEnd', () => void log.push('end 2'))
      .addHook('onError', (err) => void errors.push(`${err.code}:${(err as { hook?: string }).hook}`))
      .addHook('onError', () => {
        throw new Error('a broken onError is only logged')
      })
      .route('x', (req) => void req.reply('fine'))
    const h = createTestHarness(app)
    const r = await h.inject({ cmd: 'x' })
    expect(r.outcome).toBe('ok')
    expect(r.replies).toEqual([{ cmd: 'x', sn: 1, ret: 0, data: 'fine' }])
    expect(log).toEqual(['activate 2', 'end 2'])
    expect(errors).toEqual([`${WorkerErrorCode.HOOK_FAILED}:onWorkerActivate`, `${WorkerErrorCode.HOOK_FAILED}:onRequestEnd`])
    expect(h.stats().hookFailed).toBe(2)
    // the next request is not affected
    expect((await h.inject({ cmd: 'x' })).replies[0]?.ret).toBe(0)
    await h.stop()
  })

  test('a handler that replied before throwing is not answered twice', async () => {
    const app = createApp().route('x', (req) => {
      req.reply('partial')
      throw new Error('late')
    })
    const h = createTestHarness(app)
    const r = await h.inject({ cmd: 'x' })
    expect(r.outcome).toBe('failed')
    expect(r.replies.map((x) => x.ret)).toEqual([0])
    await h.stop()
  })
})

describe('worker activity hooks', () => {
  test('activate when going busy, deactivate when idle: one pair per synchronous batch', async () => {
    const log: string[] = []
    const app = createApp()
      .addHook('onWorkerActivate', () => void log.push('activate'))
      .addHook('onWorkerDeactivate', () => void log.push('deactivate'))
      .route('x', () => void log.push('x'))
    const h = createTestHarness(app)
    await h.ready
    const batch = [h.inject({ cmd: 'x', uid: 1 }), h.inject({ cmd: 'x', uid: 2 }), h.inject({ cmd: 'x', uid: 1 })]
    await Promise.all(batch)
    await idle()
    expect(log).toEqual(['activate', 'x', 'x', 'x', 'deactivate'])
    await h.inject({ cmd: 'x' })
    await h.stop()
    expect(log).toEqual(['activate', 'x', 'x', 'x', 'deactivate', 'activate', 'x', 'deactivate'])
  })

  test('the worker stays busy while an async handler waits; tasks wait for async activate hooks', async () => {
    const log: string[] = []
    const app = createApp()
      .addHook('onWorkerActivate', async (w) => {
        await w.sleep(5)
        log.push('activate')
      })
      .addHook('onWorkerDeactivate', () => void log.push('deactivate'))
      .route('slow', async (req) => {
        log.push('slow start')
        await req.worker.sleep(100)
        log.push('slow end')
      })
      .route('fast', () => void log.push('fast'))
    const h = createTestHarness(app)
    await h.ready
    const slow = h.inject({ cmd: 'slow', uid: 1 })
    await h.advance(1)
    expect(log).toEqual([]) // activation still sleeping: the task waits
    await h.advance(4)
    expect(log).toEqual(['activate', 'slow start'])
    const fast = await h.inject({ cmd: 'fast', uid: 2 })
    expect(fast.outcome).toBe('ok')
    await h.advance(100)
    await slow
    await h.stop()
    expect(log).toEqual(['activate', 'slow start', 'fast', 'slow end', 'deactivate'])
  })
})

describe('error lines are rate-limited per kind; onError sees every error', () => {
  test('a route that throws on every request: its first line with the stack, then one count per 10 s; another route is its own kind', async () => {
    const app = createApp()
    const seen: string[] = []
    app.addHook('onError', (err) => void seen.push(err.code))
    app.route('boom', () => {
      throw new Error('boom')
    })
    app.route('bang', () => {
      throw new Error('bang')
    })
    const h = createTestHarness(app)
    await h.ready
    for (let i = 0; i < 50; i++) await h.inject({ cmd: 'boom', uid: i + 1 })
    await h.inject({ cmd: 'bang', uid: 1 })
    expect(seen).toHaveLength(51)
    const lines = () => h.logs.filter((e) => e.level === 'error')
    expect(lines().map((e) => e.msg)).toEqual(['handler boom failed: boom', 'handler bang failed: bang'])
    const first = lines()[0]!.obj as { code: string; err: Error }
    expect(first.code).toBe(WorkerErrorCode.HANDLER_FAILED)
    expect(first.err.stack).toContain('boom')
    await h.advance(10_000)
    expect(
      lines()
        .slice(2)
        .map((e) => e.obj),
    ).toEqual([
      { code: WorkerErrorCode.HANDLER_FAILED, kind: 'PEONY_HANDLER_FAILED boom', suppressed: 49, windowMs: 10_000, last: 'handler boom failed: boom' },
    ])
    // the summary opened the next window: a failure now is counted, and stop() prints the count
    await h.inject({ cmd: 'boom', uid: 1 })
    expect(lines()).toHaveLength(3)
    await h.stop()
    expect(
      lines()
        .slice(3)
        .map((e) => (e.obj as { suppressed?: number }).suppressed),
    ).toEqual([1])
  })
})

describe('a failed handler is logged with its own error', () => {
  test("the line's err is the handler's error with its stack and cause chain, and `at` is its file and line", async () => {
    const inner = (): never => {
      throw new Error('inner boom')
    }
    const app = createApp().route('buy', () => {
      try {
        inner()
      } catch (e) {
        throw new Error('outer boom', { cause: e })
      }
    })
    const h = createTestHarness(app)
    const r = await h.inject({ cmd: 'buy', uid: 7, sn: 1 })
    expect(r.outcome).toBe('failed')
    const line = h.logs.find((e) => e.level === 'error')
    expect(line).toBeDefined()
    const obj = line!.obj as { err?: Error; code?: string; route?: string; at?: string }
    expect(obj.code).toBe(WorkerErrorCode.HANDLER_FAILED)
    expect(obj.route).toBe('buy')
    expect(obj.err?.message).toBe('outer boom')
    expect((obj.err?.cause as Error | undefined)?.message).toBe('inner boom')
    expect(obj.err?.stack?.split('\n')[1]).toContain('hooks.test.ts')
    // The throw site of `outer boom`, in this file, not a frame of the runtime.
    expect(obj.at).toMatch(/hooks\.test\.ts:\d+:\d+$/)
    expect(line!.msg).toContain('handler buy failed: outer boom')
    await h.stop()
  })
})

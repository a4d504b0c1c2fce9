import { isPeonyError } from '@peony/protocol'
import { describe, expect, test } from 'vitest'
import { Blueprint, WorkerErrorCode, createApp, type AppHookName } from '@peony/worker'
import { createTestHarness } from '@peony/worker/testing'

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn()
  } catch (err) {
    return isPeonyError(err) ? err.code : `not a PeonyError: ${String(err)}`
  }
  return undefined
}

describe('routes', () => {
  test('routes on the body cmd, ints and strings apart', async () => {
    const app = createApp()
      .route(5, (req) => req.reply('int'))
      .route('5', (req) => req.reply('str'))
    const h = createTestHarness(app)
    expect((await h.inject({ cmd: 5 })).replies[0]?.data).toBe('int')
    expect((await h.inject({ cmd: '5' })).replies[0]?.data).toBe('str')
    // the task cmd (10) is not what routes: a body cmd 10 has no route
    expect((await h.inject({ cmd: 10 })).replies[0]?.ret).toBe(-10000)
    await h.stop()
  })

  test('a different handler for an existing cmd throws PEONY_ROUTE_DUPLICATE; the same one is allowed', () => {
    const app = createApp()
    const a = (): void => {}
    const b = (): void => {}
    app.route('x', a)
    expect(() => app.route('x', a)).not.toThrow()
    expect(codeOf(() => app.route('x', b))).toBe(WorkerErrorCode.ROUTE_DUPLICATE)
    expect(app.getRoute('x')?.handler).toBe(a)
  })

  test('blueprint routes join the app; a clash with an app route throws and leaves the app unchanged', () => {
    const app = createApp().route('a', () => {})
    const bp = new Blueprint('shop').route('buy', () => {}).route('a', () => {})
    expect(codeOf(() => app.register(bp))).toBe(WorkerErrorCode.ROUTE_DUPLICATE)
    expect(app.getRoute('buy')).toBeUndefined()

    const ok = new Blueprint('bag').route('open', function openBag() {})
    app.register(ok)
    expect(app.getRoute('open')?.name).toBe('bag.openBag')
    expect(app.getRoute('open')?.blueprint).toBe(ok)
    // routes added to a registered blueprint reach the app, duplicates still throw
    ok.route('close', () => {})
    expect(app.getRoute('close')?.blueprint).toBe(ok)
    expect(codeOf(() => ok.route('a', () => {}))).toBe(WorkerErrorCode.ROUTE_DUPLICATE)
    expect(app.routes().map((r) => r.cmd)).toEqual(['a', 'open', 'close'])
  })

  test('two blueprints with the same cmd clash', () => {
    const app = createApp().register(new Blueprint('a').route(1, () => {}))
    expect(codeOf(() => app.register(new Blueprint('b').route(1, () => {})))).toBe(WorkerErrorCode.ROUTE_DUPLICATE)
  })

  test('route options: name, meta and a per-route deadline are kept', () => {
    const app = createApp().route(7, () => {}, { name: 'seven', meta: { auth: false }, workTimeoutMs: 50 })
    expect(app.getRoute(7)).toMatchObject({ cmd: 7, name: 'seven', meta: { auth: false }, workTimeoutMs: 50 })
  })

  test('bad route arguments are programmer errors', () => {
    const app = createApp()
    expect(() => app.route(1.5, () => {})).toThrow(TypeError)
    expect(() => app.route('', () => {})).toThrow(TypeError)
    expect(() => app.route(1, 'nope' as never)).toThrow(TypeError)
    expect(() => app.route(1, () => {}, { workTimeoutMs: -1 })).toThrow(RangeError)
    expect(() => new Blueprint('')).toThrow(TypeError)
  })
})

describe('hooks registration', () => {
  test('an unknown hook name throws PEONY_HOOK_NOT_SUPPORTED', () => {
    const app = createApp()
    expect(codeOf(() => app.addHook('beforeRequest' as AppHookName, () => {}))).toBe(WorkerErrorCode.HOOK_NOT_SUPPORTED)
    const bp = new Blueprint('bp')
    expect(codeOf(() => bp.addHook('onWorkerStart' as 'preRequest', () => {}))).toBe(WorkerErrorCode.HOOK_NOT_SUPPORTED)
    expect(codeOf(() => bp.addAppHook('nope' as AppHookName, () => {}))).toBe(WorkerErrorCode.HOOK_NOT_SUPPORTED)
  })

  test('hooks, routes and blueprints added after a runtime started throw PEONY_ALREADY_STARTED', async () => {
    const bp = new Blueprint('bp')
    const app = createApp().register(bp)
    expect(app.started).toBe(false)
    const h = createTestHarness(app)
    await h.ready
    expect(app.started).toBe(true)
    expect(codeOf(() => app.addHook('preRequest', () => {}))).toBe(WorkerErrorCode.ALREADY_STARTED)
    expect(codeOf(() => app.onTask(() => {}))).toBe(WorkerErrorCode.ALREADY_STARTED)
    expect(codeOf(() => app.route('late', () => {}))).toBe(WorkerErrorCode.ALREADY_STARTED)
    expect(codeOf(() => app.register(new Blueprint('late')))).toBe(WorkerErrorCode.ALREADY_STARTED)
    expect(codeOf(() => bp.addHook('preRequest', () => {}))).toBe(WorkerErrorCode.ALREADY_STARTED)
    expect(codeOf(() => bp.addAppHook('onError', () => {}))).toBe(WorkerErrorCode.ALREADY_STARTED)
    expect(codeOf(() => bp.route('late', () => {}))).toBe(WorkerErrorCode.ALREADY_STARTED)
    await h.stop()
  })
})

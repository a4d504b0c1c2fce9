/**
 * The output gate (`gate: 'stored'`): a gated request's reply, pushes and messages leave only
 * once the session change it made is stored, gated changes of many players go out in one fenced
 * write (group commit), every later output of that session waits behind a held one, and a write
 * that fails answers -10008 and drops the session so a retry never applies twice. Real
 * MemoryStorage (a subclass injects write failures). The group commit runs on a real timer
 * (gateIntervalMs 1,000 here, so the turns a test waits see the output still held even on a loaded machine), not the manual clock.
 */
import { describe, expect, test } from 'vitest'
import { createApp, type PeonyApp } from '@peony/worker'
import { createTestHarness } from '@peony/worker/testing'
import { MemoryStorage, StorageError, StorageErrorCode } from '@peony/storage'
import { unpackValue } from '@peony/protocol'

interface Wallet {
  gold: number
  items: number
}

/**
 * MemoryStorage with injected write failures (faults it cannot produce itself): `writeFails`
 * refuses writes the way a driver that is not connected does (notApplied: nothing was sent);
 * `writeTimeouts` applies the write and then fails it the way a timed-out Redis command does
 * (the command ran, its answer came too late: the outcome is unknown to the caller).
 */
class CountingStorage extends MemoryStorage {
  writes = 0
  writeFails = 0
  writeTimeouts = 0
  protected override async _writeFenced(...args: Parameters<MemoryStorage['_writeFenced']>): ReturnType<MemoryStorage['_writeFenced']> {
    this.writes++
    if (this.writeFails > 0) {
      this.writeFails--
      throw new StorageError(StorageErrorCode.UNAVAILABLE, 'injected: storage not reachable (nothing sent)', { notApplied: true })
    }
    if (this.writeTimeouts > 0) {
      this.writeTimeouts--
      await super._writeFenced(...args)
      throw new StorageError(StorageErrorCode.UNAVAILABLE, 'injected: storage did not answer in time')
    }
    return super._writeFenced(...args)
  }
}

/** MemoryStorage whose fenced writes wait until the test lets them through, in call order (unless `passThrough`). */
class HeldStorage extends MemoryStorage {
  /** Sessions per writeFenced call, in call order. */
  sizes: number[] = []
  passThrough = false
  readonly #held: (() => void)[] = []
  protected override async _writeFenced(...args: Parameters<MemoryStorage['_writeFenced']>): ReturnType<MemoryStorage['_writeFenced']> {
    this.sizes.push(args[0].length)
    if (!this.passThrough) await new Promise<void>((r) => this.#held.push(r))
    return super._writeFenced(...args)
  }

  /** Lets the oldest held write through. */
  releaseOne(): void {
    ;(this.#held.shift() as () => void)()
  }

  get waiting(): number {
    return this.#held.length
  }
}

function shopApp(gateDefault?: 'stored' | 'none'): PeonyApp {
  const app = createApp()
  const def = app.session<Wallet>({ initial: () => ({ gold: 100, items: 0 }), gate: gateDefault })
  app.route(
    'buy',
    (req) => {
      const s = def.of(req)
      s.state.gold -= 10
      s.state.items++
      req.push('bought', { items: s.state.items })
      req.writeToWorker({ uid: 999 }, { cmd: 'gift', data: 1 })
      req.reply({ gold: s.state.gold, items: s.state.items })
    },
    { gate: 'stored' },
  )
  app.route('look', (req) => req.reply(def.of(req).state))
  app.route(
    'free',
    (req) => {
      def.of(req).state.gold++
      req.reply({ gold: def.of(req).state.gold })
    },
    { gate: 'none' },
  )
  return app
}

async function storedState(storage: MemoryStorage, uid: number): Promise<Wallet | undefined> {
  const bytes = await storage.get(`player:${uid}`)
  if (bytes === undefined) return undefined
  const rec = unpackValue(bytes) as [number, Uint8Array, unknown]
  return unpackValue(rec[1]) as Wallet
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r))

/** Waits (real time, at most ~2 s) until `cond` holds, and asserts it. */
async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 400 && !cond(); i++) await new Promise((r) => setTimeout(r, 5))
  expect(cond()).toBe(true)
}

describe('output gate', () => {
  test('a gated reply, push and message leave only after the change is stored', async () => {
    const storage = new HeldStorage()
    const h = createTestHarness(shopApp(), { sessions: { storage } })
    await h.ready
    const p = h.inject({ cmd: 'buy', uid: 1 })
    await until(() => storage.waiting === 1)
    for (let i = 0; i < 5; i++) await turn()
    // The handler ran and its group commit is being written; nothing has left the worker, and storage has nothing yet.
    expect(h.egress).toHaveLength(0)
    expect(await storedState(storage, 1)).toBeUndefined()
    storage.releaseOne()
    const r = await p
    expect(r.replies[0]).toMatchObject({ ret: 0, data: { gold: 90, items: 1 } })
    expect(r.pushes).toHaveLength(1)
    expect(h.egress.map((m) => m.cmd)).toEqual([230, 100, 220])
    expect(await storedState(storage, 1)).toEqual({ gold: 90, items: 1 })
    expect(h.stats().sessions?.gate).toMatchObject({ gated: 1, released: 3, waiting: 0, failures: 0 })
    await h.stop()
  })

  test('gated changes of many players go out in one fenced write (group commit)', async () => {
    const storage = new CountingStorage()
    const h = createTestHarness(shopApp(), { sessions: { storage, gateIntervalMs: 1000 } })
    await h.ready
    const before = storage.writes
    const ps = []
    for (let u = 1; u <= 50; u++) ps.push(h.inject({ cmd: 'buy', uid: u }))
    for (let i = 0; i < 5; i++) await turn()
    const rs = await Promise.all(ps)
    expect(rs.every((r) => r.replies[0]?.ret === 0)).toBe(true)
    expect(storage.writes - before).toBe(1)
    await h.stop()
  })

  test('with no group commit in flight, a gated change is written at the end of its turn, without waiting gateIntervalMs', async () => {
    const storage = new HeldStorage()
    storage.passThrough = true
    const h = createTestHarness(shopApp(), { sessions: { storage, gateIntervalMs: 60_000 } })
    await h.ready
    const r = await Promise.race([h.inject({ cmd: 'buy', uid: 1 }), new Promise<undefined>((res) => setTimeout(() => res(undefined), 2000))])
    expect(r?.replies[0]).toMatchObject({ ret: 0, data: { gold: 90, items: 1 } })
    expect(storage.sizes).toEqual([1])
    await h.stop()
  })

  test('while a group commit is in flight, gated changes collect until gateIntervalMs, or until it is acknowledged', async () => {
    const storage = new HeldStorage()
    const h = createTestHarness(shopApp(), { sessions: { storage, gateIntervalMs: 60_000 } })
    await h.ready
    const ps = [h.inject({ cmd: 'buy', uid: 1 })]
    await until(() => storage.waiting === 1)
    // A commit in flight: ten more players' changes, made over many turns, wait (the 60 s interval).
    for (let u = 2; u <= 11; u++) {
      ps.push(h.inject({ cmd: 'buy', uid: u }))
      await new Promise((r) => setTimeout(r, 3))
    }
    expect(storage.sizes).toEqual([1])
    expect(h.egress).toHaveLength(0)
    // The commit in flight is acknowledged: its outputs leave and the ten go out at once, in one write.
    storage.releaseOne()
    await ps[0]
    await until(() => storage.waiting === 1)
    expect(storage.sizes).toEqual([1, 10])
    expect(h.egress.filter((m) => m.cmd === 220)).toHaveLength(1)
    storage.releaseOne()
    const rs = await Promise.all(ps)
    expect(rs.every((r) => r.replies[0]?.ret === 0)).toBe(true)
    for (let u = 1; u <= 11; u++) expect(await storedState(storage, u)).toEqual({ gold: 90, items: 1 })
    await h.stop()
  })

  test('every later output of the session waits behind a held one, in order', async () => {
    const storage = new HeldStorage()
    const h = createTestHarness(shopApp(), { sessions: { storage } })
    await h.ready
    const buy = h.inject({ cmd: 'buy', uid: 1 })
    const free = h.inject({ cmd: 'free', uid: 1 })
    const other = h.inject({ cmd: 'free', uid: 2 })
    // Another player is not held.
    expect((await other).replies[0]).toMatchObject({ ret: 0 })
    await until(() => storage.waiting === 1)
    for (let i = 0; i < 5; i++) await turn()
    expect(h.egress.filter((m) => m.cmd === 220)).toHaveLength(1)
    storage.passThrough = true
    storage.releaseOne()
    const [b, f] = await Promise.all([buy, free])
    expect(b.replies[0]?.data).toEqual({ gold: 90, items: 1 })
    expect(f.replies[0]?.data).toEqual({ gold: 91 })
    // player 1's replies left in the order the requests ran
    const sns = h.egress.flatMap((m) => (m.cmd === 220 && m.connId === 1 ? [(h.worker.app.bodyCodec.decodeReply(m.body) as { data: unknown }).data] : []))
    expect(sns.slice(-2)).toEqual([{ gold: 90, items: 1 }, { gold: 91 }])
    await h.stop()
  })

  test('a failed store answers -10008, sends nothing else, drops the session; a retry applies once', async () => {
    const storage = new CountingStorage()
    const h = createTestHarness(shopApp(), { sessions: { storage, gateIntervalMs: 1000 } })
    await h.ready
    // A first purchase is stored.
    const first = h.inject({ cmd: 'buy', uid: 1 })
    expect((await first).replies[0]?.data).toEqual({ gold: 90, items: 1 })
    // Storage is down for the next one.
    storage.writeFails = 1
    const failing = h.inject({ cmd: 'buy', uid: 1 })
    for (let i = 0; i < 5; i++) await turn()
    const r = await failing
    expect(r.replies).toEqual([{ cmd: 'buy', sn: expect.anything(), ret: -10008 }])
    expect(r.pushes).toHaveLength(0)
    expect(r.egress.filter((m) => m.cmd === 100)).toHaveLength(0)
    expect(h.stats().sessions?.gate).toMatchObject({ failures: 1, notStored: 1, dropped: 2 })
    expect(h.stats().sessions?.resident).toBe(0)
    // The client retries once storage is back: the purchase applies once, from the stored state.
    const retry = h.inject({ cmd: 'buy', uid: 1 })
    for (let i = 0; i < 5; i++) await turn()
    expect((await retry).replies[0]?.data).toEqual({ gold: 80, items: 2 })
    expect(await storedState(storage, 1)).toEqual({ gold: 80, items: 2 })
    await h.stop()
  })

  test('a write whose outcome is unknown (a timeout) answers -10001, not -10008; the reload shows what storage has', async () => {
    const storage = new CountingStorage()
    const h = createTestHarness(shopApp(), { sessions: { storage, gateIntervalMs: 1000 } })
    await h.ready
    storage.writeTimeouts = 1
    const r = await h.inject({ cmd: 'buy', uid: 1 })
    // the write did land, but the worker cannot know: it must not say "nothing applied"
    expect(r.replies).toEqual([{ cmd: 'buy', sn: expect.anything(), ret: -10001 }])
    expect(h.stats().sessions?.gate).toMatchObject({ failures: 1, unknown: 1, notStored: 0 })
    expect(h.stats().sessions?.resident).toBe(0)
    // the client looks before it retries: the reloaded session shows the purchase happened once
    expect((await h.inject({ cmd: 'look', uid: 1 })).replies[0]?.data).toEqual({ gold: 90, items: 1 })
    await h.stop()
  })

  test("the session definition's gate is the default; a route's gate: 'none' overrides it", async () => {
    const storage = new HeldStorage()
    const h = createTestHarness(shopApp('stored'), { sessions: { storage } })
    await h.ready
    const look = h.inject({ cmd: 'look', uid: 1 })
    await until(() => storage.waiting === 1)
    for (let i = 0; i < 5; i++) await turn()
    expect(h.egress).toHaveLength(0)
    storage.releaseOne()
    expect((await look).replies[0]?.ret).toBe(0)
    expect(storage.sizes).toEqual([1])
    storage.passThrough = true
    // 'free' says gate: 'none': answered at once
    const free = await h.inject({ cmd: 'free', uid: 2 })
    expect(free.replies[0]?.data).toEqual({ gold: 101 })
    await h.stop()
  })

  test('a stop releases held output with the final flush', async () => {
    const storage = new HeldStorage()
    const h = createTestHarness(shopApp(), { sessions: { storage, gateIntervalMs: 60_000 } })
    await h.ready
    // Player 2's commit is in flight, so player 1's change waits for the 60 s interval.
    const p2 = h.inject({ cmd: 'buy', uid: 2 })
    await until(() => storage.waiting === 1)
    const p = h.inject({ cmd: 'buy', uid: 1 })
    for (let i = 0; i < 5; i++) await turn()
    expect(h.egress).toHaveLength(0)
    storage.passThrough = true
    const stopped = h.stop()
    storage.releaseOne()
    await stopped
    expect((await p2).replies[0]?.ret).toBe(0)
    expect((await p).replies[0]?.ret).toBe(0)
    expect(await storedState(storage, 1)).toEqual({ gold: 90, items: 1 })
    // player 1's change went with the final flush, not a group commit of its own
    expect(storage.sizes).toEqual([1, 1])
  })

  test('route option checks: gate must be stored or none, and needs a session', () => {
    const app = createApp()
    expect(() => app.route('x', () => {}, { gate: 'yes' as never })).toThrow(/gate must be 'stored' or 'none'/)
    expect(() => app.route('y', () => {}, { gate: 'stored', session: false })).toThrow(/session: false/)
  })
})

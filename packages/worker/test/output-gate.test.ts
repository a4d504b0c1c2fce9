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
import { unpackValue } from '@peony/broker-client/codec'

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

/** MemoryStorage whose fenced writes wait until the test lets them through, in call order. */
class HeldStorage extends MemoryStorage {
  /** Sessions per writeFenced call, in call order. */
  sizes: number[] = []
  readonly #held: (() => void)[] = []
  protected override async _writeFenced(...args: Parameters<MemoryStorage['_writeFenced']>): ReturnType<MemoryStorage['_writeFenced']> {
    this.sizes.push(args[0].length)
    await new Promise<void>((r) => this.#held.push(r))
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
  app.route('free', (req) => {
    def.of(req).state.gold++
    req.reply({ gold: def.of(req).state.gold })
  }, { gate: 'none' })
  return app
}

async function storedState(storage: MemoryStorage, uid: number): Promise<Wallet | undefined> {
  const bytes = await storage.get(`player:${uid}`)
  if (bytes === undefined) return undefined
  const rec = unpackValue(bytes) as [number, Uint8Array, unknown]
  return unpackValue(rec[1]) as Wallet
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r))

describe('output gate', () => {
  test('a gated reply, push and message leave only after the change is stored', async () => {
    const storage = new CountingStorage()
    const h = createTestHarness(shopApp(), { sessions: { storage, gateIntervalMs: 1000 } })
    await h.ready
    const p = h.inject({ cmd: 'buy', uid: 1 })
    for (let i = 0; i < 5; i++) await turn()
    // The handler ran; nothing has left the worker, and storage has nothing yet.
    expect(h.egress).toHaveLength(0)
    expect(await storedState(storage, 1)).toBeUndefined()
    // the group commit: a real timer, not the manual clock
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

  test('with two group commits in flight, gated changes wait and all go in the next one when one is acknowledged', async () => {
    const storage = new HeldStorage()
    const h = createTestHarness(shopApp(), { sessions: { storage } })
    await h.ready
    const until = async (cond: () => boolean): Promise<void> => {
      for (let i = 0; i < 1000 && !cond(); i++) await new Promise((r) => setTimeout(r, 1))
      expect(cond()).toBe(true)
    }
    // Default gateIntervalMs (0): each commit starts at the end of the turn of its first change.
    const ps = [h.inject({ cmd: 'buy', uid: 1 })]
    await until(() => storage.waiting === 1)
    ps.push(h.inject({ cmd: 'buy', uid: 2 }))
    await until(() => storage.waiting === 2)
    // Two commits in flight: ten more players' changes, made over many turns and timer ticks, wait.
    for (let u = 3; u <= 12; u++) {
      ps.push(h.inject({ cmd: 'buy', uid: u }))
      await new Promise((r) => setTimeout(r, 3))
    }
    expect(storage.sizes).toEqual([1, 1])
    expect(h.egress).toHaveLength(0)
    storage.releaseOne()
    await ps[0]
    // The first commit's outputs left; the ten waiting changes went out in one write.
    await until(() => storage.waiting === 2)
    expect(storage.sizes).toEqual([1, 1, 10])
    expect(h.egress.filter((m) => m.cmd === 220)).toHaveLength(1)
    storage.releaseOne()
    storage.releaseOne()
    const rs = await Promise.all(ps)
    expect(rs.every((r) => r.replies[0]?.ret === 0)).toBe(true)
    expect(storage.sizes).toEqual([1, 1, 10])
    for (let u = 1; u <= 12; u++) expect(await storedState(storage, u)).toEqual({ gold: 90, items: 1 })
    await h.stop()
  })

  test('every later output of the session waits behind a held one, in order', async () => {
    const storage = new CountingStorage()
    const h = createTestHarness(shopApp(), { sessions: { storage, gateIntervalMs: 1000 } })
    await h.ready
    const buy = h.inject({ cmd: 'buy', uid: 1 })
    const free = h.inject({ cmd: 'free', uid: 1 })
    const other = h.inject({ cmd: 'free', uid: 2 })
    // Another player is not held.
    expect((await other).replies[0]).toMatchObject({ ret: 0 })
    for (let i = 0; i < 5; i++) await turn()
    expect(h.egress.filter((m) => m.cmd === 220)).toHaveLength(1)
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
    const storage = new CountingStorage()
    const h = createTestHarness(shopApp('stored'), { sessions: { storage, gateIntervalMs: 1000 } })
    await h.ready
    const look = h.inject({ cmd: 'look', uid: 1 })
    for (let i = 0; i < 5; i++) await turn()
    expect(h.egress).toHaveLength(0)
    expect((await look).replies[0]?.ret).toBe(0)
    expect(storage.writes).toBe(1)
    // 'free' says gate: 'none': answered at once
    const free = await h.inject({ cmd: 'free', uid: 2 })
    expect(free.replies[0]?.data).toEqual({ gold: 101 })
    await h.stop()
  })

  test('a stop releases held output with the final flush', async () => {
    const storage = new CountingStorage()
    const h = createTestHarness(shopApp(), { sessions: { storage, gateIntervalMs: 60_000 } })
    await h.ready
    const p = h.inject({ cmd: 'buy', uid: 1 })
    for (let i = 0; i < 5; i++) await turn()
    expect(h.egress).toHaveLength(0)
    await h.stop()
    expect((await p).replies[0]?.ret).toBe(0)
    expect(await storedState(storage, 1)).toEqual({ gold: 90, items: 1 })
  })

  test('route option checks: gate must be stored or none, and needs a session', () => {
    const app = createApp()
    expect(() => app.route('x', () => {}, { gate: 'yes' as never })).toThrow(/gate must be 'stored' or 'none'/)
    expect(() => app.route('y', () => {}, { gate: 'stored', session: false })).toThrow(/session: false/)
  })
})

/** Suite module: acquire, claim, writeFenced, the scope rule, stale writers, concurrency. */
import { describe, expect, it } from 'vitest'
import type { FencedWrite } from '../storage.ts'
import type { SuiteContext } from './context.ts'
import { b, expectBytes, expectCode } from './context.ts'

const put = (key: string, value: string) => ({ type: 'put' as const, key, value: b(value) })

export function fencingTests(ctx: SuiteContext): void {
  describe('fencing: acquire', () => {
    it('starts at a positive safe integer (1, or the clock in µs on Redis) and increments by 1, per fence', async () => {
      const s = await ctx.open()
      const f = await s.acquire('f')
      expect(Number.isSafeInteger(f) && f >= 1).toBe(true)
      expect(await s.acquire('f')).toBe(f + 1)
      const g = await s.acquire('g')
      expect(Number.isSafeInteger(g) && g >= 1).toBe(true)
      expect(await s.acquire('f')).toBe(f + 2)
      expect(await s.acquire('g')).toBe(g + 1)
      expect(Number.isSafeInteger(await s.acquire('f/sub'))).toBe(true)
    })

    it('concurrent acquires of one fence get distinct generations g+1..g+n, in call order', async () => {
      const s = await ctx.open()
      const g = await s.acquire('hot')
      const gens = await Promise.all(Array.from({ length: 50 }, () => s.acquire('hot')))
      expect(gens).toEqual(Array.from({ length: 50 }, (_, i) => g + i + 1))
      expect(await s.acquire('hot')).toBe(g + 51)
    })

    it('generations live in their own keyspace: get() never sees them, put() never changes them', async () => {
      const s = await ctx.open()
      const g = await s.acquire('f')
      expect(await s.getMany(['f', 'fence:f', 'fence:{f}', '{f}'])).toEqual([undefined, undefined, undefined, undefined])
      await s.put('f', b('data'))
      await s.put('fence:{f}', b('999'))
      expect(await s.acquire('f')).toBe(g + 1)
      expectBytes(await s.get('f'), 'data')
    })
  })

  describe('fencing: writeFenced', () => {
    it('applies a write whose generation is current', async () => {
      const s = await ctx.open()
      const g = await s.acquire('u1')
      const res = await s.writeFenced([{ fence: 'u1', generation: g, ops: [put('u1', 'state'), put('u1/bag', 'items'), { type: 'del', key: 'u1/old' }] }])
      expect(res).toEqual({ refused: [] })
      const [state, bag] = await s.getMany(['u1', 'u1/bag'])
      expectBytes(state, 'state')
      expectBytes(bag, 'items')
    })

    it('an empty list of writes, and a write with no ops, resolve', async () => {
      const s = await ctx.open()
      expect(await s.writeFenced([])).toEqual({ refused: [] })
      const g = await s.acquire('u1')
      expect(await s.writeFenced([{ fence: 'u1', generation: g, ops: [] }])).toEqual({ refused: [] })
    })

    it('refuses a write to a fence never acquired, and a generation not handed out yet', async () => {
      const s = await ctx.open()
      expect(await s.writeFenced([{ fence: 'never', generation: 1, ops: [put('never', 'x')] }])).toEqual({ refused: [0] })
      const g = await s.acquire('u1')
      expect(await s.writeFenced([{ fence: 'u1', generation: g + 1, ops: [put('u1', 'x')] }])).toEqual({ refused: [0] })
      expect(await s.getMany(['never', 'u1'])).toEqual([undefined, undefined])
    })

    it('a stale writer is refused after a newer acquire, and the newer owner is not disturbed', async () => {
      const s = await ctx.open()
      const a = await s.acquire('u1')
      expect((await s.writeFenced([{ fence: 'u1', generation: a, ops: [put('u1', 'A1')] }])).refused).toEqual([])
      const bGen = await s.acquire('u1')
      expect((await s.writeFenced([{ fence: 'u1', generation: a, ops: [put('u1', 'A2'), put('u1/x', 'A2')] }])).refused).toEqual([0])
      expectBytes(await s.get('u1'), 'A1')
      expect(await s.get('u1/x')).toBeUndefined()
      expect((await s.writeFenced([{ fence: 'u1', generation: bGen, ops: [put('u1', 'B1')] }])).refused).toEqual([])
      expectBytes(await s.get('u1'), 'B1')
    })

    it('reports refused writes by index and applies the others of the same call', async () => {
      const s = await ctx.open()
      const old = await s.acquire('a')
      const cur = await s.acquire('a')
      const g = await s.acquire('b')
      const writes: FencedWrite[] = [
        { fence: 'a', generation: old, ops: [put('a', 'old')] },
        { fence: 'b', generation: g, ops: [put('b', 'b1')] },
        { fence: 'a', generation: cur, ops: [put('a/1', 'cur')] },
        { fence: 'c', generation: 1, ops: [put('c', 'c')] },
        { fence: 'b', generation: g, ops: [put('b/2', 'b2')] },
      ]
      expect(await s.writeFenced(writes)).toEqual({ refused: [0, 3] })
      const [a, a1, bv, b2, c] = await s.getMany(['a', 'a/1', 'b', 'b/2', 'c'])
      expect(a).toBeUndefined()
      expectBytes(a1, 'cur')
      expectBytes(bv, 'b1')
      expectBytes(b2, 'b2')
      expect(c).toBeUndefined()
    })

    it('writes of one fence in one call apply in order', async () => {
      const s = await ctx.open()
      const g = await s.acquire('u')
      await s.writeFenced([
        { fence: 'u', generation: g, ops: [put('u', '1'), put('u/x', 'x')] },
        { fence: 'u', generation: g, ops: [put('u', '2'), { type: 'del', key: 'u/x' }] },
      ])
      expectBytes(await s.get('u'), '2')
      expect(await s.get('u/x')).toBeUndefined()
    })

    it('the scope rule: every op key is the fence or starts with fence + "/", else INVALID_KEY and nothing applies', async () => {
      const s = await ctx.open()
      const g = await s.acquire('ab')
      const ok = { fence: 'ab', generation: g, ops: [put('ab', 'ok')] }
      for (const bad of ['a', 'abc', 'abc/x', 'ab_', 'x/ab', 'ab\\x']) {
        await expectCode(s.writeFenced([ok, { fence: 'ab', generation: g, ops: [put(bad, 'x')] }]), 'PEONY_STORAGE_INVALID_KEY')
      }
      await expectCode(s.writeFenced([ok, { fence: 'ab', generation: g, ops: [{ type: 'del', key: 'other' }] }]), 'PEONY_STORAGE_INVALID_KEY')
      expect(await s.get('ab')).toBeUndefined()
      expect(
        (await s.writeFenced([{ fence: 'ab', generation: g, ops: [put('ab', '1'), put('ab/c', '2'), put('ab/c/d', '3'), put('ab/', '4')] }])).refused,
      ).toEqual([])
      expectBytes(await s.get('ab/c/d'), '3')
      const g2 = await s.acquire('ab/c')
      expect((await s.writeFenced([{ fence: 'ab/c', generation: g2, ops: [put('ab/c/e', '5')] }])).refused).toEqual([])
      await expectCode(s.writeFenced([{ fence: 'ab/c', generation: g2, ops: [put('ab', 'x')] }]), 'PEONY_STORAGE_INVALID_KEY')
    })

    it('fenced writes carry deletes and large calls (3000 writes of 1 KB)', async () => {
      const s = await ctx.open()
      const value = new Uint8Array(1024).fill(3)
      const fences = Array.from({ length: 3000 }, (_, i) => `s${i}`)
      const gens = await Promise.all(fences.map((f) => s.acquire(f)))
      const res = await s.writeFenced(fences.map((f, i) => ({ fence: f, generation: gens[i]!, ops: [{ type: 'put', key: `${f}/state`, value }] })))
      expect(res.refused).toEqual([])
      const got = await s.getMany(fences.map((f) => `${f}/state`))
      expect(got.every((v) => v !== undefined && v.byteLength === 1024 && v[0] === 3 && v[1023] === 3)).toBe(true)
      await s.writeFenced(fences.map((f, i) => ({ fence: f, generation: gens[i]!, ops: [{ type: 'del', key: `${f}/state` }] })))
      expect((await s.getMany(fences.map((f) => `${f}/state`))).every((v) => v === undefined)).toBe(true)
    })
  })

  describe('fencing: call order', () => {
    const hold = ctx.options.holdNextRead
    const why =
      hold === undefined ? ' [SKIPPED: the suite has no holdNextRead hook for this driver]' : ctx.options.reopen === undefined ? ' [SKIPPED: needs reopen]' : ''
    for (const how of ['claim', 'acquire'] as const) {
      it.skipIf(why !== '')(
        `${how}s of one uncached fence take generations in call order when the first read is slow: the abandoned one never fences its retry${why}`,
        async () => {
          let s = await ctx.open()
          const g0 = await s.acquire('u')
          await s.writeFenced([{ fence: 'u', generation: g0, ops: [put('u', 'before')] }])
          s = await ctx.reopen(s) // nothing cached: the next claim reads the generation from the backend
          const held = hold!(s)
          const call = () => (how === 'claim' ? s.claim('u', ['u']).then((c) => c.generation) : s.acquire('u'))
          // The first call's read is held (a slow cold read): its caller gives up on it and tries again.
          const abandoned = call()
          await new Promise((r) => setTimeout(r, 30))
          const retry = call()
          await new Promise((r) => setTimeout(r, 30))
          expect(await settledYet(abandoned), "the hook held the first call's read").toBe(false)
          held.release()
          const [a, r] = await Promise.all([abandoned, retry])
          expect(a, 'the first call takes the first generation').toBe(g0 + 1)
          expect(r, 'the retry takes the next one').toBe(g0 + 2)
          // The retry's owner is the live one: its writes land, the abandoned claim's would not.
          expect((await s.writeFenced([{ fence: 'u', generation: r, ops: [put('u', 'live')] }])).refused).toEqual([])
          expect((await s.writeFenced([{ fence: 'u', generation: a, ops: [put('u', 'stale')] }])).refused).toEqual([0])
          expectBytes(await s.get('u'), 'live')
        },
      )
    }

    it.skipIf(why !== '')(`a write queued behind a slow generation read is checked before a later claim of its fence${why}`, async () => {
      let s = await ctx.open()
      const g = await s.acquire('w')
      s = await ctx.reopen(s)
      const held = hold!(s)
      const write = s.writeFenced([{ fence: 'w', generation: g, ops: [put('w', 'owner')] }])
      await new Promise((r) => setTimeout(r, 30))
      const claim = s.claim('w', ['w'])
      await new Promise((r) => setTimeout(r, 30))
      expect(await settledYet(write), "the hook held the write's generation read").toBe(false)
      held.release()
      expect((await write).refused, 'the write came first: accepted').toEqual([])
      const c = await claim
      expect(c.generation).toBe(g + 1)
      expectBytes(c.values[0], 'owner')
    })
  })

  describe('fencing: a backend that lost its data', () => {
    const lose = ctx.options.loseData
    const why = lose === undefined ? ' [SKIPPED: the suite has no loseData hook for this driver]' : ''
    it.skipIf(why !== '')(`an owner from before the loss is refused once a new owner claimed; a sole owner keeps writing${why}`, async () => {
      const s = await ctx.open()
      const a = await s.claim('a', ['a'])
      const solo = await s.claim('solo', ['solo'])
      await s.writeFenced([
        { fence: 'a', generation: a.generation, ops: [put('a', 'a1')] },
        { fence: 'solo', generation: solo.generation, ops: [put('solo', 's1')] },
      ])
      await lose!(s)
      // A new owner of 'a' claims after the loss: it must get a generation the old owner does not hold.
      const a2 = await s.claim('a', ['a'])
      expect(a2.generation).not.toBe(a.generation)
      expect(a2.values[0]).toBeUndefined()
      expect((await s.writeFenced([{ fence: 'a', generation: a.generation, ops: [put('a', 'stale')] }])).refused, 'the old owner is refused').toEqual([0])
      expect((await s.writeFenced([{ fence: 'a', generation: a2.generation, ops: [put('a', 'new')] }])).refused).toEqual([])
      expectBytes(await s.get('a'), 'new')
      // Nobody claimed 'solo' since the loss: its owner's write is the only copy, and it lands.
      expect((await s.writeFenced([{ fence: 'solo', generation: solo.generation, ops: [put('solo', 's2')] }])).refused, 'the sole owner keeps writing').toEqual(
        [],
      )
      expectBytes(await s.get('solo'), 's2')
      const next = await s.claim('solo', ['solo'])
      expect(next.generation).toBe(solo.generation + 1)
      expectBytes(next.values[0], 's2')
      expect((await s.writeFenced([{ fence: 'solo', generation: solo.generation, ops: [put('solo', 'late')] }])).refused).toEqual([0])
    })
  })

  describe('fencing: claim', () => {
    it('returns the next generation and the values', async () => {
      const s = await ctx.open()
      await s.put('u1', b('state'))
      const c = await s.claim('u1', ['u1', 'u1/bag', 'other'])
      expect(Number.isSafeInteger(c.generation) && c.generation >= 1).toBe(true)
      expect(c.values).toHaveLength(3)
      expectBytes(c.values[0], 'state')
      expect(c.values[1]).toBeUndefined()
      expect(c.values[2]).toBeUndefined()
      expect((await s.claim('u1', [])).generation).toBe(c.generation + 1)
      expect(await s.acquire('u1')).toBe(c.generation + 2)
    })

    it('fences off the previous owner and reads its last accepted write', async () => {
      const s = await ctx.open()
      const a = await s.claim('u1', ['u1'])
      await s.writeFenced([{ fence: 'u1', generation: a.generation, ops: [put('u1', 'A')] }])
      const bClaim = await s.claim('u1', ['u1'])
      expect(bClaim.generation).toBe(a.generation + 1)
      expectBytes(bClaim.values[0], 'A')
      expect((await s.writeFenced([{ fence: 'u1', generation: a.generation, ops: [put('u1', 'late')] }])).refused).toEqual([0])
      expectBytes(await s.get('u1'), 'A')
    })

    it('a claim racing a stream of writes by the old owner: writes are checked in call order, the claim reads the last accepted one, later ones are refused', async () => {
      const s = await ctx.open()
      for (let round = 0; round < 5; round++) {
        const fence = `race${round}`
        const a = await s.claim(fence, [])
        await s.writeFenced([{ fence, generation: a.generation, ops: [put(fence, 'start')] }])
        const writes: Promise<{ refused: number[] }>[] = []
        let claim: Promise<{ generation: number; values: (Uint8Array | undefined)[] }> | undefined
        for (let i = 0; i < 40; i++) {
          writes.push(s.writeFenced([{ fence, generation: a.generation, ops: [put(fence, `w${i}`), put(`${fence}/n`, String(i))] }]))
          if (i === 10 + round * 5) claim = s.claim(fence, [fence, `${fence}/n`])
        }
        const results = await Promise.all(writes)
        const c = await claim!
        const accepted = results.map((r) => r.refused.length === 0)
        const k = accepted.indexOf(false) === -1 ? accepted.length : accepted.indexOf(false)
        expect(
          accepted.slice(k).every((x) => !x),
          'accepted writes are a prefix of the calls',
        ).toBe(true)
        expect(k).toBeLessThan(40)
        if (k === 0) expectBytes(c.values[0], 'start')
        else {
          expectBytes(c.values[0], `w${k - 1}`)
          expectBytes(c.values[1], String(k - 1))
        }
        expect((await s.writeFenced([{ fence, generation: a.generation, ops: [put(fence, 'after')] }])).refused).toEqual([0])
        expectBytes(await s.get(fence), k === 0 ? 'start' : `w${k - 1}`)
      }
    })

    it("a claim's handle, passed back with writes, changes no verdict: right, stale, another fence's, unknown", async () => {
      const s = await ctx.open()
      const a = await s.claim('h1', ['h1'])
      const other = await s.claim('h2', ['h2'])
      expect(a.handle === undefined || (Number.isSafeInteger(a.handle) && a.handle >= 0)).toBe(true)
      const w = (generation: number, value: string, handle: number | undefined) => ({ fence: 'h1', generation, ops: [put('h1', value)], handle })
      expect((await s.writeFenced([w(a.generation, 'own', a.handle)])).refused).toEqual([])
      expectBytes(await s.get('h1'), 'own')
      // Another fence's handle, an unknown one: still h1's generation that decides.
      expect(
        (await s.writeFenced([w(a.generation, 'theirs', other.handle), w(a.generation, 'far', 1_000_000), w(a.generation + 1, 'ahead', a.handle)])).refused,
      ).toEqual([2])
      expectBytes(await s.get('h1'), 'far')
      const b2 = await s.claim('h1', ['h1'])
      // The new owner's handle with the old owner's generation, and the other way round: refused / accepted by generation.
      expect(
        (await s.writeFenced([w(a.generation, 'stale', b2.handle), w(b2.generation, 'new', a.handle), w(a.generation, 'stale2', other.handle)])).refused,
      ).toEqual([0, 2])
      expectBytes(await s.get('h1'), 'new')
      expect((await s.writeFenced([{ fence: 'h2', generation: other.generation, ops: [put('h2', 'x')], handle: b2.handle }])).refused).toEqual([])
      expectBytes(await s.get('h2'), 'x')
    })

    it('two owners alternating claims: only the latest owner ever lands a write', async () => {
      const s = await ctx.open()
      let last = 'none'
      const owners: number[] = []
      for (let i = 0; i < 10; i++) {
        owners.push((await s.claim('u', ['u'])).generation)
        const writes = owners.map((g, j) => ({ fence: 'u', generation: g, ops: [put('u', `owner${j}`)] }))
        const { refused } = await s.writeFenced(writes)
        expect(refused).toEqual(owners.slice(0, -1).map((_, j) => j))
        last = `owner${owners.length - 1}`
        expectBytes(await s.get('u'), last)
      }
    })
  })
}

/** Whether `p` has settled by the next macrotask (a call the suite's hook holds has not). */
function settledYet(p: Promise<unknown>): Promise<boolean> {
  return Promise.race([
    p.then(
      () => true,
      () => true,
    ),
    new Promise<boolean>((r) => setTimeout(r, 0, false)),
  ])
}

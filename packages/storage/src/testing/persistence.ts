/** Suite module: a new instance over the same data (options.reopen) sees data and generations. */
import { describe, expect, it } from 'vitest'
import type { SuiteContext } from './context.ts'
import { b, expectBytes } from './context.ts'

export function persistenceTests(ctx: SuiteContext): void {
  describe.skipIf(ctx.options.reopen === undefined)('a new instance over the same data', () => {
    it('sees the data and continues the generations; a writer from before is refused', async () => {
      const s = await ctx.open()
      await s.batch([
        { type: 'put', key: 'a', value: b('1') },
        { type: 'put', key: 'b', value: b('2') },
      ])
      const c = await s.claim('u', ['u'])
      await s.writeFenced([{ fence: 'u', generation: c.generation, ops: [{ type: 'put', key: 'u', value: b('state') }] }])
      await s.acquire('v')
      const v = await s.acquire('v')
      const t = await ctx.reopen(s)
      const [a, bb] = await t.getMany(['a', 'b'])
      expectBytes(a, '1')
      expectBytes(bb, '2')
      const again = await t.claim('u', ['u'])
      expect(again.generation).toBe(c.generation + 1)
      expectBytes(again.values[0], 'state')
      expect(await t.acquire('v')).toBe(v + 1)
      expect((await t.writeFenced([{ fence: 'u', generation: c.generation, ops: [{ type: 'put', key: 'u', value: b('stale') }] }])).refused).toEqual([0])
      expectBytes(await t.get('u'), 'state')
    })
  })
}

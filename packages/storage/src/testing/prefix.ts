/** Suite module: the key prefix reaches the driver and isolates keys and fences. */
import { describe, expect, it } from 'vitest'
import type { SuiteContext } from './context.ts'
import { b, expectBytes } from './context.ts'

export function prefixTests(ctx: SuiteContext): void {
  describe('prefix', () => {
    it('storage.prefix ends with the prefix the suite asked the factory for', async () => {
      const s = await ctx.create()
      expect(typeof s.prefix).toBe('string')
      if (ctx.prefix !== undefined)
        expect(s.prefix.endsWith(ctx.prefix), `factory must pass options.prefix to the driver (prefix is ${JSON.stringify(s.prefix)})`).toBe(true)
    })

    it.skipIf(ctx.options.reopen === undefined)('other prefixes over the same data see neither the keys nor the fences', async () => {
      const base = ctx.prefix ?? ''
      const s = await ctx.open()
      await s.put('k', b('mine'))
      await s.put('k/sub', b('mine'))
      const g = await s.acquire('f')
      const other = await ctx.reopen(s, `${base}other/`)
      expect(await other.getMany(['k', 'k/sub'])).toEqual([undefined, undefined])
      const o = await other.acquire('f')
      expect(await other.acquire('f')).toBe(o + 1)
      await other.put('k', b('theirs'))
      const back = await ctx.reopen(other, base === '' ? undefined : base)
      expectBytes(await back.get('k'), 'mine')
      expect(await back.acquire('f')).toBe(g + 1)
    })
  })
}

/** Suite module: getMany. */
import { describe, expect, it } from 'vitest'
import type { SuiteContext } from './context.ts'
import { b, expectBytes } from './context.ts'

export function getManyTests(ctx: SuiteContext): void {
  describe('getMany', () => {
    it('of no keys is []', async () => {
      const s = await ctx.open()
      expect(await s.getMany([])).toEqual([])
    })

    it('returns values in key order, undefined for missing keys, repeats allowed', async () => {
      const s = await ctx.open()
      await s.put('a', b('1'))
      await s.put('c', b('3'))
      const got = await s.getMany(['c', 'b', 'a', 'c'])
      expect(got).toHaveLength(4)
      expectBytes(got[0], '3')
      expect(got[1]).toBeUndefined()
      expectBytes(got[2], '1')
      expectBytes(got[3], '3')
    })

    it('reads 2000 keys in one call', async () => {
      const s = await ctx.open()
      const keys = Array.from({ length: 2000 }, (_, i) => `m/${i}`)
      await s.batch(keys.filter((_, i) => i % 2 === 0).map((key) => ({ type: 'put' as const, key, value: b(key) })))
      const got = await s.getMany(keys)
      got.forEach((v, i) => (i % 2 === 0 ? expectBytes(v, keys[i]!) : expect(v).toBeUndefined()))
    })
  })
}

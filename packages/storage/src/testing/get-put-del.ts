/** Suite module: get, put, del, and what counts as a distinct key. */
import { describe, expect, it } from 'vitest'
import type { SuiteContext } from './context.ts'
import { b, expectBytes } from './context.ts'

export function getPutDelTests(ctx: SuiteContext): void {
  describe('get, put, del', () => {
    it('get of a missing key is undefined', async () => {
      const s = await ctx.open()
      expect(await s.get('missing')).toBeUndefined()
    })

    it('put then get returns the value; put again overwrites it', async () => {
      const s = await ctx.open()
      await s.put('k', b('one'))
      expectBytes(await s.get('k'), 'one')
      await s.put('k', b('two'))
      expectBytes(await s.get('k'), 'two')
    })

    it('del removes a key; del of a missing key resolves', async () => {
      const s = await ctx.open()
      await s.put('k', b('v'))
      await s.del('k')
      expect(await s.get('k')).toBeUndefined()
      await s.del('k')
      await s.del('never-there')
    })

    it('keys are compared exactly: case, segments, unicode, spaces, the longest key', async () => {
      const s = await ctx.open()
      const keys = ['a', 'A', 'a/b', 'a/b/', '/a', 'a b', 'a\nb', '玩家/1', '🎮', '{a}', 'fence:{a}', 'x'.repeat(1024), 'é'.repeat(512)]
      for (const [i, k] of keys.entries()) await s.put(k, b(`v${i}`))
      for (const [i, k] of keys.entries()) expectBytes(await s.get(k), `v${i}`)
      expect(await s.get('a/')).toBeUndefined()
      expect(await s.get('b')).toBeUndefined()
    })

    it('a value read is not changed by a later put', async () => {
      const s = await ctx.open()
      await s.put('k', b('one'))
      const v = await s.get('k')
      await s.put('k', b('two'))
      expectBytes(v, 'one')
    })

    it('many concurrent puts to different keys all land', async () => {
      const s = await ctx.open()
      await Promise.all(Array.from({ length: 200 }, (_, i) => s.put(`p/${i}`, b(String(i)))))
      const got = await Promise.all(Array.from({ length: 200 }, (_, i) => s.get(`p/${i}`)))
      got.forEach((v, i) => expectBytes(v, String(i)))
    })
  })
}

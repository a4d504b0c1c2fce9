/** Suite module: batch. */
import { describe, expect, it } from 'vitest'
import type { SuiteContext } from './context.ts'
import { b, expectBytes, expectCode } from './context.ts'

export function batchTests(ctx: SuiteContext): void {
  describe('batch', () => {
    it('applies puts and dels in order', async () => {
      const s = await ctx.open()
      await s.put('gone', b('x'))
      await s.batch([
        { type: 'put', key: 'a', value: b('1') },
        { type: 'put', key: 'b', value: b('2') },
        { type: 'del', key: 'gone' },
        { type: 'put', key: 'twice', value: b('first') },
        { type: 'put', key: 'twice', value: b('second') },
        { type: 'put', key: 'put-then-del', value: b('x') },
        { type: 'del', key: 'put-then-del' },
        { type: 'del', key: 'del-then-put' },
        { type: 'put', key: 'del-then-put', value: b('y') },
      ])
      const [a, bb, gone, twice, ptd, dtp] = await s.getMany(['a', 'b', 'gone', 'twice', 'put-then-del', 'del-then-put'])
      expectBytes(a, '1')
      expectBytes(bb, '2')
      expect(gone).toBeUndefined()
      expectBytes(twice, 'second')
      expect(ptd).toBeUndefined()
      expectBytes(dtp, 'y')
    })

    it('an empty batch resolves', async () => {
      const s = await ctx.open()
      await s.batch([])
    })

    it('one bad op rejects the whole batch and applies nothing', async () => {
      const s = await ctx.open()
      const ops = Array.from({ length: 50 }, (_, i) => ({ type: 'put' as const, key: `k${i}`, value: b('v') }))
      await expectCode(s.batch([...ops, { type: 'put', key: '', value: b('v') }]), 'PEONY_STORAGE_INVALID_KEY')
      await expectCode(s.batch([...ops, { type: 'put', key: 'z', value: 'v' as unknown as Uint8Array }]), 'PEONY_STORAGE_INVALID_VALUE')
      await expect(s.batch([...ops, { type: 'set', key: 'z' } as never])).rejects.toBeInstanceOf(TypeError)
      expect((await s.getMany(ops.map((o) => o.key))).every((v) => v === undefined)).toBe(true)
    })

    it('5000 ops of 1 KB in one batch', async () => {
      const s = await ctx.open()
      const value = new Uint8Array(1024).fill(7)
      await s.batch(Array.from({ length: 5000 }, (_, i) => ({ type: 'put' as const, key: `big/${i}`, value })))
      const got = await s.getMany(['big/0', 'big/4999'])
      expectBytes(got[0], value)
      expectBytes(got[1], value)
    })
  })
}

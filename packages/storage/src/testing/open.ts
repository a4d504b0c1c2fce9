/** Suite module: status, open/close, reopen, in-flight calls at close, NOT_OPEN. */
import { describe, expect, it } from 'vitest'
import type { SuiteContext } from './context.ts'
import { b, expectBytes, expectCode } from './context.ts'

export function openTests(ctx: SuiteContext): void {
  describe('open, close, status', () => {
    it('a new storage is closed; open() goes through opening to open', async () => {
      const s = await ctx.create()
      expect(s.status).toBe('closed')
      const p = s.open()
      expect(s.status).toBe('opening')
      await p
      expect(s.status).toBe('open')
    })

    it('open() is idempotent, concurrent or repeated', async () => {
      const s = await ctx.create()
      await Promise.all([s.open(), s.open(), s.open()])
      await s.open()
      expect(s.status).toBe('open')
      await s.put('k', b('v'))
      expectBytes(await s.get('k'), 'v')
    })

    it('close() goes through closing to closed, and is idempotent', async () => {
      const s = await ctx.open()
      const p = s.close()
      expect(s.status).toBe('closing')
      await Promise.all([p, s.close()])
      expect(s.status).toBe('closed')
      await s.close()
      expect(s.status).toBe('closed')
    })

    it('close() of a storage never opened resolves', async () => {
      const s = await ctx.create()
      await s.close()
      expect(s.status).toBe('closed')
    })

    it('a closed storage can be opened again and still has its data and generations', async () => {
      const s = await ctx.open()
      await s.put('k', b('v'))
      const g = await s.acquire('f')
      await s.close()
      await s.open()
      expect(s.status).toBe('open')
      expectBytes(await s.get('k'), 'v')
      expect(await s.acquire('f')).toBe(g + 1)
    })

    it('close() waits for calls in flight', async () => {
      const s = await ctx.open()
      const puts = Array.from({ length: 20 }, (_, i) => s.put(`k${i}`, b(`v${i}`)))
      const g = s.acquire('f')
      await s.close()
      await Promise.all(puts)
      expect(Number.isSafeInteger(await g)).toBe(true)
      await s.open()
      expectBytes(await s.get('k19'), 'v19')
    })

    it('every call before open() rejects with PEONY_STORAGE_NOT_OPEN (not retryable)', async () => {
      const s = await ctx.create()
      await expectCode(s.get('k'), 'PEONY_STORAGE_NOT_OPEN', false)
      await expectCode(s.getMany(['k']), 'PEONY_STORAGE_NOT_OPEN')
      await expectCode(s.put('k', b('v')), 'PEONY_STORAGE_NOT_OPEN')
      await expectCode(s.del('k'), 'PEONY_STORAGE_NOT_OPEN')
      await expectCode(s.batch([{ type: 'del', key: 'k' }]), 'PEONY_STORAGE_NOT_OPEN')
      await expectCode(s.acquire('f'), 'PEONY_STORAGE_NOT_OPEN')
      await expectCode(s.claim('f', ['f']), 'PEONY_STORAGE_NOT_OPEN')
      await expectCode(s.writeFenced([{ fence: 'f', generation: 1, ops: [] }]), 'PEONY_STORAGE_NOT_OPEN')
    })

    it('calls while opening, closing and after close reject with PEONY_STORAGE_NOT_OPEN', async () => {
      const s = await ctx.create()
      const opening = s.open()
      await expectCode(s.get('k'), 'PEONY_STORAGE_NOT_OPEN')
      await opening
      const closing = s.close()
      await expectCode(s.put('k', b('v')), 'PEONY_STORAGE_NOT_OPEN')
      await closing
      await expectCode(s.get('k'), 'PEONY_STORAGE_NOT_OPEN')
      await expectCode(s.writeFenced([]), 'PEONY_STORAGE_NOT_OPEN')
    })

    it('supports is a manifest of booleans with fencing: true', async () => {
      const s = await ctx.open()
      expect(s.supports.fencing).toBe(true)
      for (const k of ['persistent', 'shared', 'atomicBatch'] as const) expect(typeof s.supports[k]).toBe('boolean')
    })

    it('Symbol.asyncDispose closes the storage', async () => {
      const s = await ctx.open()
      await s[Symbol.asyncDispose]()
      expect(s.status).toBe('closed')
    })
  })
}

/** Suite module: the codes for bad keys and values, and TypeErrors for malformed arguments. */
import { describe, expect, it } from 'vitest'
import type { AbstractStorage } from '../storage.ts'
import type { SuiteContext } from './context.ts'
import { b, expectCode } from './context.ts'

/** Keys every method must refuse with PEONY_STORAGE_INVALID_KEY. */
const BAD_KEYS: unknown[] = ['', 'a\0b', '\0', 'x'.repeat(1025), 'é'.repeat(513), '🎮'.repeat(257), 42, null, undefined, {}, ['k'], b('k')]
/** Values every method must refuse with PEONY_STORAGE_INVALID_VALUE. */
const BAD_VALUES: unknown[] = [
  'v',
  42,
  null,
  undefined,
  {},
  [1, 2],
  new ArrayBuffer(2),
  new DataView(new ArrayBuffer(2)),
  new Int8Array(2),
  new Uint16Array(2),
  new Uint8ClampedArray(2),
]

export function errorTests(ctx: SuiteContext): void {
  describe('errors', () => {
    it('bad keys: PEONY_STORAGE_INVALID_KEY (not retryable) from every method', async () => {
      const s: AbstractStorage = await ctx.open()
      const g = await s.acquire('f')
      for (const k of BAD_KEYS) {
        const key = k as string
        await expectCode(s.get(key), 'PEONY_STORAGE_INVALID_KEY', false)
        await expectCode(s.getMany(['ok', key]), 'PEONY_STORAGE_INVALID_KEY')
        await expectCode(s.put(key, b('v')), 'PEONY_STORAGE_INVALID_KEY')
        await expectCode(s.del(key), 'PEONY_STORAGE_INVALID_KEY')
        await expectCode(
          s.batch([
            { type: 'put', key: 'ok', value: b('v') },
            { type: 'del', key },
          ]),
          'PEONY_STORAGE_INVALID_KEY',
        )
        await expectCode(s.acquire(key), 'PEONY_STORAGE_INVALID_KEY')
        await expectCode(s.claim(key, []), 'PEONY_STORAGE_INVALID_KEY')
        await expectCode(s.claim('f', [key]), 'PEONY_STORAGE_INVALID_KEY')
        await expectCode(s.writeFenced([{ fence: key, generation: 1, ops: [] }]), 'PEONY_STORAGE_INVALID_KEY')
        await expectCode(s.writeFenced([{ fence: 'f', generation: g, ops: [{ type: 'del', key }] }]), 'PEONY_STORAGE_INVALID_KEY')
      }
      expect(await s.get('ok')).toBeUndefined()
      expect(await s.acquire('f')).toBe(g + 1)
    })

    it('a key of exactly 1024 UTF-8 bytes is fine, 1025 is not', async () => {
      const s = await ctx.open()
      await s.put('é'.repeat(512), b('v'))
      await s.put(`${'é'.repeat(511)}ab`, b('v'))
      await expectCode(s.put(`${'é'.repeat(511)}abc`, b('v')), 'PEONY_STORAGE_INVALID_KEY')
    })

    it('bad values: PEONY_STORAGE_INVALID_VALUE (not retryable) from put, batch and writeFenced', async () => {
      const s = await ctx.open()
      const g = await s.acquire('f')
      for (const v of BAD_VALUES) {
        const value = v as Uint8Array
        await expectCode(s.put('k', value), 'PEONY_STORAGE_INVALID_VALUE', false)
        await expectCode(s.batch([{ type: 'put', key: 'k', value }]), 'PEONY_STORAGE_INVALID_VALUE')
        await expectCode(s.writeFenced([{ fence: 'f', generation: g, ops: [{ type: 'put', key: 'f', value }] }]), 'PEONY_STORAGE_INVALID_VALUE')
      }
      expect(await s.getMany(['k', 'f'])).toEqual([undefined, undefined])
    })

    it('malformed arguments are TypeErrors: not arrays, unknown op types, generations that are not positive integers, handles that are not non-negative integers', async () => {
      const s = await ctx.open()
      await expect(s.getMany('k' as never)).rejects.toBeInstanceOf(TypeError)
      await expect(s.batch({} as never)).rejects.toBeInstanceOf(TypeError)
      await expect(s.batch([null as never])).rejects.toBeInstanceOf(TypeError)
      await expect(s.claim('f', 'k' as never)).rejects.toBeInstanceOf(TypeError)
      await expect(s.writeFenced({} as never)).rejects.toBeInstanceOf(TypeError)
      await expect(s.writeFenced([{ fence: 'f', generation: 1, ops: {} as never }])).rejects.toBeInstanceOf(TypeError)
      for (const generation of [0, -1, 1.5, Number.NaN, Infinity, '1', undefined, 2 ** 53]) {
        await expect(s.writeFenced([{ fence: 'f', generation: generation as number, ops: [] }])).rejects.toBeInstanceOf(TypeError)
      }
      for (const handle of [-1, 1.5, Number.NaN, '1', null]) {
        await expect(s.writeFenced([{ fence: 'f', generation: 1, ops: [], handle: handle as number }])).rejects.toBeInstanceOf(TypeError)
      }
    })
  })
}

/** Suite module: values are bytes, exactly: empty, zeros, every byte value, 1 MB, views, no aliasing. */
import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import type { SuiteContext } from './context.ts'
import { expectBytes } from './context.ts'

export function binaryTests(ctx: SuiteContext): void {
  describe('binary values', () => {
    const cases: [string, () => Uint8Array][] = [
      ['empty', () => new Uint8Array(0)],
      ['one zero byte', () => new Uint8Array(1)],
      ['1 KB of zeros', () => new Uint8Array(1024)],
      ['every byte value', () => Uint8Array.from({ length: 256 }, (_, i) => i)],
      ['invalid UTF-8', () => Uint8Array.from([0xff, 0xfe, 0xc3, 0x28, 0xed, 0xa0, 0x80])],
      ['1 MB of random bytes (a Buffer)', () => randomBytes(1 << 20)],
    ]
    for (const [name, make] of cases) {
      it(`round-trips ${name} through put/get, batch/getMany, writeFenced/claim`, async () => {
        const s = await ctx.open()
        const v = make()
        await s.put('p', v)
        expectBytes(await s.get('p'), v)
        await s.batch([{ type: 'put', key: 'b', value: v }])
        expectBytes((await s.getMany(['b']))[0], v)
        const g = await s.acquire('w')
        expect((await s.writeFenced([{ fence: 'w', generation: g, ops: [{ type: 'put', key: 'w/v', value: v }] }])).refused).toEqual([])
        expectBytes((await s.claim('w', ['w/v'])).values[0], v)
      })
    }

    it('stores only the bytes of a view, not its whole buffer', async () => {
      const s = await ctx.open()
      const big = Uint8Array.from({ length: 64 }, (_, i) => i)
      const view = big.subarray(10, 20)
      await s.put('v', view)
      await s.batch([{ type: 'put', key: 'vb', value: big.subarray(30, 33) }])
      expectBytes(
        await s.get('v'),
        Uint8Array.from({ length: 10 }, (_, i) => i + 10),
      )
      expectBytes(await s.get('vb'), Uint8Array.from([30, 31, 32]))
    })

    it('no aliasing: changing a value after put, or a value read, changes nothing stored', async () => {
      const s = await ctx.open()
      const v = Uint8Array.from([1, 2, 3])
      await s.put('k', v)
      v[0] = 9
      const got = (await s.get('k'))!
      expectBytes(got, Uint8Array.from([1, 2, 3]))
      got[1] = 9
      expectBytes(await s.get('k'), Uint8Array.from([1, 2, 3]))
      const many = await s.getMany(['k', 'k'])
      many[0]![2] = 9
      expectBytes(many[1], Uint8Array.from([1, 2, 3]))
      expectBytes(await s.get('k'), Uint8Array.from([1, 2, 3]))
    })
  })
}

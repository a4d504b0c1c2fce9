/**
 * The main entry loads in a browser: esbuild bundles it for the browser platform, with no
 * polyfills, without an error (an import of `node:crypto`, say, does not resolve there), and the
 * (minified) bundle names neither `Buffer` nor `process` nor `require`. Then the bundle runs in a fresh V8
 * context that has only the language's built-ins and the two browser globals the codec uses
 * (TextEncoder, TextDecoder): it encodes, decodes and chooses a server there.
 */
import { runInNewContext } from 'node:vm'
import { fileURLToPath } from 'node:url'
import { build, type Message } from 'esbuild'
import { describe, expect, it } from 'vitest'
import { chooseServer, decodeTasks, encodeTasks, packValue, unpackValue } from '@peony/protocol'

const ENTRY = fileURLToPath(new URL('../src/index.ts', import.meta.url))

async function bundle(): Promise<{ code: string; errors: Message[]; warnings: Message[] }> {
  const result = await build({
    entryPoints: [ENTRY],
    bundle: true,
    platform: 'browser',
    format: 'iife',
    globalName: 'peonyProtocol',
    target: 'es2022',
    write: false,
    logLevel: 'silent',
    legalComments: 'none',
    // Minified, so comments are gone and what is left is code; free globals keep their names.
    minify: true,
    // No polyfills, no shims: what does not exist in a browser must fail the build.
    conditions: ['@peony/source'],
  })
  return { code: result.outputFiles[0]!.text, errors: result.errors, warnings: result.warnings }
}

describe('@peony/protocol in a browser', () => {
  it('bundles for the browser platform with no error, no warning and no Node global', async () => {
    const { code, errors, warnings } = await bundle()
    expect(errors).toEqual([])
    expect(warnings).toEqual([])
    expect(code).not.toMatch(/["']node:/)
    expect(code).not.toMatch(/\bBuffer\b/)
    expect(code).not.toMatch(/\bprocess\b/)
    expect(code).not.toMatch(/\brequire\s*\(/)
  })

  it('runs with only the built-ins and TextEncoder/TextDecoder, giving the same bytes and choices as in Node', async () => {
    const { code } = await bundle()
    const tasks = [
      { cmd: 10, uid: 2 ** 40 + 1, nodeId: 3, connId: 2n ** 62n, tag: 7, body: [1, 2, 3] },
      { cmd: 15, uid: 'joueur-é', nodeId: 3, connId: 4, clientIp: '10.0.0.1' },
    ]
    const state = { hp: 100, name: 'n'.repeat(70) + '✓', big: 2n ** 63n - 1n, list: [1.5, -3, null, true] }
    const servers = ['peony-a', 'peony-b', 'peony-c']
    // Runs inside the context: its own Uint8Array, no Buffer, no process, no require.
    const script = `
      const p = peonyProtocol
      const tasks = input.tasks.map((t) => ({ ...t, body: t.body && new Uint8Array(t.body) }))
      const frame = p.encodeTasks(tasks)
      const decoded = p.decodeTasks(frame)
      ;({
        globals: [typeof Buffer, typeof process, typeof require],
        frame: Array.from(frame),
        decoded: decoded.tasks.map((t) => ({ ...t, body: t.body && Array.from(t.body) })),
        rejects: decoded.rejects.length,
        packed: Array.from(p.packValue(input.state)),
        unpacked: p.unpackValue(p.packValue(input.state)),
        chosen: input.uids.map((uid) => p.chooseServer(input.servers, { cmd: 10, uid })),
      })`
    const uids: (number | string)[] = []
    for (let i = 1; i <= 200; i++) uids.push(i % 2 === 0 ? i * 7919 : `player-${i}`)
    const out = runInNewContext(code + script, {
      TextEncoder,
      TextDecoder,
      input: { tasks, state, servers, uids },
    }) as {
      globals: string[]
      frame: number[]
      decoded: Record<string, unknown>[]
      rejects: number
      packed: number[]
      unpacked: unknown
      chosen: string[]
    }
    expect(out.globals).toEqual(['undefined', 'undefined', 'undefined'])
    const nodeTasks = tasks.map((t) => ({ ...t, body: t.body && new Uint8Array(t.body) }))
    const nodeFrame = encodeTasks(nodeTasks)
    expect(out.frame).toEqual(Array.from(nodeFrame))
    expect(out.rejects).toBe(0)
    expect(out.decoded).toEqual(decodeTasks(nodeFrame).tasks.map((t) => ({ ...t, body: t.body && Array.from(t.body) })))
    expect(out.packed).toEqual(Array.from(packValue(state)))
    expect(JSON.stringify(out.unpacked, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v))).toBe(
      JSON.stringify(unpackValue(packValue(state)), (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v)),
    )
    expect(out.chosen).toEqual(uids.map((uid) => chooseServer(servers, { cmd: 10, uid })))
  })
})

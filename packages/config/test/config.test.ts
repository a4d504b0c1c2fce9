/**
 * @peony/config on a small schema of its own: suggestions, the loader's precedence and problem
 * collection, and what the schema renders (help, markdown, JSON Schema, option checks).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { Value } from 'typebox/value'
import { boolean, closest, custom, defineSchema, integer, load, oneOf, optional, replaceBetweenMarkers, Type, nameDistance } from '../src/index.ts'

const root = mkdtempSync(join(tmpdir(), 'peony-config-pkg-'))
afterAll(() => rmSync(root, { recursive: true, force: true }))

const keys = {
  port: integer(1, 65_535, { default: 9000, arg: '<n>', help: 'The port.' }),
  timeoutMs: integer(0, 1_000, { unit: 'ms', default: 100, help: 'A timeout.', docs: { valuesNote: '; `0` disables' } }),
  verbose: boolean({ default: false, help: 'Talk more.' }),
  mode: oneOf(['fast', 'safe'], { default: 'safe', help: 'The mode.' }),
  storagePath: custom<string>({ schema: Type.String(), expected: 'a path', text: (r) => r.trim(), default: './db', help: 'Where.' }),
  storage: oneOf(['disk', 'memory'], { default: 'disk', help: 'Which store.' }),
  hosts: custom<string[]>({ schema: Type.Array(Type.String()), expected: 'hosts', text: (r) => r.split(','), default: ['a'], help: 'Hosts.' }),
  name: optional(custom<string>({ schema: Type.String({ minLength: 1 }), expected: 'a name', text: (r) => r, help: 'A name.' })),
}
const schema = defineSchema(keys, {
  program: 'demo',
  envPrefix: 'DEMO_',
  configEnv: 'DEMO_CONFIG',
  configFileNames: ['demo.config.json'],
  aliases: { PORT: 'port' },
})

describe('suggestions', () => {
  it('weigh the whole name: --storage-pth is --storage-path, not --storage', () => {
    const flags = ['storage', 'storage-path', 'port']
    expect(closest('storage-pth', flags)).toBe('storage-path')
    expect(closest('storage-paht', flags)).toBe('storage-path')
    expect(closest('storag', flags)).toBe('storage')
    expect(closest('stor', flags)).toBe('storage') // a bare prefix still finds the nearest completion
    expect(nameDistance('storagepth', 'storage')).toBe(1.5)
    expect(nameDistance('storagepth', 'storagepath')).toBe(1)
  })

  it('still find prefixes, case and separator changes, and nothing for unrelated names', () => {
    expect(closest('warning', ['fatal', 'error', 'warn', 'info'])).toBe('warn')
    expect(closest('queue_max_size', ['queueMaxSize', 'shards'])).toBe('queueMaxSize')
    expect(closest('PEONY_QUEUE_MAXSIZE', ['PEONY_QUEUE_MAX_SIZE', 'PEONY_SHARDS'], 'peony')).toBe('PEONY_QUEUE_MAX_SIZE')
    expect(closest('frobnicate', ['queueMaxSize', 'shards', 'workers'])).toBeUndefined()
    expect(closest('PEONY_INTEGRATION', ['PEONY_CONFIG', 'PEONY_INTAKE_ENDPOINTS'], 'peony')).toBeUndefined()
  })
})

describe('the loader', () => {
  it('merges defaults ← file ← env ← flags and says where each value came from', async () => {
    const dir = mkdtempSync(join(root, 'a-'))
    writeFileSync(join(dir, 'demo.config.json'), JSON.stringify({ $schema: './x.json', '// note': 1, port: 1, timeoutMs: 5, mode: 'fast' }))
    const r = await load(schema, { argv: ['--port', '3', '--verbose'], env: { DEMO_PORT: '2', DEMO_TIMEOUT_MS: '1_000' }, cwd: dir })
    expect(r.issues).toEqual([])
    expect(r.values).toEqual({ port: 3, timeoutMs: 1000, verbose: true, mode: 'fast', storagePath: './db', storage: 'disk', hosts: ['a'], name: undefined })
    expect(r.sources).toMatchObject({ port: 'flag', timeoutMs: 'env', mode: 'file', verbose: 'flag', storage: 'default' })
    expect(r.configFile).toBe(join(dir, 'demo.config.json'))
  })

  it('copies a default value at each load, so changing a loaded config changes no default', async () => {
    const dir = mkdtempSync(join(root, 'c-'))
    const first = await load(schema, { argv: [], env: {}, cwd: dir })
    first.values.hosts.push('b')
    expect((await load(schema, { argv: [], env: {}, cwd: dir })).values.hosts).toEqual(['a'])
    expect(schema.jsonSchema({ title: 't' })).toMatchObject({ properties: { hosts: { default: ['a'] } } })
  })

  it('collects every problem with key, source, expected value and suggestion', async () => {
    const dir = mkdtempSync(join(root, 'b-'))
    writeFileSync(join(dir, 'demo.config.json'), JSON.stringify({ PORT: 1, verbose: 'yes', mode: 'fats' }))
    const r = await load(schema, { argv: ['--storage-pth', 'x', '--timeout-ms=2000', 'stray'], env: { DEMO_PROT: '1', DEMO_OTHER_TOOL: '1' }, cwd: dir })
    expect(r.issues.map((i) => [i.key, i.source, i.suggestion])).toEqual([
      ['--storage-pth', 'flag', '--storage-path'],
      ['stray', 'flag', undefined],
      ['timeoutMs', 'flag', undefined],
      ['DEMO_PROT', 'env', 'DEMO_PORT'],
      ['PORT', 'file', 'port'],
      ['verbose', 'file', undefined],
      ['mode', 'file', 'fast'],
    ])
    const timeout = r.issues.find((i) => i.key === 'timeoutMs')!
    expect(timeout).toMatchObject({ origin: 'flag --timeout-ms', expected: 'an integer from 0 to 1000 (ms)', received: '"2000"' })
    expect(timeout.message).toBe('timeoutMs (flag --timeout-ms): expected an integer from 0 to 1000 (ms), got "2000"')
    expect(r.issues[0]!.message).toContain('did you mean "--storage-path"?')
    expect(r.warnings).toEqual(['ignored environment variable DEMO_OTHER_TOOL: not a demo setting'])
  })
})

describe('what a schema renders', () => {
  it('--help lists every flag, its environment variable and default', () => {
    const help = schema.help({ usage: 'demo [options]', intro: ['A demo.'], options: [], footer: ['Bye.'] })
    expect(help).toContain('  --port <n>                   The port.')
    expect(help).toContain('[env DEMO_PORT; default 9000]')
    expect(help).toContain('[--no-verbose sets false; env DEMO_VERBOSE; default false]')
    expect(help.endsWith('Bye.')).toBe(true)
  })

  it('the docs table takes ranges from the JSON Schema', () => {
    const table = schema.markdownTable()
    expect(table.split('\n')[0]).toBe('| key | env | flag | default | valid values | meaning |')
    expect(table).toContain('| `timeoutMs` | `DEMO_TIMEOUT_MS` | `--timeout-ms` | `100` | 0–1000 (ms); `0` disables | A timeout. |')
    expect(table).toContain('| `name` | `DEMO_NAME` | `--name` | — | a name | A name. |')
    expect(replaceBetweenMarkers('a\n<!-- begin t -->\nold\n<!-- end t -->\nb', 't', 'new')).toBe('a\n<!-- begin t -->\nnew\n<!-- end t -->\nb')
  })

  it('the JSON Schema accepts what the loader accepts from a file and rejects out-of-range values', () => {
    const json = schema.jsonSchema({ title: 'demo' })
    expect(json).toMatchObject({
      type: 'object',
      additionalProperties: false,
      properties: { port: { type: 'integer', minimum: 1, maximum: 65_535, default: 9000, description: 'The port.' } },
    })
    expect(Value.Check(json as never, { $schema: 'x', '// c': 1, port: 80, mode: 'fast' })).toBe(true)
    expect(Value.Check(json as never, { port: 0 })).toBe(false)
    expect(Value.Check(json as never, { prot: 1 })).toBe(false)
  })

  it('checks an options object against the shared keys, every problem at once', () => {
    expect(schema.checkOptions({ port: 0, timeoutMs: 1.5, verbose: true, unrelated: 'x' })).toEqual([
      { key: 'port', expected: 'an integer from 1 to 65535', received: '0' },
      { key: 'timeoutMs', expected: 'an integer from 0 to 1000 (ms)', received: '1.5' },
    ])
    expect(schema.defaults()).toMatchObject({ port: 9000, verbose: false })
  })
})

/**
 * What is generated from the configuration schema stays committed as generated: the keys' tables
 * in docs/configuration.md and the README, and peony.config.schema.json
 * (`pnpm --filter peony-server run gen:config-docs` rewrites them). The JSON Schema accepts the
 * example config file and rejects what the loader rejects from a file.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { matchesJsonSchema } from '@peony/config'
import { configJsonSchema, generatedConfigFiles, JSON_SCHEMA_FILE } from '../src/config-docs.ts'
import { describeConfigKeys, helpText } from '../src/config.ts'

const dir = join(import.meta.dirname, '..')

describe('files generated from the configuration schema', () => {
  for (const { path, content } of generatedConfigFiles(dir)) {
    it(`${path} is as generated (run pnpm --filter peony-server run gen:config-docs)`, () => {
      expect(readFileSync(join(dir, path), 'utf8')).toBe(content)
    })
  }

  it('the docs table has one row per key, with its environment variable and flags', () => {
    const doc = readFileSync(join(dir, '..', '..', 'docs', 'configuration.md'), 'utf8')
    for (const k of describeConfigKeys()) {
      const row = doc.split('\n').find((l) => l.startsWith(`| \`${k.key}\` |`))
      expect(row, k.key).toBeDefined()
      if (k.env !== undefined) expect(row).toContain(`\`${k.env}\``)
      for (const f of k.flags) expect(row).toContain(`\`${f}\``)
    }
    expect(helpText()).toContain('--max-frame-bytes <bytes>')
  })

  it('the JSON Schema accepts the example config and rejects unknown keys and out-of-range values', () => {
    const schema = JSON.parse(readFileSync(join(dir, JSON_SCHEMA_FILE), 'utf8')) as Record<string, unknown>
    expect(schema).toEqual(configJsonSchema())
    const example = JSON.parse(readFileSync(join(dir, 'peony.config.json'), 'utf8')) as Record<string, unknown>
    expect(example.$schema).toBe(`./${JSON_SCHEMA_FILE}`)
    expect(matchesJsonSchema(schema, example)).toBe(true)
    expect(matchesJsonSchema(schema, { ...example, maxFrameBytes: 100 })).toBe(false)
    expect(matchesJsonSchema(schema, { ...example, queue_max_size: 5 })).toBe(false)
    expect(matchesJsonSchema(schema, { ...example, storage: 'postgres' })).toBe(false)
    expect(matchesJsonSchema(schema, { ...example, groups: [{ id: 1, count: 0 }] })).toBe(false)
    expect(matchesJsonSchema(schema, { ...example, groups: [{ id: 'chat', count: 2 }], intakeEndpoints: ['tcp://127.0.0.1:9250'] })).toBe(true)
  })
})

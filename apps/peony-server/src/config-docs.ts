/**
 * Files generated from the configuration schema: the keys' tables in docs/configuration.md and
 * in this package's README (between `<!-- begin config-keys -->` and `<!-- end config-keys -->`),
 * and peony.config.schema.json, the JSON Schema of a peony.config.json. Written by
 * `pnpm --filter peony-server run gen:config-docs`; test/config-docs.test.ts checks that the
 * committed files equal what this generates.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { replaceBetweenMarkers } from '@peony/config'
import { serverSchema } from './config-schema.ts'

/** Marker name of the generated tables. */
export const KEYS_MARKER = 'config-keys'
/** File name of the JSON Schema, next to package.json (and to the example peony.config.json). */
export const JSON_SCHEMA_FILE = 'peony.config.schema.json'

/** The JSON Schema of a peony.config.json, as written to peony.config.schema.json. */
export function configJsonSchema(): Record<string, unknown> {
  return serverSchema.jsonSchema({
    title: 'peony-server configuration',
    description:
      'A peony.config.json of peony-server (generated from the configuration schema, apps/peony-server/src/config-schema.ts). Keys starting with // are comments. The router function can only be set in a .js/.mjs/.ts config module.',
  })
}

/** Each generated file's path (relative to the package folder) and expected content. */
export function generatedConfigFiles(packageDir: string): { path: string; content: string }[] {
  const docs = join('..', '..', 'docs', 'configuration.md')
  const withTable = (rel: string, linkBase?: string): { path: string; content: string } => ({
    path: rel,
    content: replaceBetweenMarkers(
      readFileSync(join(packageDir, rel), 'utf8'),
      KEYS_MARKER,
      serverSchema.markdownTable(linkBase === undefined ? {} : { linkBase }),
    ),
  })
  return [withTable(docs), withTable('README.md', '../../docs/'), { path: JSON_SCHEMA_FILE, content: JSON.stringify(configJsonSchema(), null, 2) + '\n' }]
}

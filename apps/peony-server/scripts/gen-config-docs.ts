/**
 * Writes the files generated from the configuration schema (see src/config-docs.ts):
 * `pnpm --filter peony-server run gen:config-docs`.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { generatedConfigFiles } from '../src/config-docs.ts'

const dir = join(import.meta.dirname, '..')
for (const { path, content } of generatedConfigFiles(dir)) {
  const file = join(dir, path)
  let old: string | undefined
  try {
    old = readFileSync(file, 'utf8')
  } catch {
    // new file
  }
  if (old === content) continue
  writeFileSync(file, content)
  process.stdout.write(`wrote ${path}\n`)
}

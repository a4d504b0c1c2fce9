/**
 * Keeps docs/errors.md honest (fastify's docs-parity test): every PEONY_* error code that a
 * package or app source defines has a `### CODE` heading there, and the page has no heading for a
 * code that no source defines. The wire reply codes are kept equal the same way: `ReplyCode`,
 * the table of docs/errors.md ("Wire reply codes") and the table of docs/protocol.md §4, which
 * also names the protocol version its changelog must describe.
 *
 * A code is found by a regex over the source text, in the positions where codes are defined or
 * used as codes: the value of a property (`NOT_OPEN: 'PEONY_BROKER_NOT_OPEN'`, `code: '…'`), the
 * first argument of an error constructor, or the second argument of `isPeonyError`. Environment
 * variable names (`PEONY_LOG_LEVEL`) and codes mentioned in comments are not codes.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { ReplyCode } from '../src/protocol.ts'

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
const ERRORS_MD = join(ROOT, 'docs', 'errors.md')
const PROTOCOL_MD = join(ROOT, 'docs', 'protocol.md')

const CODE = 'PEONY_[A-Z0-9]+(?:_[A-Z0-9]+)+'
const CODE_PATTERNS: readonly RegExp[] = [
  // A property value: `KEY: 'PEONY_…'` in an `as const` code table, `code: 'PEONY_…'`.
  new RegExp(String.raw`[A-Za-z_$][\w$]*\s*:\s*(['"])(${CODE})\1`, 'g'),
  // A literal passed to an error constructor: `new PeonyError('PEONY_…', …)`.
  new RegExp(String.raw`\bnew\s+[A-Za-z_$][\w$]*Error\s*(?:<[^>]*>)?\(\s*(['"])(${CODE})\1`, 'g'),
  // A guard: `isPeonyError(err, 'PEONY_…')`.
  new RegExp(String.raw`\bisPeonyError\s*\([^,()]*,\s*(['"])(${CODE})\1`, 'g'),
]

/** The source text without comments that start a line (TSDoc blocks, `//` lines). */
function stripComments(text: string): string {
  return text.replace(/^[ \t]*\/\*[\s\S]*?\*\//gm, '').replace(/^[ \t]*\/\/.*$/gm, '')
}

/** Every error code defined or used as a code in one source text. */
function codesIn(text: string): Set<string> {
  const out = new Set<string>()
  const body = stripComments(text)
  for (const re of CODE_PATTERNS) {
    for (const m of body.matchAll(re)) out.add(m[2] as string)
  }
  return out
}

/** Every `.ts`/`.mts` file under `dir`, recursively. */
function sourceFiles(dir: string): string[] {
  const out: string[] = []
  let names: string[]
  try {
    names = readdirSync(dir)
  } catch {
    return out
  }
  for (const name of names) {
    const p = join(dir, name)
    if (statSync(p).isDirectory()) out.push(...sourceFiles(p))
    else if (/\.m?ts$/.test(name) && !name.endsWith('.d.ts')) out.push(p)
  }
  return out
}

/** code → the files (relative to the repository) that define or use it. */
function codesInSources(): Map<string, string[]> {
  const byCode = new Map<string, string[]>()
  for (const top of ['packages', 'apps']) {
    for (const pkg of readdirSync(join(ROOT, top))) {
      for (const file of sourceFiles(join(ROOT, top, pkg, 'src'))) {
        for (const code of codesIn(readFileSync(file, 'utf8'))) {
          const files = byCode.get(code) ?? []
          files.push(relative(ROOT, file))
          byCode.set(code, files)
        }
      }
    }
  }
  return byCode
}

/** The codes of the `### PEONY_…` headings of docs/errors.md, in page order (repeats kept). */
function headings(): string[] {
  const md = readFileSync(ERRORS_MD, 'utf8')
  return [...md.matchAll(/^###[ \t]+`?(PEONY_[A-Z0-9_]+)`?[ \t]*$/gm)].map((m) => m[1] as string)
}

describe('docs/errors.md parity', () => {
  it('the extractor finds codes in code positions only', () => {
    const sample = [
      "/** Codes: `PEONY_DOC_ONLY`, and in prose code: 'PEONY_IN_COMMENT'. */",
      'export const XErrorCode = { ONE: \'PEONY_AREA_ONE\', TWO: "PEONY_AREA_TWO" } as const',
      "// legacy: { OLD: 'PEONY_AREA_COMMENTED' }",
      "throw new PeonyError('PEONY_AREA_THREE', 'msg')",
      "throw new WorkerError<'PEONY_AREA_FOUR'>('PEONY_AREA_FOUR', 'msg')",
      "if (isPeonyError(err, 'PEONY_AREA_FIVE')) return",
      "rejects.push({ code: 'PEONY_AREA_SIX', index: -1 })",
      "const CONFIG_ENV = 'PEONY_CONFIG_FILE'",
      'const level = process.env.PEONY_LOG_LEVEL ?? "info"',
      "const env = { PEONY_REDIS_URL: 'redis://x' }",
      // biome-ignore lint/suspicious/noTemplateCurlyInString: source text that the scanner must read as a template
      'const name = `PEONY_${key}`',
    ].join('\n')
    expect([...codesIn(sample)].sort()).toEqual([
      'PEONY_AREA_FIVE',
      'PEONY_AREA_FOUR',
      'PEONY_AREA_ONE',
      'PEONY_AREA_SIX',
      'PEONY_AREA_THREE',
      'PEONY_AREA_TWO',
    ])
  })

  it('finds the codes of every package (the scan is not vacuous)', () => {
    const codes = codesInSources()
    expect(codes.size).toBeGreaterThanOrEqual(20)
    for (const known of [
      'PEONY_BROKER_MALFORMED',
      'PEONY_WORKER_APP_LOAD_FAILED',
      'PEONY_HANDLER_FAILED',
      'PEONY_CONFIG_INVALID',
      'PEONY_STORAGE_NOT_OPEN',
      'PEONY_STORAGE_CLOSED',
    ]) {
      expect(codes.has(known), `${known} should be found in the sources`).toBe(true)
    }
    for (const envName of ['PEONY_LOG_LEVEL', 'PEONY_REDIS_URL', 'PEONY_SERVER_ID', 'PEONY_ALLOW_NON_LOOPBACK']) {
      expect(codes.has(envName), `${envName} is an environment variable, not a code`).toBe(false)
    }
  })

  it('every code a source defines has a ### heading in docs/errors.md', () => {
    const documented = new Set(headings())
    const missing = [...codesInSources()].filter(([code]) => !documented.has(code)).map(([code, files]) => `${code} (${files.join(', ')})`)
    expect(missing, 'add a "### CODE" section to docs/errors.md for each').toEqual([])
  })

  it('docs/errors.md has no heading for a code that no source defines, and none twice', () => {
    const defined = codesInSources()
    const all = headings()
    expect(all.length).toBeGreaterThan(0)
    const stale = all.filter((code) => !defined.has(code))
    expect(stale, 'remove these sections from docs/errors.md, or define the codes').toEqual([])
    const twice = all.filter((code, i) => all.indexOf(code) !== i)
    expect(twice).toEqual([])
  })
})

/** The text of `md` from the heading line matching `start` up to the next heading of that level or higher. */
function section(md: string, start: RegExp): string {
  const lines = md.split('\n')
  const i = lines.findIndex((l) => start.test(l))
  if (i < 0) return ''
  const level = /^#+/.exec(lines[i] as string)![0].length
  const end = lines.findIndex((l, j) => j > i && /^#+ /.test(l) && /^#+/.exec(l)![0].length <= level)
  return lines.slice(i, end < 0 ? undefined : end).join('\n')
}

/** The table rows of `text` whose first cell is a code ≤ −10000 (written with U+2212 or '-'): code → the other cells. */
function codeRows(text: string): Map<number, string[]> {
  const rows = new Map<number, string[]>()
  for (const m of text.matchAll(/^[ \t]*\|[ \t]*[−-](1\d{4})[ \t]*\|(.*)\|[ \t]*$/gm)) {
    const code = -Number(m[1])
    expect(rows.has(code), `row ${code} twice`).toBe(false)
    rows.set(
      code,
      (m[2] as string).split('|').map((c) => c.trim()),
    )
  }
  return rows
}

describe('wire reply codes: ReplyCode, docs/errors.md and docs/protocol.md §4', () => {
  const codes = Object.entries(ReplyCode).filter(([, v]) => v !== 0)

  it('covers every code Peony defines (the scan is not vacuous)', () => {
    expect(codes.length).toBeGreaterThanOrEqual(10)
    expect(ReplyCode.NOT_STORED).toBe(-10008)
    expect(ReplyCode.NOT_OWNER).toBe(-10009)
  })

  it('docs/errors.md has one row per ReplyCode, with its name, and no other', () => {
    const rows = codeRows(section(readFileSync(ERRORS_MD, 'utf8'), /^## Wire reply codes/))
    const documented = new Map([...rows].map(([code, cells]): [string, number] => [(cells[0] ?? '').replace(/`/g, ''), code]))
    expect(documented).toEqual(new Map<string, number>(codes))
  })

  it('docs/protocol.md §4 lists every ReplyCode and no other code', () => {
    const rows = codeRows(section(readFileSync(PROTOCOL_MD, 'utf8'), /^## 4\. /))
    expect([...rows.keys()].sort()).toEqual(codes.map(([, v]) => v).sort())
  })

  it('docs/protocol.md names its version at the top and describes it in its changelog', () => {
    const md = readFileSync(PROTOCOL_MD, 'utf8')
    const version = /^Protocol version: (\d+\.\d+)$/m.exec(md.split('\n## ')[0] as string)?.[1]
    expect(version, 'a "Protocol version: X.Y" line before the first section').toBeDefined()
    const changelog = section(md, /^## Changelog$/)
    expect(changelog).toMatch(new RegExp(`^### ${version!.replace('.', '\\.')}$`, 'm'))
  })
})

// Sums vitest's per-package "Tests  N failed | M passed" lines from a turbo log and prints the
// plain summary "N passed, N failed" as the last line. Exits non-zero if anything failed, if the
// test command itself failed, or if the typecheck or the lint failed.
import { readFileSync } from 'node:fs'

const [file, rcArg = '0', tcArg = '0', lcArg = '0'] = process.argv.slice(2)
// biome-ignore lint/suspicious/noControlCharactersInRegex: strips the ANSI colour codes of the test log
const text = readFileSync(file, 'utf8').replace(/\x1b\[[0-9;]*m/g, '')
let passed = 0
let failed = 0
let skipped = 0
for (const line of text.split('\n')) {
  const m = /\bTests\s+(.*)\(\d+\)\s*$/.exec(line)
  if (!m) continue
  for (const part of m[1].split('|')) {
    const p = /(\d+)\s+(passed|failed|skipped|todo)/.exec(part)
    if (!p) continue
    const n = Number(p[1])
    if (p[2] === 'passed') passed += n
    else if (p[2] === 'failed') failed += n
    else skipped += n
  }
}
const rc = Number(rcArg)
const tc = Number(tcArg)
if (tc !== 0) console.log('typecheck failed (counted as one failure)')
if (tc !== 0) failed += 1
const lc = Number(lcArg)
if (lc !== 0) console.log('lint failed: run `pnpm lint` (counted as one failure)')
if (lc !== 0) failed += 1
if (rc !== 0 && failed === 0) {
  console.log(`the test command exited ${rc} without a failing test line (counted as one failure)`)
  failed = 1
}
if (passed === 0 && failed === 0) failed = 1
console.log(`${passed} passed, ${failed} failed` + (skipped ? `, ${skipped} skipped` : ''))
process.exit(failed > 0 ? 1 : 0)

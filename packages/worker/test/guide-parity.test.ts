/**
 * docs/guides/writing-handlers.md shows an app module and its test; test/guide/ holds the same
 * two files, which run as a test of their own. This keeps the guide's code compiling and passing.
 */
import { readFileSync } from 'node:fs'
import { expect, it } from 'vitest'

const read = (rel: string): string => readFileSync(new URL(rel, import.meta.url), 'utf8')

it('the guide shows exactly test/guide/app.ts and test/guide/app.test.ts', () => {
  const md = read('../../../docs/guides/writing-handlers.md')
  const blocks = [...md.matchAll(/```ts\n(\/\/ game\/app(?:\.test)?\.ts\n[\s\S]*?)```/g)].map((m) => m[1])
  expect(blocks).toEqual([read('./guide/app.ts'), read('./guide/app.test.ts')])
})

/**
 * Where the CPU went during one span of a profiled run: for every V8 CPU profile (one per
 * thread) under a folder, the samples whose time falls in [from, to] (µs on the monotonic clock,
 * as flush-thread.mjs reports its flush in `windowUs`), as busy time, self time by function and
 * by file, and inclusive time of the functions named in --stack (a sample counts once for each
 * of them that is on its stack).
 *
 *   node tools/bench/sessions/profile-window.mjs <dir> --from=<µs> --to=<µs> [--top=20] [--stack=name,name]
 */
import fs from 'node:fs'
import path from 'node:path'
import { parseArgs, profileScript as where } from '../lib/run.mjs'

const [dir, ...rest] = process.argv.slice(2)
if (!dir) {
  console.error('usage: profile-window.mjs <dir> --from=<µs> --to=<µs> [--top=20] [--stack=a,b]')
  process.exit(2)
}
const o = parseArgs({ from: 0, to: 0, top: 20, stack: '' }, rest)
const wanted = o.stack === '' ? [] : o.stack.split(',')

for (const f of fs
  .readdirSync(dir)
  .filter((x) => x.endsWith('.cpuprofile'))
  .sort()) {
  const prof = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'))
  const byId = new Map(prof.nodes.map((n) => [n.id, n]))
  const parent = new Map()
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  let t = prof.startTime
  let total = 0
  let idle = 0
  const byFn = new Map()
  const byFile = new Map()
  const incl = new Map(wanted.map((w) => [w, 0]))
  for (let i = 0; i < prof.samples.length; i++) {
    t += prof.timeDeltas[i] ?? 0
    if (t < o.from || t > o.to) continue
    // A sample's weight: the time to the next sample (the last one gets the previous delta).
    const w = (prof.timeDeltas[i + 1] ?? prof.timeDeltas[i] ?? 0) / 1000
    const node = byId.get(prof.samples[i])
    total += w
    const cf = node.callFrame
    if (cf.functionName === '(idle)') {
      idle += w
      continue
    }
    const fn = `${cf.functionName || '(anonymous)'}  ${where(cf.url)}:${cf.lineNumber + 1}`
    byFn.set(fn, (byFn.get(fn) ?? 0) + w)
    byFile.set(where(cf.url), (byFile.get(where(cf.url)) ?? 0) + w)
    if (wanted.length > 0) {
      const seen = new Set()
      for (let id = node.id; id !== undefined; id = parent.get(id)) {
        const name = byId.get(id).callFrame.functionName
        if (incl.has(name) && !seen.has(name)) {
          seen.add(name)
          incl.set(name, incl.get(name) + w)
        }
      }
    }
  }
  if (total === 0) continue
  const busy = total - idle
  console.log(`\n## ${f}: ${total.toFixed(0)} ms in the window, ${busy.toFixed(0)} ms busy (${((busy / total) * 100).toFixed(0)} %)`)
  const show = (m, title) => {
    console.log(`\n${title}`)
    for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, o.top))
      console.log(`${v.toFixed(1).padStart(9)} ms ${((v / busy) * 100).toFixed(1).padStart(5)} %  ${k}`)
  }
  show(byFile, 'self time by file')
  show(byFn, 'self time by function')
  if (wanted.length > 0) show(incl, 'inclusive time (on the stack)')
}

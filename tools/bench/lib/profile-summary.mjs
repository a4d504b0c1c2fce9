/**
 * Summarizes V8 CPU profiles (`node --cpu-prof`): for each .cpuprofile under the given folder
 * (one per thread), the busy time and the top functions and files by self time.
 *
 *   node tools/bench/lib/profile-summary.mjs <dir> [--top=25]
 */
import fs from 'node:fs'
import path from 'node:path'
import { parseArgs, profileScript as where } from './run.mjs'

const [dir, ...rest] = process.argv.slice(2)
if (!dir) {
  console.error('usage: profile-summary.mjs <dir> [--top=25]')
  process.exit(2)
}
const o = parseArgs({ top: 25 }, rest)

function files(d) {
  const out = []
  for (const e of fs.readdirSync(d, { withFileTypes: true })) {
    const p = path.join(d, e.name)
    if (e.isDirectory()) out.push(...files(p))
    else if (e.name.endsWith('.cpuprofile')) out.push(p)
  }
  return out
}

/**
 * Self time (ms) per node id of one profile.
 * @param {{nodes: any[], samples: number[], timeDeltas: number[]}} prof
 */
function selfTimes(prof) {
  const self = new Map()
  for (let i = 0; i < prof.samples.length; i++) {
    const id = prof.samples[i]
    self.set(id, (self.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0) / 1000)
  }
  return self
}

for (const f of files(dir)) {
  const prof = JSON.parse(fs.readFileSync(f, 'utf8'))
  const self = selfTimes(prof)
  const byFn = new Map()
  const byFile = new Map()
  let total = 0
  let idle = 0
  for (const n of prof.nodes) {
    const t = self.get(n.id) ?? 0
    if (t === 0) continue
    total += t
    const cf = n.callFrame
    if (cf.functionName === '(idle)') {
      idle += t
      continue
    }
    const file = where(cf.url)
    const fn = `${cf.functionName || '(anonymous)'}  ${file}:${cf.lineNumber + 1}`
    byFn.set(fn, (byFn.get(fn) ?? 0) + t)
    byFile.set(file, (byFile.get(file) ?? 0) + t)
  }
  const busy = total - idle
  console.log(`\n## ${path.relative(dir, f)}: ${total.toFixed(0)} ms sampled, ${busy.toFixed(0)} ms busy (${((busy / total) * 100).toFixed(0)}%)`)
  const show = (m, title) => {
    console.log(`\n${title}`)
    for (const [k, t] of [...m].sort((a, b) => b[1] - a[1]).slice(0, o.top))
      console.log(`${t.toFixed(1).padStart(9)} ms ${((t / busy) * 100).toFixed(1).padStart(5)}%  ${k}`)
  }
  show(byFile, 'self time by file')
  show(byFn, 'self time by function')
}

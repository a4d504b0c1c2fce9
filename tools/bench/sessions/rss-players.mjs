/**
 * Memory per player who has left (issue 9; docs/benchmarks.md, "Memory per player who has left"):
 * the RSS series of the real server while N distinct players pass through a small resident cap.
 *
 *   node tools/bench/sessions/rss-players.mjs [--players=500000] [--runs=1]
 *
 * Each run is the test apps/peony-server/test/memory-players.slow.test.ts (the driver, the server's
 * settings and the sampling live there) with PEONY_TEST_RSS_PLAYERS=N, in a fresh vitest process;
 * this script collects the series it prints (RSS after every 100,000 players), the machine's load
 * and whether the test's bound held. Results: tools/bench/results/rss-players.json.
 */
import { spawn } from 'node:child_process'
import os from 'node:os'
import path from 'node:path'
import { REPO_DIR, environment, parseArgs, writeResults } from '../lib/run.mjs'

const args = parseArgs({ players: 500_000, runs: 1 })
const APP_DIR = path.join(REPO_DIR, 'apps', 'peony-server')

function once() {
  return new Promise((resolve) => {
    const load = os.loadavg()[0]
    const child = spawn('pnpm', ['exec', 'vitest', 'run', 'test/memory-players.slow.test.ts'], {
      cwd: APP_DIR,
      env: { ...process.env, PEONY_TEST_RSS_PLAYERS: String(args.players), FORCE_COLOR: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (out += d))
    child.on('exit', (code) => {
      const line = /RSS series \(players: MB at s\): (.*); (\d+) players\/s/.exec(out)
      const series =
        line === null
          ? []
          : [...line[1].matchAll(/(\d+): ([\d.]+) at ([\d.]+)/g)].map((m) => ({ players: Number(m[1]), rssMb: Number(m[2]), atS: Number(m[3]) }))
      resolve({
        ok: code === 0,
        series,
        rate: line === null ? null : Number(line[2]),
        loadBefore: load,
        loadAfter: os.loadavg()[0],
        tail: code === 0 ? undefined : out.slice(-2000),
      })
    })
  })
}

const runs = []
for (let i = 0; i < args.runs; i++) {
  const r = await once()
  runs.push(r)
  const s = r.series.map((p) => `${p.players / 1000}k ${p.rssMb}`).join(', ')
  const d = r.series.length > 1 ? (r.series.at(-1).rssMb - r.series[0].rssMb).toFixed(1) : '?'
  process.stdout.write(
    `run ${i + 1}: ${s} MB (last − first ${d} MB, ${r.rate ?? '?'} players/s, load ${r.loadBefore.toFixed(1)}→${r.loadAfter.toFixed(1)}): ${r.ok ? 'holds' : 'FAILS'}\n`,
  )
}
const file = writeResults('rss-players', { env: environment(), args, target: 'RSS after the last 100,000 players ≤ after the first 100,000 + 48 MB', runs })
process.stderr.write(`results: ${file}\n`)

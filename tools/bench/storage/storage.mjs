/**
 * Storage benchmark (docs/benchmarks.md, "Storage"): how much the storage layer costs over the
 * raw libraries, and what the storage host thread costs over opening LevelDB in the thread itself.
 *
 *   node tools/bench/storage/storage.mjs [--runs=5] [--n=100000] [--size=1024] [--only=flush|get]
 *
 * Flush: n dirty values of `size` bytes (random, pre-serialized) written in chunks, each chunk
 * awaited before the next (a write-behind flush): raw classic-level db.batch() of 100 and 1000
 * puts (the baselines), LevelStorage.writeFenced of 1000 one-op writes in the same thread, and the
 * same from a worker thread through RemoteStorage to a storage host (the process's main thread);
 * raw ioredis pipelines of 1000 SETs, and RedisStorage.writeFenced of 1000 writes with 1, 16, 256
 * and 1000 writes per Lua script call. Value: values/s.
 * First read: p50 and p99 of an awaited get of a random existing key (n keys, DB closed and
 * reopened after writing): raw classic-level, LevelStorage in the thread, RemoteStorage from a
 * worker thread (host LevelStorage with and without readSync); raw ioredis getBuffer,
 * RedisStorage. And a session load: claim(fence, [key]) of a fence never claimed before.
 *
 * Every run of every case is a fresh process (a fresh temp LevelDB, or a redis-server of its own
 * on a free port), variants interleaved, nothing retried (lib/run.mjs). See case.mjs.
 */
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { SOURCE_FLAGS, environment, fmtNum, parseArgs, runInterleaved, spawnChild, summarizeRecords, writeResults } from '../lib/run.mjs'
import { max, median, min, ratios } from '../lib/stats.mjs'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const args = parseArgs({ runs: 5, n: 100_000, size: 1024, only: '', reads: 20_000 })

function variant(name, caseName, extra = []) {
  return {
    name,
    async run({ logDir }) {
      const child = spawnChild(path.join(HERE, 'case.mjs'), [`--case=${caseName}`, `--n=${args.n}`, `--size=${args.size}`, `--reads=${args.reads}`, ...extra], {
        nodeFlags: SOURCE_FLAGS,
        logFile: path.join(logDir, `${name}.log`),
        cwd: HERE,
      })
      const ev = await child.wait((e) => e.bench === 'result', 110_000, `${name} result`)
      await child.exited
      return ev
    },
  }
}

const out = { env: environment(), args }
const md = []

if (args.only === '' || args.only === 'flush') {
  const variants = [
    variant('level-raw-100', 'level-raw', ['--chunk=100']),
    variant('level-raw-1000', 'level-raw', ['--chunk=1000']),
    variant('level-fenced-1000', 'level-fenced', ['--chunk=1000']),
    variant('level-remote-1000', 'level-remote', ['--chunk=1000']),
    variant('redis-raw-1000', 'redis-raw', ['--chunk=1000']),
    variant('redis-fenced-1000-wps1', 'redis-fenced', ['--chunk=1000', '--wps=1']),
    variant('redis-fenced-1000-wps16', 'redis-fenced', ['--chunk=1000', '--wps=16']),
    variant('redis-fenced-1000-wps256', 'redis-fenced', ['--chunk=1000', '--wps=256']),
    variant('redis-fenced-1000-wps1000', 'redis-fenced', ['--chunk=1000', '--wps=1000']),
  ]
  const records = await runInterleaved({ name: 'storage-flush', runs: args.runs, variants, timeoutMs: 120_000 })
  const summary = summarizeRecords(records)
  const ratioRows = []
  const ratio = (a, b) => {
    const r = ratios(
      records[a].map((x) => x.value),
      records[b].map((x) => x.value),
    )
    ratioRows.push(`| ${a} / ${b} | **${fmtNum(r.median, 2)}** | [${fmtNum(min(r.perRun), 2)}–${fmtNum(max(r.perRun), 2)}] | ${r.perRun.length} pairs |`)
    return r
  }
  const r = {
    fencedVsRaw1000: ratio('level-fenced-1000', 'level-raw-1000'),
    fencedVsRaw100: ratio('level-fenced-1000', 'level-raw-100'),
    remoteVsRaw1000: ratio('level-remote-1000', 'level-raw-1000'),
    remoteVsRaw100: ratio('level-remote-1000', 'level-raw-100'),
    remoteVsFenced: ratio('level-remote-1000', 'level-fenced-1000'),
    redisWps1: ratio('redis-fenced-1000-wps1', 'redis-raw-1000'),
    redisWps16: ratio('redis-fenced-1000-wps16', 'redis-raw-1000'),
    redisWps256: ratio('redis-fenced-1000-wps256', 'redis-raw-1000'),
    redisWps1000: ratio('redis-fenced-1000-wps1000', 'redis-raw-1000'),
  }
  out.flush = { records, summary, ratios: r }
  const lines = ['| flush of n values (values/s) | median | [min–max] | runs passed (disturbed) |', '|---|---|---|---|']
  for (const [name, s] of Object.entries(summary.variants))
    lines.push(`| ${name} | **${fmtNum(s.median)}** | [${fmtNum(s.min)}–${fmtNum(s.max)}] | ${s.passed}/${s.passed + s.failed} (${s.disturbed}) |`)
  lines.push('', '| ratio (median of per-run ratios, same run) | median | [min–max] | |', '|---|---|---|---|', ...ratioRows)
  md.push(lines.join('\n'))
}

if (args.only === '' || args.only === 'get') {
  const variants = [
    variant('get-level-raw', 'get-level-raw'),
    variant('get-level-direct', 'get-level-direct'),
    variant('get-level-remote', 'get-level-remote'),
    variant('get-level-remote-sync', 'get-level-remote-sync'),
    variant('get-redis-raw', 'get-redis-raw'),
    variant('get-redis-direct', 'get-redis-direct'),
    variant('claim-level-direct', 'claim-level-direct'),
    variant('claim-level-remote', 'claim-level-remote'),
    variant('claim-redis-direct', 'claim-redis-direct'),
  ]
  const records = await runInterleaved({ name: 'storage-get', runs: args.runs, variants, timeoutMs: 120_000 })
  out.get = { records }
  const lines = ['| first read (µs) | p50: median [min–max] | p99: median [min–max] | runs passed (disturbed) |', '|---|---|---|---|']
  for (const [name, recs] of Object.entries(records)) {
    const ok = recs.filter((x) => x.ok)
    const p50 = ok.map((x) => x.p50)
    const p99 = ok.map((x) => x.p99)
    lines.push(
      `| ${name} | **${fmtNum(median(p50), 1)}** [${fmtNum(min(p50), 1)}–${fmtNum(max(p50), 1)}] | **${fmtNum(median(p99), 1)}** [${fmtNum(min(p99), 1)}–${fmtNum(max(p99), 1)}] | ${ok.length}/${recs.length} (${recs.filter((x) => x.disturbed).length}) |`,
    )
  }
  md.push(lines.join('\n'))
}

const file = writeResults('storage', out)
process.stdout.write(`${md.join('\n\n')}\n\n(every run: ${path.relative(process.cwd(), file)})\n`)
process.exit(0)

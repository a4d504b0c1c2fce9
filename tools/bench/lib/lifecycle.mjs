/**
 * Runs of the start and respawn benchmarks. The load is the ping sender (`sender.mjs --mode=ping`):
 * a frame of typical tasks for uids 1…32 every 2 ms, from a DEALER that is started before the
 * server and reconnects every 2 ms, so tasks are there as soon as the server's intake is bound.
 * Handler times come from the server's threads ({bench:'handled'|'exit', thread, at} on stdout).
 */
import fs from 'node:fs'
import path from 'node:path'
import { BENCH_DIR, REPO_DIR, SOURCE_FLAGS, freePort, sleep, spawnChild, stopChildren, wrapChild } from './run.mjs'
import { nowMs } from './tasks.mjs'
import { spawn } from 'node:child_process'

/** The built entry of peony-server. */
export const PEONY_MAIN = path.join(REPO_DIR, 'apps/peony-server/dist/main.js')

async function pingSender(endpoint, logFile) {
  const s = spawnChild(path.join(BENCH_DIR, 'lib/sender.mjs'), ['--mode=ping', `--endpoint=${endpoint}`], { logFile, stdin: true })
  await s.wait((e) => e.bench === 'ready', 30_000, 'ping sender ready')
  return s
}

/** Waits for the first 'handled' mark of `n` distinct threads not in `exclude`. */
async function handledBy(child, n, exclude = new Set(), timeoutMs = 30_000) {
  const seen = new Map()
  await child.wait(
    (e) => {
      if (e.bench === 'handled' && !exclude.has(e.thread) && !seen.has(e.thread)) seen.set(e.thread, e.at)
      return seen.size >= n
    },
    timeoutMs,
    `first task handled by ${n} new worker thread(s)`,
  )
  return seen
}

/**
 * One start run: spawn `node <entry>` (no pnpm, no tsx), time until each of its 2 workers has
 * handled a task.
 * @param {{server: 'peony'|'bare-skeleton', logDir: string, label: string, root?: string}} c  root: another
 *        checkout of this repository (built) whose server is started instead (`--base`)
 */
export async function startRun(c) {
  const port = await freePort()
  const endpoint = `tcp://127.0.0.1:${port}`
  const logFile = path.join(c.logDir, `${c.label}.log`)
  let args
  if (c.server === 'peony') {
    const main = c.root === undefined ? PEONY_MAIN : path.resolve(c.root, 'apps/peony-server/dist/main.js')
    const benchDir = c.root === undefined ? BENCH_DIR : path.resolve(c.root, 'tools/bench')
    if (!fs.existsSync(main)) throw new Error(`${main} does not exist: run \`pnpm -r build\` first`)
    args = [
      main,
      '--app',
      path.join(benchDir, 'peony/lifecycle-app.mjs'),
      '--server-id',
      'bench',
      '--intake',
      endpoint,
      '--forwarder',
      `tcp://127.0.0.1:${await freePort()}`,
      '--workers',
      '2',
      // The default storage (LevelDB) in a fresh directory of this run, not in the bench folder.
      '--storage-path',
      path.join(c.logDir, `${c.label}-db`),
      ...(process.env.BENCH_PEONY_ARGS ?? '').split(' ').filter(Boolean),
    ]
  } else {
    args = [path.join(BENCH_DIR, 'bare-skeleton/main.mjs'), `--endpoint=${endpoint}`]
  }
  let sender
  let server
  try {
    sender = await pingSender(endpoint, logFile)
    await sleep(200) // let the sender's own start-up finish before the clock starts
    const t0 = nowMs()
    server = wrapChild(spawn(process.execPath, args, { cwd: BENCH_DIR, stdio: ['ignore', 'pipe', 'pipe'] }), logFile)
    const seen = await handledBy(server, 2)
    const at = [...seen.values()]
    const ready = server.events.find((e) => e.bench === 'server-ready' || e.bench === 'ready')
    return {
      value: Math.max(...at) - t0,
      firstWorkerMs: Math.min(...at) - t0,
      readyLineMs: ready ? ready.receivedAt - t0 : undefined,
    }
  } finally {
    sender?.proc.stdin?.end()
    await stopChildren([server, sender], 5_000)
  }
}

/**
 * One Peony respawn run: start a master (host.mjs, built dist unless `fromSource`) with the
 * lifecycle app, wait until both workers handle tasks, send a task whose handler calls
 * process.exit(1) in its worker thread, time from that exit to the first task handled by the
 * new thread.
 * With `kills: 2`, the new worker is killed again as soon as it has handled a task
 * (`secondKillMs`).
 * @param {{logDir: string, label: string, fromSource?: boolean, kills?: number, root?: string}} c  root: another
 *        checkout of this repository (built) whose host is run instead (`--base`)
 */
export async function peonyRespawnRun(c) {
  const port = await freePort()
  const endpoint = `tcp://127.0.0.1:${port}`
  const logFile = path.join(c.logDir, `${c.label}.log`)
  let sender
  let host
  try {
    host = spawnChild(
      path.join(c.root === undefined ? BENCH_DIR : path.resolve(c.root, 'tools/bench'), 'peony/host.mjs'),
      [`--endpoint=${endpoint}`, `--forwarder=tcp://127.0.0.1:${await freePort()}`, '--tasks=0', '--app=lifecycle', `--report-dir=${c.logDir}`],
      {
        nodeFlags: c.fromSource ? SOURCE_FLAGS : [],
        logFile,
        stdin: true,
      },
    )
    await host.wait((e) => e.bench === 'ready', 60_000, 'peony ready')
    sender = await pingSender(endpoint, logFile)
    const first = await handledBy(host, 2)
    await sleep(300) // steady state
    const seen = new Set(first.keys())
    const kill = async () => {
      const exits = host.events.filter((e) => e.bench === 'exit').length
      sender.send('kill 1')
      const exit = await host.wait((e) => e.bench === 'exit' && host.events.filter((x) => x.bench === 'exit').indexOf(e) === exits, 10_000, 'the exit mark')
      const fresh = await handledBy(host, 1, seen, 30_000)
      const [thread, at] = [...fresh][0]
      seen.add(thread)
      return at - exit.at
    }
    const value = await kill()
    // Optionally kill the replacement at once too: Peony keeps one loaded spare thread, so a second
    // death right after the first may find no spare (the cold path).
    const again = c.kills > 1 ? await kill() : undefined
    return { value, secondKillMs: again }
  } finally {
    sender?.proc.stdin?.end()
    host?.proc.stdin?.end()
    await stopChildren([sender], 5_000)
    if (host) {
      const t = setTimeout(() => host.kill('SIGKILL'), 15_000)
      await host.exited
      clearTimeout(t)
    }
  }
}

/**
 * One bare thread-spawn run (bare-spawn/main.mjs in a fresh process).
 * @param {{logDir: string, label: string}} c
 */
export async function bareSpawnRun(c) {
  const child = spawnChild(path.join(BENCH_DIR, 'bare-spawn/main.mjs'), [], { logFile: path.join(c.logDir, `${c.label}.log`) })
  try {
    const r = await child.wait((e) => e.bench === 'result', 30_000, 'bare-spawn result')
    return { value: r.spawnMs, exitToFirstMs: r.exitToFirstMs, firstSpawnMs: r.firstSpawnMs }
  } finally {
    await stopChildren([child], 5_000)
  }
}

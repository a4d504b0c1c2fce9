/**
 * Process entry of the Peony server: load the configuration (exit 2 on a problem, printed to
 * stderr with its code), create the server, start it, print ONE ready line to stdout, and stop
 * gracefully on SIGTERM/SIGINT (exit 0). A second SIGTERM/SIGINT during the stop forces exit 1;
 * so does a stop that outlives `stopTimeoutMs` by 5 s. SIGHUP is ignored (and logged): there is
 * no hot reload, restart to load new code or configuration.
 *
 * Exit codes: 0 stopped by a signal · 1 start failed, stop failed or forced, or the master
 * stopped on its own · 2 invalid configuration.
 */
import { isPeonyError } from '@peony/protocol'
import { helpText, loadConfig, wantsHelp, type ServerConfig } from './config.ts'
import { formatReadyLine } from './ready-line.ts'
import type { PeonyServer } from './server.ts'

// `pnpm start -- --x` and `npm start -- --x` pass a leading "--" through: skip it.
const rawArgv = process.argv.slice(2)
const argv = rawArgv[0] === '--' ? rawArgv.slice(1) : rawArgv

if (wantsHelp(argv)) {
  process.stdout.write(helpText() + '\n')
  process.exit(0)
}

let config: ServerConfig
try {
  config = await loadConfig({ argv, env: process.env, cwd: process.cwd() })
} catch (err) {
  const head = isPeonyError(err) ? `peony: ${err.code}: ` : 'peony: could not load the configuration: '
  process.stderr.write(`${head}${err instanceof Error ? err.message : String(err)}\nRun with --help for the options.\n`)
  process.exit(2)
}

// Loaded after the configuration, so --help and configuration errors never load ZeroMQ or threads.
let server: PeonyServer
try {
  const { createPeonyServer } = await import('./server.ts')
  server = createPeonyServer(config)
} catch (err) {
  const code = isPeonyError(err) ? `${err.code}: ` : ''
  process.stderr.write(`peony: could not create the server: ${code}${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
  process.exit(1)
}
const { logger } = server

let stopping = false
let started: Promise<unknown> = Promise.resolve()

/**
 * Exits now, but closes the ZeroMQ sockets first: zeromq.js aborts the process (SIGABRT) when a
 * thread that holds sockets is torn down by process.exit. Bounded to 2 s.
 */
let forced: number | undefined
function forceExit(code: number): void {
  forced ??= code
  const bound = setTimeout(() => process.exit(code), 2_000)
  bound.unref()
  void server.master
    .destroy()
    .catch(() => {})
    .then(() => process.exit(forced ?? code))
}

function stopAndExit(reason: string): void {
  stopping = true
  const watchdog = setTimeout(() => {
    logger.error({ stopTimeoutMs: config.stopTimeoutMs }, 'stop did not finish in time: forcing exit')
    forceExit(1)
  }, config.stopTimeoutMs + 5_000)
  watchdog.unref()
  void started
    .catch(() => {})
    .then(() => server.stop(reason))
    .then(
      () => process.exit(forced ?? 0),
      (err: unknown) => {
        logger.error({ err }, 'stop failed')
        forceExit(1)
      },
    )
}

function onSignal(signal: NodeJS.Signals): void {
  if (stopping) {
    logger.warn({ signal }, 'second signal during stop: forcing exit')
    forceExit(1)
    return
  }
  logger.info({ signal }, 'signal received: stopping gracefully (send it again to force)')
  stopAndExit(`signal ${signal}`)
}

process.on('uncaughtException', (err) => {
  logger.fatal({ err }, 'uncaught exception in the master thread: exiting')
  forceExit(1)
})
process.on('unhandledRejection', (err) => {
  logger.fatal({ err }, 'unhandled rejection in the master thread: exiting')
  forceExit(1)
})

process.on('SIGTERM', onSignal)
process.on('SIGINT', onSignal)
process.on('SIGHUP', () => logger.info({ signal: 'SIGHUP' }, 'SIGHUP ignored: no hot reload; restart to load new code or configuration'))

server.master.on('stopped', () => {
  if (stopping) return
  logger.error('the master stopped on its own: exiting')
  forceExit(1)
})

try {
  const starting = server.start()
  started = starting
  const ready = await starting
  if (!stopping) process.stdout.write(formatReadyLine(config, ready) + '\n')
} catch (err) {
  // One line: the error's own message, and as `err` the deepest cause (the app's own error with
  // its stack, file and line, when the app failed to load or start).
  if (isPeonyError(err)) logger.error({ code: err.code, err: (err as { cause?: unknown }).cause ?? err }, `start failed: ${err.message}`)
  else logger.error({ err }, 'start failed')
  const code = isPeonyError(err) ? `${err.code}: ` : ''
  process.stderr.write(`peony: start failed: ${code}${err instanceof Error ? err.message : String(err)}\n`)
  // The master undoes a failed start itself (terminates workers, closes sockets). When a signal
  // arrived during the start, stopAndExit owns the exit.
  if (!stopping) forceExit(1)
}

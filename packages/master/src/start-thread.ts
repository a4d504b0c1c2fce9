/**
 * Starting the master's threads (worker, egress, storage) from this package's thread entries,
 * and handing them channel ends.
 */
import { Worker, type MessagePort } from 'node:worker_threads'
import type { MasterOptions } from './options.ts'

// This module sits beside master.ts (src/ or dist/): the thread entries are resolved from here.
const HERE = import.meta.url
const FROM_SOURCE = HERE.endsWith('.ts')

/**
 * Starts one of this package's thread entries (`thread/<name>`). From TypeScript sources (tests,
 * `pnpm start`), or when the application module is TypeScript, the thread goes through a small
 * bootstrap that registers tsx first; from built JS it starts the entry directly.
 */
export function startThread(
  name: 'worker-main' | 'egress-main' | 'storage-main',
  data: object,
  transferList: MessagePort[],
  opts: { name: string; resourceLimits?: MasterOptions['resourceLimits'] },
  appIsTs: boolean,
): Worker {
  const entry = new URL(`./thread/${name}.${FROM_SOURCE ? 'ts' : 'js'}`, HERE)
  const execArgv = inheritedExecArgv(FROM_SOURCE)
  const base = { execArgv, transferList, name: opts.name, resourceLimits: opts.resourceLimits }
  if (FROM_SOURCE || appIsTs) {
    const bootUrl = new URL('./thread/boot.mjs', FROM_SOURCE ? HERE : new URL('../src/start-thread.ts', HERE))
    return new Worker(bootUrl, { ...base, workerData: { ...data, entry: entry.href } })
  }
  return new Worker(entry, { ...base, workerData: data })
}

/**
 * Posts a channel end made before its thread existed. The worker may have closed its end
 * meanwhile (a worker whose app has no sessions closes its storage port; a dead worker's ports
 * close with it), which closes this end too: transferring it throws DataCloneError, and there
 * is nothing left to hand over.
 */
export function handOver(post: () => void): void {
  try {
    post()
  } catch (err) {
    if ((err as { name?: string }).name !== 'DataCloneError') throw err
  }
}

/** The node flags a worker inherits: the parent's, minus loaders (the bootstrap registers tsx itself). */
function inheritedExecArgv(fromSource: boolean): string[] {
  const out: string[] = []
  const argv = process.execArgv
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    if (a === '--import' || a === '--require' || a === '-r' || a === '--loader' || a === '--experimental-loader') {
      i++
      continue
    }
    if (/^--(import|require|loader|experimental-loader)=/.test(a)) continue
    out.push(a)
  }
  if (fromSource && !out.some((a) => a.startsWith('--conditions=@peony/source') || a === '-C')) out.push('--conditions=@peony/source')
  return out
}

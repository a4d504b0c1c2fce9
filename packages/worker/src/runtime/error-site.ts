/**
 * Where an app's error was thrown: the first frame of its stack that is neither Node's nor
 * Peony's own, as `file:line:column`. Used to put the handler's throw site on the log line, so a
 * developer sees their own file and line first (the runtime's frames come after it in the stack).
 */

/** Frames inside these are Peony's or Node's, never the app's. */
const INTERNAL = [
  /^node:/,
  /[\\/]packages[\\/](worker|master|storage|broker-client|protocol)[\\/]src[\\/]/,
  /[\\/]node_modules[\\/]@peony[\\/]/,
  /[\\/]node_modules[\\/]tsx[\\/]/,
]

const FRAME = /^\s*at (?:.*? \()?(.+?):(\d+):(\d+)\)?\s*$/

/** The app's own throw site in `err`'s stack (or its causes'), or undefined when there is none. */
export function errorSite(err: unknown, depth = 0): string | undefined {
  if (depth > 8 || typeof err !== 'object' || err === null) return undefined
  const stack = (err as { stack?: unknown }).stack
  if (typeof stack === 'string') {
    for (const line of stack.split('\n')) {
      const m = FRAME.exec(line)
      if (m === null) continue
      let file = m[1]!
      if (file.startsWith('file://')) file = decodeURIComponent(file.slice(7))
      if (INTERNAL.some((re) => re.test(file))) continue
      return `${file}:${m[2]}:${m[3]}`
    }
  }
  return errorSite((err as { cause?: unknown }).cause, depth + 1)
}

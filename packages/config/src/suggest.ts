/**
 * "Did you mean": the known name closest to a misspelt one. Case, `-`, `_` and spaces are
 * ignored (`queue_max_size` is `queueMaxSize`). The distance weighs the whole name: the edit
 * distance, or, when one name is a prefix of the other, half the length of the part that differs
 * (`warning` → `warn` is 1.5). So `--storage-pth` is 1 edit from `--storage-path` and 1.5 from
 * `--storage`, and gets `--storage-path` (a flat "a prefix is close" rule picked `--storage`).
 */

/** Edit distance (insertions, deletions, substitutions, and swaps of two neighbours: `prot` → `port` is 1). */
export function levenshtein(a: string, b: string): number {
  if (a === b) return 0
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)))
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1)
      d[i]![j] = v
    }
  }
  return d[a.length]![b.length]!
}

const norm = (s: string): string => s.toLowerCase().replace(/[-_\s]/g, '')

/** Distance between two normalized names (see the module comment). */
export function nameDistance(a: string, b: string): number {
  const d = levenshtein(a, b)
  const [short, long] = a.length <= b.length ? [a, b] : [b, a]
  if (short.length >= 3 && long.startsWith(short)) return Math.min(d, (long.length - short.length) / 2)
  return d
}

/**
 * The candidate closest to `name`, when close enough to be a typo: at most a quarter of the
 * name's length (rounded up), between 1 and 3. Failing that, a candidate that the name starts or
 * ends a prefix of (3 characters at least: `--queue` → `--queue-max-size`), the nearest such.
 * `strip` drops a common prefix of both before comparing (`peony` for `PEONY_*` variables). Ties
 * go to the first candidate.
 */
export function closest(name: string, candidates: readonly string[], strip = ''): string | undefined {
  const cut = (s: string): string => {
    const n = norm(s)
    return strip !== '' && n.startsWith(strip) ? n.slice(strip.length) : n
  }
  const n = cut(name)
  let best: string | undefined
  let bestD = Infinity
  let prefix: string | undefined
  let prefixD = Infinity
  for (const c of candidates) {
    const cn = cut(c)
    const d = nameDistance(n, cn)
    if (d < bestD) {
      best = c
      bestD = d
    }
    if (Math.min(n.length, cn.length) >= 3 && (n.startsWith(cn) || cn.startsWith(n)) && d < prefixD) {
      prefix = c
      prefixD = d
    }
  }
  const limit = Math.max(1, Math.min(3, Math.ceil(n.length / 4)))
  return bestD <= limit ? best : prefix
}

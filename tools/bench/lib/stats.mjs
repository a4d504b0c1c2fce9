/**
 * Statistics of the benchmark suite: median, min, max, nearest-rank percentiles, and the summary
 * of repeated runs (median [min–max]) that every benchmark table prints.
 */

/**
 * Median of a list of numbers (the list is not modified). NaN for an empty list.
 * @param {readonly number[]} xs
 * @returns {number}
 */
export function median(xs) {
  const s = [...xs].sort((a, b) => a - b)
  const n = s.length
  if (n === 0) return NaN
  return n % 2 === 1 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2
}

/**
 * Smallest value; NaN for an empty list.
 * @param {readonly number[]} xs
 */
export function min(xs) {
  return xs.length === 0 ? NaN : xs.reduce((a, b) => Math.min(b, a))
}

/**
 * Largest value; NaN for an empty list.
 * @param {readonly number[]} xs
 */
export function max(xs) {
  return xs.length === 0 ? NaN : xs.reduce((a, b) => Math.max(b, a))
}

/**
 * Nearest-rank percentile of an ascending sample: the smallest value v such that at least p % of
 * the sample is ≤ v. `p` in [0, 100]; NaN for an empty sample. The sample must already be sorted
 * (a Float64Array sorted with `.sort()` is).
 * @param {ArrayLike<number>} sorted
 * @param {number} p
 */
export function percentile(sorted, p) {
  const n = sorted.length
  if (n === 0) return NaN
  const i = Math.min(n - 1, Math.max(0, Math.ceil((p / 100) * n) - 1))
  return sorted[i]
}

/**
 * Latency summary of a sample (any order; copied and sorted): count, p50, p90, p99, p99.9, max.
 * @param {ArrayLike<number>} sample
 */
export function latencySummary(sample) {
  const s = Float64Array.from(sample).sort()
  return {
    n: s.length,
    p50: percentile(s, 50),
    p90: percentile(s, 90),
    p99: percentile(s, 99),
    p999: percentile(s, 99.9),
    max: s.length === 0 ? NaN : s[s.length - 1],
  }
}

/**
 * Summary of one variant's runs: median, min and max over the runs that passed, every value in
 * run order (null for a failed run), and how many failed.
 * @param {(number | null)[]} values one entry per run, null when the run failed
 */
export function summarize(values) {
  const ok = values.filter((v) => v !== null && Number.isFinite(v))
  return {
    median: median(ok),
    min: min(ok),
    max: max(ok),
    runs: values,
    passed: ok.length,
    failed: values.length - ok.length,
  }
}

/**
 * Per-run ratios a[i] / b[i] (runs where either failed are left out) and their median.
 * @param {(number | null)[]} a
 * @param {(number | null)[]} b
 */
export function ratios(a, b) {
  const per = []
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const x = a[i]
    const y = b[i]
    if (x === null || y === null || !Number.isFinite(x) || !Number.isFinite(y) || y === 0) continue
    per.push(x / y)
  }
  return { median: median(per), perRun: per }
}

/**
 * Benchmark 2: one task per message, the same raw DEALER sender for both.
 * A bare zeromq.js ROUTER receive-and-unpack loop (baseline) against Peony to the handler,
 * interleaved, fresh processes per run. Target: Peony ≥ 0.8 × bare-router.
 *
 *   node tools/bench/single-throughput.mjs [--runs=5] [--tasks=200000] [--window=8000] [--peony=source|dist] [--prof] [--only=peony|bare-router]
 *
 * --prof: run the receivers with --cpu-prof (profiles under results/raw/<bench>/prof/).
 * --window: as in batch-throughput.mjs (0 = open loop).
 */
import { parseArgs } from './lib/run.mjs'
import { throughputBench } from './lib/throughput.mjs'

const options = parseArgs({ runs: 5, tasks: 200_000, window: 8_000, peony: 'source', only: '', prof: false, base: '' })
await throughputBench({ name: 'single-throughput', baseline: 'bare-router', batch: 1, minRatio: 0.8, options })

/**
 * Benchmark 1: 64-task frames, DEALER sender → ROUTER → 2 worker threads → handler.
 * bare-pipeline (baseline) against Peony, interleaved, fresh processes per run.
 * Target: Peony ≥ 0.6 × bare-pipeline (expected 150–200k tasks/s).
 *
 *   node tools/bench/batch-throughput.mjs [--runs=5] [--tasks=400000] [--window=8000] [--peony=source|dist] [--prof] [--only=peony|bare-pipeline] [--base=<checkout>]
 *
 * --prof: run the receivers with --cpu-prof (profiles under results/raw/<bench>/prof/).
 * --window: the sender keeps at most this many tasks sent but not yet handled (the handlers
 * report their counts over UDP), so a run measures saturation throughput rather than Peony's
 * load shedding. It must stay below Peony's default queue bound (10,000 tasks per worker): when
 * one worker lags, nearly the whole window sits in its queue (seen with 12,000: one worker's
 * queue reached 10,000 and 908 tasks were refused). 0 = open loop (Peony then refuses most
 * tasks with -10002: the sender is several times faster than the pipeline).
 */
import { parseArgs } from './lib/run.mjs'
import { throughputBench } from './lib/throughput.mjs'

const options = parseArgs({ runs: 5, tasks: 400_000, window: 8_000, peony: 'source', only: '', prof: false, base: '' })
await throughputBench({ name: 'batch-throughput', baseline: 'bare-pipeline', batch: 64, minRatio: 0.6, options })

/**
 * @peony/master: routes every task of one player to the same worker thread, keeps per-uid lanes,
 * refuses what it cannot take, supervises workers and stops gracefully.
 */

// Master
export { createMaster, Master, MasterErrorCode, DiscardReason } from './master.ts'
export type { MasterStats, MasterStatus, SplitCount, HandlerCounts } from './master.ts'
// Options
export { masterDefaults, masterDefaultsFresh, masterOptionKeys, masterOptionSchema, MAX_WORKERS } from './options.ts'
export type { MasterOptions, MasterInput, GroupOptions, GroupRouter } from './options.ts'
// Lanes (exported for tools and tests)
export { LaneScheduler, Lane } from './lanes/lane-scheduler.ts'
export type { Entry as LaneEntry } from './lanes/lane-scheduler.ts'

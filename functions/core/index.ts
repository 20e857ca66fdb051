// The public surface of the core: the only import for handlers, the CLI and library users.

export {
  type BatchEvent,
  type BatchSummary,
  batchEvents,
  batchIdOf,
  DEFAULT_BATCH_SIZE,
  DEFAULT_MAP_CONCURRENCY,
  type ExecutionInput,
  executionInputOf,
  type MapPlan,
  mergeBatches,
  planBatches,
  runBatch,
} from './batches.ts';
export { type Clock, systemClock } from './clock.ts';
export * as defaults from './defaults.ts';
export { type EngineRuntime, type FanOutRun, fanOut, startFanOut } from './engine.ts';
export {
  ERROR_CODES,
  type ErrorCode,
  FanoutError,
  type ItemError,
  isErrorCode,
  type JobIssue,
  JobValidationError,
} from './errors.ts';
export {
  type AllowList,
  createDestinationGuard,
  DestinationError,
  type DestinationGuard,
  type DestinationGuardOptions,
  parseAllowList,
} from './guard.ts';
export {
  type AttemptReport,
  createHostScheduler,
  HostCooldownError,
  type HostPermit,
  type HostScheduler,
  type HostSchedulerOptions,
} from './hosts.ts';
export {
  type JobOptions,
  type ParsedJob,
  parseItems,
  parseJob,
  parseOptions,
  type TransformSpec,
  toJobForm,
} from './job.ts';
export {
  assertKnownTransform,
  BUILTIN_TRANSFORMS,
  closeSharedTransformPool,
  createTransformPool,
  INLINE_MAX_BODY_BYTES,
  sharedTransformPool,
  type TransformPool,
  type TransformPoolOptions,
  type TransformPoolStats,
  transformNames,
} from './pool.ts';
export { type RedriveOptions, redriveJob } from './redrive.ts';
export { type JobRuntime, readManifest, readStoredManifest, resumeJob, runJob } from './run.ts';
export {
  DEFAULT_CHECKPOINT_MS,
  DEFAULT_PART_BYTES,
  ManifestConflictError,
  type StoredManifest,
} from './store.ts';
export type { TransformFn, UserTransformRegistry } from './transforms/contract.ts';
export type * from './types.ts';

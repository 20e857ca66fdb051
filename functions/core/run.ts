// PLACEHOLDER owned by the store work: replaced by the whole pipeline (job -> engine -> store -> manifest).
import type { Manifest, Runtime, StoreConfig } from './types.ts';

export type JobRuntime = Runtime & { store: StoreConfig };

/** Runs (or resumes) a job document to its manifest. */
export async function runJob(_job: unknown, _runtime: JobRuntime): Promise<Manifest> {
  throw new Error('runJob not yet implemented');
}

/** Continues a job already started (its job document was saved by its first run). */
export async function resumeJob(_jobId: string, _runtime: JobRuntime): Promise<Manifest> {
  throw new Error('resumeJob not yet implemented');
}

/** The committed manifest of a job, or null when none exists. */
export async function readManifest(
  _store: StoreConfig,
  _jobId: string,
  _signal?: AbortSignal,
): Promise<Manifest | null> {
  throw new Error('readManifest not yet implemented');
}

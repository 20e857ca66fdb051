// PLACEHOLDER owned by the pool work: replaced by the piscina transform pool.
import type { TransformRunner } from './types.ts';

export interface TransformPool {
  run: TransformRunner;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export interface TransformPoolOptions {
  /** Worker threads; defaults to os.availableParallelism(). */
  threads?: number;
}

export function createTransformPool(_options: TransformPoolOptions = {}): TransformPool {
  throw new Error('pool not yet implemented');
}

// The shapes shared by the main thread and the transform worker: a transform, a user registry, a task.
import type { FetchedResponse } from '../types.ts';

/** A named, pure function from a fetched response to a JSON-serializable value; throw to fail the item. */
export type TransformFn = (response: FetchedResponse, options: Record<string, unknown>) => unknown;

/**
 * User transforms by name, each a lazy loader of a module whose default export is the transform.
 * Lazy so the main thread can list the names (job validation) without loading any user code.
 */
export type UserTransformRegistry = Readonly<
  Record<string, () => Promise<{ default: TransformFn } | { transform: TransformFn }>>
>;

/** What the pool posts to a worker; `body` arrives as a moved ArrayBuffer. */
export interface WorkerTask {
  /** The pool's task number: the worker echoes it when it starts, which starts the task's timeout. */
  seq: number;
  response: FetchedResponse;
  spec: { name: string; options: Record<string, unknown> };
}

/** Posted by a worker on its parent port as it starts a task. */
export interface TaskStartedMessage {
  type: 'fanout:transform-started';
  seq: number;
}

export const TASK_STARTED = 'fanout:transform-started';

/** Turns anything thrown into one line for an item's error message. */
export function describeError(error: unknown): string {
  if (error instanceof Error) return error.message || error.name;
  return typeof error === 'string' ? error : 'transform failed';
}

// The transform worker (piscina's task handler): resolves the named transform and returns a result.
import { parentPort } from 'node:worker_threads';
import { userTransforms } from '../../transforms/index.ts';
import type { TransformResult } from '../types.ts';
import {
  describeError,
  TASK_STARTED,
  type TaskStartedMessage,
  type UserTransformRegistry,
  type WorkerTask,
} from './contract.ts';
import { applyTransform } from './inline.ts';
import { createRegistry } from './registry.ts';

/** A handler over the built-ins plus `user`; tests and benchmarks build one with extra transforms. */
export function createWorkerHandler(
  user: UserTransformRegistry,
): (task: WorkerTask) => Promise<TransformResult> {
  const registry = createRegistry(user);
  return async (task) => {
    // Tell the pool the task is running now, so its timeout measures work, not time in the queue.
    const started: TaskStartedMessage = { type: TASK_STARTED, seq: task.seq };
    parentPort?.postMessage(started);
    let transform: Awaited<ReturnType<typeof registry.resolve>>;
    try {
      transform = await registry.resolve(task.spec.name);
    } catch (error) {
      return {
        ok: false,
        code: 'TRANSFORM_ERROR',
        message: `loading "${task.spec.name}": ${describeError(error)}`,
      };
    }
    if (!transform)
      return { ok: false, code: 'TRANSFORM_ERROR', message: `unknown transform "${task.spec.name}"` };
    // Errors never cross the thread as exceptions: they would arrive without their fields.
    return applyTransform(transform, task.response, task.spec.options);
  };
}

export default createWorkerHandler(userTransforms);

// The user transform registry: add a module to this folder, then one line here naming it.
//
// A transform is a pure function `(response, options) => value` (the module's default export), run in a
// worker thread: `response` is { itemId, url, status, headers, body: Uint8Array }, `options` is the job's
// `options.transform.options`, and `value` must be JSON-serializable. Throw to fail the item with
// TRANSFORM_ERROR. Loaders stay lazy so job validation can list the names without loading user code.
// Names are lower-case words with dashes and may not reuse a built-in (auto, raw, json, html, digest).
import type { UserTransformRegistry } from '../core/transforms/contract.ts';

export const userTransforms: UserTransformRegistry = {
  'top-words': () => import('./top-words.ts'),
};

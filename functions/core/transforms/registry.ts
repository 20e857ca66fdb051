// Every transform the worker can run: the built-ins plus the user registry, user modules loaded once.
import type { TransformFn, UserTransformRegistry } from './contract.ts';
import { htmlTransform } from './html.ts';
import { CHEAP_TRANSFORMS } from './inline.ts';

export interface TransformRegistry {
  /** The transform named, or undefined when there is none by that name. */
  resolve(name: string): Promise<TransformFn | undefined>;
}

export function createRegistry(user: UserTransformRegistry): TransformRegistry {
  const builtins: Record<string, TransformFn> = { ...CHEAP_TRANSFORMS, html: htmlTransform };
  const loaded = new Map<string, Promise<TransformFn>>();
  return {
    resolve(name) {
      if (Object.hasOwn(builtins, name)) return Promise.resolve(builtins[name]);
      const load = Object.hasOwn(user, name) ? user[name] : undefined;
      if (!load) return Promise.resolve(undefined);
      let transform = loaded.get(name);
      if (!transform) {
        transform = load().then((module) => {
          const fn = 'default' in module ? module.default : module.transform;
          if (typeof fn !== 'function') throw new Error(`user transform "${name}" exports no function`);
          return fn;
        });
        // A module that failed to load is retried next time rather than cached as broken.
        transform.catch(() => loaded.delete(name));
        loaded.set(name, transform);
      }
      return transform;
    },
  };
}

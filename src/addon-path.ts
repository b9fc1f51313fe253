// Where `npm ci` leaves the native addons (build/Release, node-gyp's default),
// from this file's place in the source tree (tests) or in dist/ (built).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The addon `name` (e.g. 'pgcmek_relay.node') at the package root, or undefined when it was not built. */
export function addonPath(name: string): string | undefined {
  for (const up of ['../../', '../']) {
    const p = fileURLToPath(new URL(`${up}build/Release/${name}`, import.meta.url));
    if (existsSync(p)) return p;
  }
  return undefined;
}

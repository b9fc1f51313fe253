#!/usr/bin/env node
// `npm ci` / `npm install` runs this (package.json "install"): builds the optional
// native addons (native/crypto.c, native/relay.c) with node-gyp. Without a compiler or
// Node's headers the build fails and pgcmek runs its JavaScript crypto and pumps
// instead, which are correct but slower; a warning says so. PGCMEK_NATIVE=require (CI) makes a failed
// build fail the install; PGCMEK_NATIVE=off skips the build.
'use strict';
const { spawnSync } = require('node:child_process');
const { existsSync } = require('node:fs');
const { dirname, join } = require('node:path');

const mode = (process.env.PGCMEK_NATIVE || 'auto').toLowerCase();
if (mode === 'off') {
  console.log('pgcmek: PGCMEK_NATIVE=off, native addons not built');
  process.exit(0);
}
// npm tells lifecycle scripts where its node-gyp is; otherwise look next to this node's npm.
const candidates = [
  process.env.npm_config_node_gyp,
  join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
].filter(Boolean);
const gyp = candidates.find((p) => existsSync(p));
let ok = false;
if (gyp) {
  const r = spawnSync(process.execPath, [gyp, 'rebuild'], { cwd: join(__dirname, '..'), stdio: 'inherit' });
  ok = r.status === 0;
}
if (!ok) {
  const why = gyp ? 'node-gyp failed (a C compiler, python3 and Node headers are needed)' : 'node-gyp not found';
  if (mode === 'require') {
    console.error(`pgcmek: native addons build failed: ${why}`);
    process.exit(1);
  }
  console.warn(`pgcmek: native addons not built (${why}); the JavaScript crypto and pumps will be used (slower)`);
}

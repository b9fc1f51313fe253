// The container files cannot be built here (no Docker engine), so this checks
// what can be checked without one: they parse, and everything they name exists.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { parseConfig } from '../../src/config/load.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const read = (p: string) => readFileSync(join(root, p), 'utf8');

interface Compose {
  services: Record<
    string,
    {
      build?: string;
      image?: string;
      volumes?: string[];
      entrypoint?: string[];
      configs?: { source: string; target: string }[];
      environment?: Record<string, string>;
      ports?: string[];
    }
  >;
  volumes?: Record<string, unknown>;
  configs?: Record<string, { content?: string; file?: string }>;
}

/** Dockerfile instructions with line continuations joined. */
function instructions(): { op: string; args: string }[] {
  return read('Dockerfile')
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const [op, ...rest] = l.split(/\s+/);
      return { op: op.toUpperCase(), args: rest.join(' ') };
    });
}

describe('Dockerfile', () => {
  const ins = instructions();

  it('is multi-stage: a build stage, then a Node 24 slim runtime', () => {
    const froms = ins.filter((i) => i.op === 'FROM').map((i) => i.args);
    expect(froms).toHaveLength(2);
    expect(froms[0]).toMatch(/ AS build$/);
    expect(froms[1]).toMatch(/^node:24[\w.-]*-slim$/);
  });

  it('builds with npm ci + npm run build, installs production dependencies only at run time', () => {
    const runs = ins.filter((i) => i.op === 'RUN').map((i) => i.args);
    expect(runs.some((r) => /^npm ci\b/.test(r))).toBe(true);
    expect(runs).toContain('npm run build');
    expect(runs.some((r) => /npm ci --omit=dev/.test(r))).toBe(true);
  });

  it('every COPY source exists and is let through .dockerignore', () => {
    const allowed = read('.dockerignore')
      .split('\n')
      .filter((l) => l.startsWith('!'))
      .map((l) => l.slice(1));
    const copies = ins.filter((i) => i.op === 'COPY' && !i.args.startsWith('--from'));
    expect(copies.length).toBeGreaterThan(0);
    for (const c of copies) {
      const parts = c.args.split(/\s+/);
      for (const src of parts.slice(0, -1)) {
        expect(existsSync(join(root, src)), `${src} (COPY ${c.args})`).toBe(true);
        expect(allowed, `.dockerignore must allow ${src}`).toContain(src);
      }
    }
  });

  it('keeps KEK files out of the build context', () => {
    expect(read('.dockerignore').split('\n')).toContain('**/*.key');
  });

  it('runs as a non-root user, with a HEALTHCHECK', () => {
    const user = ins.filter((i) => i.op === 'USER').at(-1);
    expect(user?.args).toBeDefined();
    expect(user?.args).not.toMatch(/^(root|0)$/);
    expect(ins.some((i) => i.op === 'HEALTHCHECK')).toBe(true);
  });

  it('CMD runs the script the build produces, with a mounted config', () => {
    const cmd = JSON.parse(ins.filter((i) => i.op === 'CMD').at(-1)!.args) as string[];
    expect(cmd).toEqual(['node', 'dist/src/cli.js', 'serve', '--config', '/etc/pgcmek/config.yaml']);
    // tsc maps <rootDir>/src/cli.ts to <outDir>/src/cli.js.
    const ts = JSON.parse(read('tsconfig.json')) as { compilerOptions: { outDir: string; rootDir: string }; include: string[] };
    expect(ts.compilerOptions.outDir).toBe('dist');
    expect(ts.compilerOptions.rootDir).toBe('.');
    expect(ts.include).toContain('src/**/*.ts');
    expect(existsSync(join(root, 'src/cli.ts'))).toBe(true);
    const pkg = JSON.parse(read('package.json')) as { bin: { pgcmek: string }; scripts: { build: string } };
    expect(pkg.bin.pgcmek).toBe(cmd[1]);
    expect(pkg.scripts.build).toBe('tsc -p tsconfig.json');
    // After a build (npm test builds first) the file is really there.
    if (existsSync(join(root, 'dist'))) expect(existsSync(join(root, cmd[1]))).toBe(true);
  });
});

/** Runs a command (argv) with extra environment; resolves to its exit code. */
function exitCode(argv: string[], env: Record<string, string> = {}): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const p = spawn(argv[0] === 'node' ? process.execPath : argv[0]!, argv.slice(1), { cwd: root, env: { PATH: process.env.PATH ?? '', ...env }, stdio: 'ignore' });
    p.once('error', reject);
    p.once('exit', (code) => resolve(code));
  });
}

async function listen(server: Server | ReturnType<typeof createHttpServer>): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}

describe('what the image runs', () => {
  const ins = instructions();

  it('CMD: `serve --help` of the built script exits 0', async () => {
    if (!existsSync(join(root, 'dist/src/cli.js'))) throw new Error('dist/src/cli.js is missing: run `npx tsc -p tsconfig.json` (npm test does)');
    const cmd = JSON.parse(ins.filter((i) => i.op === 'CMD').at(-1)!.args) as string[];
    expect(await exitCode([...cmd.slice(0, 3), '--help'])).toBe(0);
  });

  it('EXPOSEs the proxy and the metrics ports', () => {
    expect(ins.filter((i) => i.op === 'EXPOSE').flatMap((i) => i.args.split(/\s+/))).toEqual(['6432', '9187']);
  });

  describe('HEALTHCHECK', () => {
    const check = JSON.parse(ins.find((i) => i.op === 'HEALTHCHECK')!.args.replace(/^.*?CMD /, '')) as string[];

    it('without PGCMEK_HEALTH_URL: a TCP connect to PGCMEK_HEALTH_PORT', async () => {
      const tcp = createServer((s) => s.destroy());
      const port = await listen(tcp);
      try {
        expect(await exitCode(check, { PGCMEK_HEALTH_PORT: String(port) })).toBe(0);
      } finally {
        tcp.close();
      }
      expect(await exitCode(check, { PGCMEK_HEALTH_PORT: String(port) })).toBe(1);
    });

    it('with PGCMEK_HEALTH_URL: an HTTP GET that must answer 200', async () => {
      let status = 200;
      const http = createHttpServer((_req, res) => res.writeHead(status).end());
      const port = await listen(http);
      try {
        const env = { PGCMEK_HEALTH_URL: `http://127.0.0.1:${port}/healthz` };
        expect(await exitCode(check, env)).toBe(0);
        status = 503;
        expect(await exitCode(check, env)).toBe(1);
      } finally {
        http.close();
      }
    });
  });
});

describe('docker-compose.yml', () => {
  const compose = parse(read('docker-compose.yml')) as Compose;

  it('has postgres, a one-shot keygen and pgcmek', () => {
    expect(Object.keys(compose.services).sort()).toEqual(['keygen', 'pgcmek', 'postgres']);
    expect(compose.services.keygen.entrypoint?.join(' ')).toContain('keygen --out /var/lib/pgcmek/kek.key');
  });

  it('every file it references exists', () => {
    for (const [name, s] of Object.entries(compose.services)) {
      if (s.build) expect(existsSync(join(root, s.build, 'Dockerfile')), `${name}.build`).toBe(true);
      for (const v of s.volumes ?? []) {
        const src = v.split(':')[0];
        if (src.startsWith('.') || src.startsWith('/')) expect(existsSync(join(root, src)), `${name}: ${v}`).toBe(true);
        else expect(compose.volumes, `named volume ${src}`).toHaveProperty(src);
      }
      for (const c of s.configs ?? []) expect(compose.configs).toHaveProperty(c.source);
    }
    for (const c of Object.values(compose.configs ?? {})) if (c.file) expect(existsSync(join(root, c.file))).toBe(true);
  });

  it('publishes only pgcmek, and only on the loopback interface', () => {
    expect(compose.services.postgres.ports).toBeUndefined();
    expect(compose.services.pgcmek.ports).toEqual(['127.0.0.1:6432:6432', '127.0.0.1:9187:9187']);
  });

  it('only pgcmek mounts the KEK volume, read-only', () => {
    const mounts = Object.entries(compose.services).flatMap(([name, s]) => (s.volumes ?? []).filter((v) => v.startsWith('kek:')).map((v) => [name, v]));
    expect(mounts).toEqual([
      ['keygen', 'kek:/var/lib/pgcmek'],
      ['pgcmek', 'kek:/var/lib/pgcmek:ro'],
    ]);
  });

  it('its inline pgcmek config is valid and reads the KEK from the volume', () => {
    const text = compose.configs?.['pgcmek-config']?.content ?? '';
    const c = parseConfig(text, 'docker-compose.yml configs.pgcmek-config', {});
    expect(c.kek.local.path).toBe('/var/lib/pgcmek/kek.key');
    expect(c.upstream.host).toBe('postgres');
    expect(c.listen).toEqual({ host: '0.0.0.0', port: 6432 });
    // Metrics on, and the image's HEALTHCHECK pointed at them.
    expect(c.metrics).toEqual({ host: '0.0.0.0', port: 9187 });
    expect(compose.services.pgcmek.environment?.PGCMEK_HEALTH_URL).toBe('http://127.0.0.1:9187/healthz');
    // Same columns as the example config.
    const example = parseConfig(read('config.yaml'), 'config.yaml', {}, { baseDir: root });
    expect(c.encrypted).toEqual(example.encrypted);
  });
});

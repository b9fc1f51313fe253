import { mkdtempSync, rmSync, statSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ADMIN_COMMANDS, COMMANDS } from '../../src/cli/main.js';
import { run } from './run.js';

const dir = mkdtempSync(join(tmpdir(), 'pgcmek-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const fresh = (name = 'kek.key') => join(dir, `${n++}-${name}`);

async function keygen(): Promise<string> {
  const path = fresh();
  const r = await run(['keygen', '--out', path]);
  expect(r.code).toBe(0);
  return path;
}

/** One line of stderr, no stack trace. */
function expectOneLine(stderr: string): void {
  expect(stderr.endsWith('\n')).toBe(true);
  expect(stderr.trimEnd().split('\n')).toHaveLength(1);
  expect(stderr).not.toMatch(/\n\s+at /);
}

describe('usage', () => {
  it('no command: the help on stderr, exit 2', async () => {
    const r = await run([]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('Usage: pgcmek <command> [options]');
    expect(r.stdout).toBe('');
  });

  it('--help and -h print the overview with every command', async () => {
    for (const flag of ['--help', '-h']) {
      const r = await run([flag]);
      expect(r.code).toBe(0);
      for (const c of [...COMMANDS.map((c) => c.name), ...Object.keys(ADMIN_COMMANDS)]) expect(r.stdout).toContain(`  ${c} `);
    }
  });

  it('--version prints package.json\'s version', async () => {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    const r = await run(['--version']);
    expect(r).toEqual({ code: 0, stdout: `${pkg.version}\n`, stderr: '' });
  });

  it.each(COMMANDS.map((c) => c.name))('%s --help / -h: usage and options on stdout, exit 0', async (name) => {
    for (const flag of ['--help', '-h']) {
      const r = await run([name, flag]);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^Usage: pgcmek ${name}`));
      expect(r.stdout).toContain('-h, --help');
      expect(r.stderr).toBe('');
    }
  });

  it('help wins over missing required options', async () => {
    expect((await run(['serve', '--help'])).code).toBe(0);
    expect((await run(['keygen', '-h'])).code).toBe(0);
  });

  it.each([
    [['frobnicate'], "pgcmek: unknown command 'frobnicate' (see pgcmek --help)"],
    [['encyrpt'], "pgcmek: unknown command 'encyrpt' (did you mean 'encrypt'?) (see pgcmek --help)"],
    [['--verbose'], 'pgcmek: unknown option --verbose (see pgcmek --help)'],
    [['keygen'], 'pgcmek keygen: --out PATH is required (see pgcmek keygen --help)'],
    [['keygen', '--out'], "pgcmek keygen: Option '-o, --out <value>' argument missing (see pgcmek keygen --help)"],
    [['keygen', '--out', ''], 'pgcmek keygen: --out must not be empty (see pgcmek keygen --help)'],
    [['encrypt', '--frob'], "pgcmek encrypt: Unknown option '--frob' (see pgcmek encrypt --help)"],
    [['decrypt', 'extra'], "pgcmek decrypt: Unexpected argument 'extra' (see pgcmek decrypt --help)"],
    [['serve'], 'pgcmek serve: --config PATH is required (see pgcmek serve --help)'],
  ])('%j is a usage error: exit 2, one line', async (argv, message) => {
    const r = await run(argv);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(message + '\n');
    expect(r.stdout).toBe('');
  });
});

describe('keygen', () => {
  it('writes 32 bytes with mode 600 and prints the id and next step', async () => {
    const path = fresh();
    const r = await run(['keygen', '--out', path]);
    expect(r.code).toBe(0);
    const st = statSync(path);
    expect(st.size).toBe(32);
    expect(st.mode & 0o777).toBe(0o600);
    expect(r.stdout).toMatch(new RegExp(`^wrote a new KEK to ${path} \\(mode 600, id [0-9a-f]{16}\\)\\n`));
    expect(r.stdout).toContain(`VIGILO_CMEK_LOCAL_KEK_PATH=${path}`);
    expect(r.stdout).not.toContain(readFileSync(path).toString('hex'));
  });

  it('refuses to overwrite: exit 1, the file unchanged, one line', async () => {
    const path = await keygen();
    const before = readFileSync(path);
    const r = await run(['keygen', '-o', path]);
    expect(r.code).toBe(1);
    expect(readFileSync(path).equals(before)).toBe(true);
    expect(r.stderr).toMatch(/^pgcmek keygen: KekConfigError: .*already exists/);
    expectOneLine(r.stderr);
  });

  it('an unwritable place: exit 1, one line', async () => {
    const r = await run(['keygen', '--out', join(dir, 'no', 'such', 'dir', 'kek.key')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^pgcmek keygen: /);
    expectOneLine(r.stderr);
  });
});

describe('encrypt | decrypt', () => {
  it('round-trips through stdin/stdout, stripping exactly one trailing newline', async () => {
    const env = { VIGILO_CMEK_LOCAL_KEK_PATH: await keygen() };
    for (const [input, plain] of [
      ['xoxb-123\n', 'xoxb-123'],
      ['xoxb-123', 'xoxb-123'],
      ['two\n\n', 'two\n'],
      ['', ''],
      ['\n', ''],
      ['  spaces kept  \n', '  spaces kept  '],
      ['multi\nline\nvalue\n', 'multi\nline\nvalue'],
      ['ünïcødé ✓ 🔑\n', 'ünïcødé ✓ 🔑'],
    ]) {
      const enc = await run(['encrypt'], { stdin: input, env });
      expect(enc.code).toBe(0);
      expect(enc.stdout).toMatch(/^cmek:v1:[A-Za-z0-9_-]+\|[A-Za-z0-9_-]*\|[A-Za-z0-9_=-]+\n$/);
      if (plain) expect(enc.stdout).not.toContain(plain);
      const dec = await run(['decrypt'], { stdin: enc.stdout, env });
      expect(dec).toEqual({ code: 0, stdout: plain + '\n', stderr: '' });
    }
  });

  it('reads the KEK from --config (relative to the config file)', async () => {
    const kek = await keygen();
    const cfg = fresh('config.yaml');
    writeFileSync(cfg, `kek:\n  local:\n    path: ${kek}\n`);
    const enc = await run(['encrypt', '--config', cfg], { stdin: 'secret\n' });
    expect(enc.code).toBe(0);
    const dec = await run(['decrypt', '-c', cfg], { stdin: enc.stdout });
    expect(dec.stdout).toBe('secret\n');
  });

  it('decrypts under a previous KEK listed in kek.local.previous', async () => {
    const old = await keygen();
    const enc = await run(['encrypt'], { stdin: 'v', env: { VIGILO_CMEK_LOCAL_KEK_PATH: old } });
    const cfg = fresh('config.yaml');
    writeFileSync(cfg, `kek:\n  local: { path: ${await keygen()}, previous: [${old}] }\n`);
    expect((await run(['decrypt', '--config', cfg], { stdin: enc.stdout })).stdout).toBe('v\n');
  });

  it('the wrong KEK: exit 1, one actionable line, nothing on stdout', async () => {
    const enc = await run(['encrypt'], { stdin: 'secret', env: { VIGILO_CMEK_LOCAL_KEK_PATH: await keygen() } });
    const r = await run(['decrypt'], { stdin: enc.stdout, env: { VIGILO_CMEK_LOCAL_KEK_PATH: await keygen() } });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^pgcmek decrypt: CMEKDecryptionError: .*unknown_kek.*KEK local:[0-9a-f]{16}.* — is the right kek\.local\.path loaded\?/);
    expect(r.stderr).not.toContain('secret');
    expectOneLine(r.stderr);
  });

  it('an altered envelope: exit 1, never garbage', async () => {
    const env = { VIGILO_CMEK_LOCAL_KEK_PATH: await keygen() };
    const enc = (await run(['encrypt'], { stdin: 'secret', env })).stdout.trimEnd();
    const i = enc.length - 10;
    const tampered = enc.slice(0, i) + (enc[i] === 'A' ? 'B' : 'A') + enc.slice(i + 1);
    const r = await run(['decrypt'], { stdin: tampered, env });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^pgcmek decrypt: CMEKDecryptionError: /);
    expectOneLine(r.stderr);
  });

  it('plaintext given to decrypt is an error, not echoed back', async () => {
    const r = await run(['decrypt'], { stdin: 'not encrypted\n', env: { VIGILO_CMEK_LOCAL_KEK_PATH: await keygen() } });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe('pgcmek decrypt: the input is not an encrypted value (it does not start with cmek:v1:); nothing to decrypt\n');
  });

  it('no KEK configured: exit 1, the message names the key and the variable', async () => {
    const r = await run(['encrypt'], { stdin: 'x' });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      'pgcmek encrypt: environment: kek.local.path: required when kek.backend is local: set kek.local.path in the config file or VIGILO_CMEK_LOCAL_KEK_PATH\n',
    );
  });

  it('a missing KEK file: exit 1 with the fix', async () => {
    const r = await run(['encrypt'], { stdin: 'x', env: { VIGILO_CMEK_LOCAL_KEK_PATH: join(dir, 'missing.key') } });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^pgcmek encrypt: KekConfigError: .*missing\.key.*pgcmek keygen --out/);
    expectOneLine(r.stderr);
  });

  it('a bad config file: every problem, each on its own line', async () => {
    const cfg = fresh('config.yaml');
    writeFileSync(cfg, 'workers: x\nlisten: { port: -1 }\n');
    const r = await run(['encrypt', '--config', cfg], { stdin: 'x' });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `pgcmek encrypt: 3 configuration problems:\n` +
        `  ${cfg}:1: workers: expected an integer from 1 to 1024, got "x"\n` +
        `  ${cfg}:2: listen.port: expected an integer from 0 to 65535, got -1\n` +
        `  ${cfg}: kek.local.path: required when kek.backend is local: set kek.local.path in the config file or VIGILO_CMEK_LOCAL_KEK_PATH\n`,
    );
  });

  it('PGCMEK_DEBUG=1 adds the stack trace', async () => {
    const r = await run(['encrypt'], { stdin: 'x', env: { PGCMEK_DEBUG: '1', VIGILO_CMEK_LOCAL_KEK_PATH: join(dir, 'missing.key') } });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/\n\s+at /);
  });
});

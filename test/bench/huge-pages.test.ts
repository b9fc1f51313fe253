import { describe, expect, it } from 'vitest';
import { onOff } from '../../bench/lib/args.js';
import { reserveHugePages } from '../../bench/lib/huge-pages.js';

describe('bench huge pages', () => {
  it('--huge-pages off keeps 4 KiB pages without touching the machine', () => {
    expect(reserveHugePages(192, false)).toEqual({ setting: 'off', describe: '4 KiB pages (--huge-pages off)' });
  });

  it('--huge-pages takes on or off only', () => {
    expect(onOff('on', 'huge-pages')).toBe(true);
    expect(onOff('off', 'huge-pages')).toBe(false);
    expect(() => onOff('yes', 'huge-pages')).toThrow('--huge-pages must be on or off');
  });
});

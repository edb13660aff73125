// What every browser test shares: Debian's Chromium, headless, on a
// throw-away profile; each wait's deadline; numbered steps; and the rule
// that the page throws no script error. playwright-core drives it.
import { chromium } from 'playwright-core';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';

// Each wait's deadline: generous, because a full-page screenshot on a busy
// 2-core machine (load 10+) has taken over 15 s; a wait that passes returns
// as soon as its condition holds, so this costs nothing when all is well.
export const T = 60000;

// Where the screenshots go (SHOTS), created if missing.
export const shots = process.env.SHOTS || 'screenshots';
mkdirSync(shots, { recursive: true });

let passed = 0;

// step(NAME, FN): runs one step and says how long it took.
export async function step(name, fn) {
  const t0 = Date.now();
  await fn();
  passed++;
  console.log(`ok   ${name} (${Date.now() - t0} ms)`);
}

// openBrowser(OPTIONS): a desktop-sized page in Beijing time (OPTIONS adds
// to playwright's context options). finish() ends a test that got through
// every step: no script errors, then the count; close() always runs last.
export async function openBrowser(options = {}) {
  const profile = mkdtempSync(join(tmpdir(), 'sitegate-chromium-'));
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1366, height: 900 },
    timezoneId: 'Asia/Shanghai',
    ...options,
  });
  const errors = [];
  const page = ctx.pages()[0] || (await ctx.newPage());
  page.setDefaultTimeout(T);
  page.on('pageerror', (e) => errors.push(e.message));
  return {
    page,
    finish() {
      assert.deepEqual(errors, [], `script errors in the page: ${errors.join('; ')}`);
      console.log(`${passed} passed, 0 failed`);
    },
    async close() {
      await ctx.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

// assertWithinPhone(PAGE, WHAT): at a phone's width, the page does not
// scroll sideways and every button and table cell is within reach.
export async function assertWithinPhone(page, what) {
  const out = await page.evaluate(() => {
    const w = window.innerWidth;
    const wide = [...document.querySelectorAll('#main button, #main td')]
      .filter((b) => { const r = b.getBoundingClientRect(); return r.width > 0 && (r.right > w + 0.5 || r.left < -0.5); })
      .map((b) => b.textContent.slice(0, 20));
    return { overflow: document.documentElement.scrollWidth - w, wide };
  });
  assert.ok(out.overflow <= 0, `${what}: the page is ${out.overflow}px wider than the phone`);
  assert.deepEqual(out.wide, [], `${what}: out of reach at 390 px`);
}

// The supervision console in Debian's Chromium, headless, driven by
// playwright-core (tests/integration/test_rx_console.sh starts a receiver
// with a site uploading to it and runs this). Every step waits on a
// condition in the page, never on a fixed delay.
//
// env: CONSOLE_URL (http://127.0.0.1:PORT), MN (the uploading site),
// SHOTS (folder for the screenshots), PREV_MONTH (YYYY-MM: the month whose
// first 72 hours the site sent as hour frames).
import { shots, step, openBrowser } from './harness.mjs';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import assert from 'node:assert/strict';
const url = process.env.CONSOLE_URL;
const mn = process.env.MN;
const prevMonth = process.env.PREV_MONTH;

const { page, finish, close } = await openBrowser({ acceptDownloads: true });
try {
  const ready = (name) => page.waitForSelector(`#main[data-page="${name}"][data-ready="1"]`);

  await step('the console asks to sign in, in Chinese', async () => {
    await page.goto(`${url}/`);
    await ready('login');
    assert.equal(await page.getAttribute('html', 'lang'), 'zh-CN');
    assert.equal(await page.locator('#login-submit').textContent(), '登录');
    await page.screenshot({ path: join(shots, 'console-login-zh.png') });
  });

  await step('a wrong password is refused', async () => {
    await page.fill('#login-user', 'inspector');
    await page.fill('#login-password', 'not the password');
    await page.click('#login-submit');
    await page.waitForFunction(() => document.querySelector('#login-err').textContent !== '');
    assert.equal(await page.locator('#login-err').textContent(), '用户名或密码错误');
  });

  await step('signed in, the site table shows the site', async () => {
    await page.fill('#login-password', 'correct horse 42');
    await page.click('#login-submit');
    await ready('sites');
    assert.equal(await page.locator('#who').textContent(), 'inspector');
    const row = page.locator(`#sites tr[data-mn="${mn}"]`);
    await row.waitFor();
    assert.equal(await page.locator('#sites tbody tr').count(), 1);
    const cells = await row.locator('td').allTextContents();
    assert.equal(cells[0], mn);
    assert.equal(cells[1], '测试工地', `name from the site profile: ${cells}`);
    assert.equal(cells[3], '在线', `link: ${cells}`);
    assert.match(cells[5], /^完整 [1-9]\d*$/, `chain: ${cells}`);
    assert.equal(cells[10], '17.6', `waste t: ${cells}`);
    // 17.6 t over 400 + 400 m² of the profile: 220 t per 10,000 m²
    // against (300 + 200) / 2 = 250, 88% of the 20 t allowance used
    assert.equal(cells[11], '220.0 / 250', `waste per 10,000 m²: ${cells}`);
    assert.equal(await row.locator('td span[title="已用限额 88.0%"]').count(), 1);
    assert.equal(cells[12], '100.0%', `recycling: ${cells}`);
    assert.equal(await page.locator('#tile-waste .v').textContent(), '0');
    assert.equal(await page.locator('#tile-sites .v').textContent(), '1');
    assert.equal(await page.locator('#tile-silent .v').textContent(), '0');
    assert.equal(await page.locator('#sites th[data-key="noise_night"]').textContent(), '噪声超标（夜）');
    await page.screenshot({ path: join(shots, 'console-sites-zh.png'), fullPage: true });
  });

  await step('sorting and filtering', async () => {
    await page.click('#sites th[data-key="waste_t"]');
    await page.waitForSelector('#sites th[data-key="waste_t"].sorted.asc');
    await page.click('#sites th[data-key="waste_t"]');
    await page.waitForSelector('#sites th[data-key="waste_t"].sorted:not(.asc)');
    await page.fill('#filter', 'no-such-site');
    await page.waitForFunction(() => document.querySelectorAll('#sites tbody tr').length === 0);
    await page.fill('#filter', mn.slice(0, 6).toLowerCase());
    await page.waitForFunction(() => document.querySelectorAll('#sites tbody tr').length === 1);
    await page.fill('#filter', '测试');
    await page.waitForFunction(() => document.querySelectorAll('#sites tbody tr').length === 1);
  });

  await step('the CSV export holds the site', async () => {
    const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#csv')]);
    const path = await dl.path();
    const text = readFileSync(path, 'utf8');
    assert.match(text.split('\r\n')[0], /^mn,subject,last_seen,last_frame_ms,/);
    assert.ok(text.split('\r\n').some((l) => l.startsWith(`${mn},`)), text);
  });

  await step('the language switch works', async () => {
    await page.click('#lang');
    await page.waitForFunction(() => document.documentElement.lang === 'en' &&
      document.querySelector('#main[data-ready="1"]'));
    assert.equal(await page.locator('#sites th[data-key="noise_night"]').textContent(), 'Noise over (night)');
    await page.screenshot({ path: join(shots, 'console-sites-en.png'), fullPage: true });
    await page.click('#lang');
    await page.waitForFunction(() => document.documentElement.lang === 'zh-CN' &&
      document.querySelector('#main[data-ready="1"]'));
  });

  await step("a site's page draws its minute PM10 and lists its ledger", async () => {
    await page.click(`#sites tr[data-mn="${mn}"] a`);
    await ready('site');
    assert.equal(await page.locator('#site-mn').textContent(), mn);
    assert.equal(await page.locator('#site-name').textContent(), '测试工地');
    const chart = page.locator('#chart-pm10[data-drawn="1"]');
    await chart.waitFor();
    const points = Number(await chart.getAttribute('data-points'));
    assert.ok(points > 0, `pm10: ${points} points`);
    const inked = await page.locator('#chart-pm10 canvas').first().evaluate((c) => {
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) return true;
      return false;
    });
    assert.ok(inked, 'the PM10 chart has no ink');
    const rows = page.locator('#ledger tbody tr');
    assert.ok((await rows.count()) >= 1);
    const waste = page.locator('#ledger tbody tr', { hasText: '建筑垃圾出场' }).first();
    const cells = await waste.locator('td').allTextContents();
    assert.equal(cells[3], '已校验', `ledger: ${cells}`);
    assert.match(cells[4], /17\.60 t 资源化利用/, `ledger: ${cells}`);
    // no identifier of the uplink's (rule ids, on/off, warn, recycling) in the Chinese ledger
    const text = await page.locator('#ledger tbody').innerText();
    assert.doesNotMatch(text, /\b[a-z]+\.[a-z_]+\b|\b(on|off|warn|alarm|recycling|disposal)\b/, `ledger: ${text}`);
    await page.screenshot({ path: join(shots, 'console-site-zh.png'), fullPage: true });
  });

  await step("a site's month of hours: last month's PM10 and noise with their limits", async () => {
    const inked = (sel) => page.locator(`${sel} canvas`).first().evaluate((c) => {
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) return true;
      return false;
    });
    await page.selectOption('#site-month', prevMonth);
    await page.waitForSelector(`#main[data-page="site"][data-ready="1"][data-month="${prevMonth}"]`);
    for (const [id, limits] of [['#chart-month-pm10', '2'], ['#chart-month-noise', '1']]) {
      const chart = page.locator(`${id}[data-drawn="1"]`);
      await chart.waitFor();
      assert.equal(await chart.getAttribute('data-points'), '72', `${id}: points`);
      assert.equal(await chart.getAttribute('data-limits'), limits, `${id}: limit lines`);
      assert.ok(await inked(id), `${id} has no ink`);
    }
    assert.equal(await page.locator('#month-title').textContent(), `${prevMonth} 月小时数据`);
    assert.match(await page.locator('#chart-month-noise').textContent(), /限值/);
    await page.screenshot({ path: join(shots, 'console-site-month-zh.png'), fullPage: true });
    await page.click('#lang');
    await page.waitForFunction(() => document.documentElement.lang === 'en' &&
      document.querySelector('#main[data-page="site"][data-ready="1"]'));
    assert.equal(await page.locator('#month-title').textContent(), `Hourly data, ${prevMonth}`);
    assert.equal(await page.locator('#chart-month-pm10[data-drawn="1"]').getAttribute('data-points'), '72');
    assert.match(await page.locator('#chart-month-noise').textContent(), /limit/);
    await page.screenshot({ path: join(shots, 'console-site-month-en.png'), fullPage: true });
    await page.click('#lang');
    await page.waitForFunction(() => document.documentElement.lang === 'zh-CN' &&
      document.querySelector('#main[data-ready="1"]'));
  });

  await step('signing out ends the session', async () => {
    await page.goto(`${url}/`);
    await ready('sites');
    await page.click('#logout');
    await ready('login');
    const code = await page.evaluate(async () => (await fetch('/api/sites')).status);
    assert.equal(code, 401);
  });

  finish();
} finally {
  await close();
}

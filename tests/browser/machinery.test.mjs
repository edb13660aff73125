// The machinery page (机械) in Debian's Chromium, headless, driven by
// playwright-core (tests/integration/test_dashboard_machinery.sh starts the
// demo gateway with deploy/machines-demo.csv and runs this). Every step
// waits on a condition in the page, never on a fixed delay.
//
// env: DASH_URL, DASH_TOKEN, SITECTL (with SITECTL_URL set), SHOTS.
import { shots, step, openBrowser, assertWithinPhone } from './harness.mjs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import assert from 'node:assert/strict';
const url = process.env.DASH_URL;
const token = process.env.DASH_TOKEN;
const sitectl = process.env.SITECTL;
const RIG = '23010100000103'; // stage II, the zone wants III
const PUMP = '23010100000104'; // its engine smokes (sitesim --smoky)
const alarms = () => JSON.parse(execFileSync(sitectl, ['--json', 'alarms'], { encoding: 'utf8' })).alarms;

const { page, finish, close } = await openBrowser();
try {
  const ready = () => page.waitForSelector('#main[data-page="machinery"][data-ready="1"]');

  await step('the machinery page shows the register, who is on site and the breaches', async () => {
    await page.goto(`${url}/#/machinery`);
    await ready();
    assert.equal(await page.locator('#nav a[data-page="machinery"]').textContent(), '机械');
    assert.equal(await page.locator('#mach-registered .v').textContent(), '5');
    assert.ok(Number(await page.locator('#mach-on-site .v').textContent()) >= 4);
    assert.equal(await page.locator('#mach-breaches .v').textContent(), '2');
    const sub = await page.locator('#mach-breaches .sub').textContent();
    assert.ok(sub.includes(RIG) && sub.includes(PUMP), `breaches: ${sub}`);
    // on site now: the two breaking rows are marked, each with its reason
    const rig = page.locator('table.data tr.lv-alarm', { hasText: RIG }).first();
    assert.match(await rig.textContent(), /排放阶段低于限定/);
    const pump = page.locator('table.data tr.lv-alarm', { hasText: PUMP }).first();
    assert.match(await pump.textContent(), /烟度超标/);
    // the pump's terminal: engine hours, fuel and its smoke above the limit
    const smokeCell = pump.locator('td span.lv-alarm', { hasText: 'm⁻¹' });
    assert.equal(await smokeCell.count(), 1, `the pump's smoke is not marked: ${await pump.innerHTML()}`);
    const smoke = await smokeCell.textContent();
    assert.ok(Number(smoke.replace(/[^\d.]/g, '')) > 0.8, `pump smoke "${smoke}"`);
    // time on site today is time gone by today, never the rest of the day
    const api = await (await fetch(`${url}/api/machinery`)).json();
    const [h, m] = new Intl.DateTimeFormat('en-GB', { timeZone: 'Asia/Shanghai', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' })
      .format(new Date()).split(':').map(Number);
    for (const x of api.machines) assert.ok(x.hours_today <= h + m / 60 + 0.05, `${x.code}: ${x.hours_today} h on site by ${h}:${m}`);
    // the rule's alarms, in Chinese sentences
    const text = await page.locator('#main').innerText();
    assert.match(text, /排放阶段低于本区域允许的最低阶段/);
    assert.match(text, /排气烟度 \d+(\.\d)? m⁻¹，限值 0\.8 m⁻¹/);
    await page.screenshot({ path: join(shots, 'machinery-zh.png'), fullPage: true });
  });

  // As test_dashboard's check: no lower-case Latin word of 3+ letters once
  // ids (exc-01), units and the standards' abbreviations are left out.
  await step('the Chinese machinery page is free of raw codes and English', async () => {
    for (const hash of ['#/machinery', `#/machinery?code=${PUMP}`]) {
      await page.goto(`${url}/${hash}`);
      await ready();
      const text = await page.locator('#main').evaluate((m) => m.innerText);
      const words = text.replace(/[A-Za-z0-9]+(?:-[A-Za-z0-9]+)+/g, ' ')
        .replace(/\b(?:kWh|kW|CSV|CO₂|NOx|PM|kg)\b/g, ' ')
        .match(/\b[a-z_]{3,}\b/g) || [];
      assert.deepEqual(words, [], `${hash}: ${[...new Set(words)].join(', ')}`);
    }
  });

  await step('the language switch gives the page in English', async () => {
    await page.goto(`${url}/#/machinery`);
    await ready();
    await page.click('#lang');
    await page.waitForFunction(() => document.documentElement.lang === 'en' &&
      document.querySelector('#main[data-ready="1"]'));
    assert.equal(await page.locator('#nav a[data-page="machinery"]').textContent(), 'Machinery');
    assert.match(await page.locator('#main').innerText(), /its emission stage is below the lowest the zone allows/);
    await page.screenshot({ path: join(shots, 'machinery-en.png'), fullPage: true });
    await page.click('#lang');
    await page.waitForFunction(() => document.documentElement.lang === 'zh-CN');
  });

  await step("a machine's page shows its days, moves and audit", async () => {
    await page.goto(`${url}/#/machinery`);
    await ready();
    await page.click(`a.mach-code[href$="code=${PUMP}"] >> nth=0`);
    await page.waitForSelector('#main[data-ready="1"] a.button[href="#/machinery"]');
    const text = await page.locator('#main').innerText();
    assert.match(text, /每日数据/);
    assert.match(text, /导入/); // the audit: imported from the CSV
    // the audit's register row, in Chinese
    assert.match(await page.locator('table.data').last().innerText(), /国[零一二三四]|电动/);
    assert.match(text, /门禁/); // the gate's entry
    // today's engine hours: the pump works all day, so a number
    const today = page.locator('table.data').first().locator('tbody tr').first();
    assert.match(await today.locator('td').nth(2).textContent(), /\d/);
    await page.screenshot({ path: join(shots, 'machinery-detail.png'), fullPage: true });
  });

  await step("an exit entered in the page clears the rig's stage alarm in sitectl", async () => {
    const before = alarms().find((a) => a.rule === 'machinery.stage' && a.source === RIG);
    assert.ok(before, 'the rig has a machinery.stage alarm');
    await page.goto(`${url}/#/machinery`);
    await ready();
    await page.evaluate(() => localStorage.removeItem('sitegate.token'));
    await page.click(`button[data-leave="${RIG}"]`);
    await page.fill('dialog[open] input[name="reason"]', '桩基完工，退场');
    await page.fill('dialog[open] input[name="by"]', '李工');
    await page.click('dialog[open] button[type="submit"]');
    await page.waitForSelector('dialog[open] input[name="token"]');
    await page.fill('dialog[open] input[name="token"]', token);
    await page.click('dialog[open] button[type="submit"]');
    await page.waitForFunction(() => document.querySelector('#main[data-ready="1"] #mach-breaches .v')?.textContent === '1');
    const after = alarms().find((a) => a.id === before.id);
    assert.ok(!after || after.cleared, `alarm ${before.id} still active`);
    assert.ok(alarms().some((a) => a.rule === 'machinery.smoke' && a.source === PUMP), 'the pump still smokes');
  });

  await step('a bad register CSV is refused line by line in Chinese', async () => {
    await page.goto(`${url}/#/machinery`);
    await ready();
    const said = await page.evaluate(async (tok) => {
      const { refusal } = await import(new URL('util.js', location.href).href);
      const csv = 'code,type,stage,power_kw\nHLJ-0904,loader,III,-5\nHLJ-0905,loader,III,60\nHLJ-0905,loader,III,60\n';
      const r = await fetch('/api/machinery/import', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${tok}` },
        body: JSON.stringify({ csv, by: 'test', reason: 'test' }),
      });
      return refusal(await r.json(), r.status);
    }, token);
    assert.equal(said, '第 2 行：功率应大于 0 且不超过 10000 千瓦\n第 4 行：机械 HLJ-0905 重复列出');
  });

  await step('a phone reaches the machinery page without sideways scrolling', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    for (const hash of ['#/machinery', `#/machinery?code=${PUMP}`]) {
      await page.goto(`${url}/${hash}`);
      await ready();
      await assertWithinPhone(page, hash);
    }
    await page.goto(`${url}/#/machinery`);
    await ready();
    await page.screenshot({ path: join(shots, 'machinery-phone.png'), fullPage: true });
  });

  finish();
} finally {
  await close();
}

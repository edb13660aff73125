// The dashboard in Debian's Chromium, headless, driven by playwright-core
// (tests/integration/test_dashboard.sh starts the gateway and runs this).
// Every step waits on a condition in the page, never on a fixed delay.
//
// env: DASH_URL (http://127.0.0.1:PORT), DASH_TOKEN, SITECTL (path to
// sitectl, with SITECTL_URL set), SHOTS (folder for the screenshots).
import { shots, step, openBrowser, assertWithinPhone } from './harness.mjs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import assert from 'node:assert/strict';
const url = process.env.DASH_URL;
const token = process.env.DASH_TOKEN;
const sitectl = process.env.SITECTL;

const { page, finish, close } = await openBrowser();
try {
  const ready = (name) => page.waitForSelector(`#main[data-page="${name}"][data-ready="1"]`);

  await step('overview shows numbers', async () => {
    await page.goto(`${url}/`);
    await ready('overview');
    for (const id of ['tile-noise', 'tile-dust', 'tile-equipment', 'tile-energy']) {
      const v = await page.locator(`#${id} .big .v`).first().textContent();
      assert.match(v, /\d/, `${id} shows "${v}"`);
    }
    assert.match(await page.locator('#tile-waste .gauge .v').textContent(), /\d+(\.\d)?%/);
    assert.match(await page.locator('#tile-alarms .big .v').textContent(), /^[1-9]\d*$/);
    assert.equal(await page.getAttribute('html', 'lang'), 'zh-CN');
    assert.equal(await page.locator('#nav a[data-page="overview"]').textContent(), '总览');
    await page.screenshot({ path: join(shots, 'overview-zh.png'), fullPage: true });
  });

  await step('the language switch works', async () => {
    await page.click('#lang');
    await page.waitForFunction(() => document.documentElement.lang === 'en' &&
      document.querySelector('#main[data-ready="1"]'));
    assert.equal(await page.locator('#nav a[data-page="overview"]').textContent(), 'Overview');
    assert.equal(await page.locator('#tile-noise h3').textContent(), 'Noise (20-min LAeq)');
    await page.screenshot({ path: join(shots, 'overview-en.png'), fullPage: true });
    await page.click('#lang');
    await page.waitForFunction(() => document.documentElement.lang === 'zh-CN');
    assert.equal(await page.locator('#nav a[data-page="overview"]').textContent(), '总览');
  });

  // test_dashboard.sh had dust-01 send a pack without DTLS: the
  // overview's device table says what was refused and why, from the
  // catalogue, in the page's language (as `sitectl status` does).
  await step('the overview explains each device\'s refusals', async () => {
    const st = await (await fetch(`${url}/api/status`)).json();
    const cat = await (await fetch(`${url}/messages.json`)).json();
    const d = st.devices.find((x) => x.id === 'dust-01');
    const n = d.reject_reasons.needs_dtls;
    assert.ok(n >= 1, `dust-01 refusals: ${JSON.stringify(d.reject_reasons)}`);
    for (const lang of ['zh', 'en']) {
      await page.evaluate((l) => localStorage.setItem('sitegate.lang', l), lang);
      await page.goto(`${url}/#/overview`);
      await page.reload();
      await ready('overview');
      const cell = await page.locator('span.rejects[data-device="dust-01"]').textContent();
      assert.ok(cell.includes(cat[lang].reject_needs_dtls), `${lang}: dust-01 refused "${cell}"`);
      assert.match(cell, new RegExp(`^${n}`), `${lang}: "${cell}" does not start with the count ${n}`);
      if (lang === 'zh') assert.ok(!/[a-z_]{3,}/.test(cell), `raw code in "${cell}"`);
    }
    await page.evaluate(() => localStorage.setItem('sitegate.lang', 'zh'));
    await page.reload();
    await ready('overview');
  });

  // No table says the same thing twice in its header (the ticket table
  // once read "种类 | 种类"), and the paper ticket asks for its date and
  // carrier.
  await step('table headers are distinct and the paper ticket has a date and a carrier', async () => {
    for (const name of ['overview', 'waste', 'materials', 'equipment', 'alarms']) {
      await page.goto(`${url}/#/${name}`);
      await ready(name);
      const heads = await page.locator('table.data').evaluateAll((ts) => ts.map((t) => [...t.querySelectorAll('th')].map((h) => h.textContent).filter((x) => x)));
      for (const h of heads) assert.equal(new Set(h).size, h.length, `${name}: ${h.join(' | ')}`);
    }
    await page.goto(`${url}/#/waste`);
    await ready('waste');
    await page.click('#add-ticket');
    await page.waitForSelector('dialog[open] input[name="when"]');
    assert.equal(await page.locator('dialog[open] input[name="carrier"]').count(), 1);
    await page.click('dialog[open] button[value="cancel"]');
    await page.waitForSelector('dialog[open]', { state: 'detached' });
  });

  // One quantity, one number of decimals, on every page, as sitectl and
  // the report show it: µg/m³ and tonnes to one decimal (limits as set).
  await step('each quantity keeps its decimals across pages', async () => {
    const one = /^(?:[\d,]+\.\d|–)$/;
    await page.goto(`${url}/#/overview`);
    await ready('overview');
    const dust = await page.locator('#tile-dust .big .v').allTextContents();
    assert.ok(dust.length && dust.every((v) => one.test(v)), `overview dust: ${dust}`);
    const tonnes = (await page.locator('#tile-waste dd').allTextContents()).slice(0, 3);
    assert.ok(tonnes.every((v) => one.test(v.replace(/ t$/, ''))), `overview waste: ${tonnes}`);
    await page.goto(`${url}/#/waste`);
    await ready('waste');
    const stats = (await page.locator('.stat .v').allTextContents()).filter((v) => / t$/.test(v));
    assert.ok(stats.length >= 3 && stats.every((v) => one.test(v.replace(/ t$/, ''))), `waste page: ${stats}`);
  });

  for (const [name, what] of [['noise', 'noise'], ['dust', 'dust'], ['waste', 'waste']]) {
    await step(`the ${what} chart draws data points`, async () => {
      await page.goto(`${url}/#/${name}`);
      await ready(name);
      const chart = page.locator('.chart[data-drawn="1"]').first();
      await chart.waitFor();
      const points = Number(await chart.getAttribute('data-points'));
      assert.ok(points > 0, `${name}: ${points} points`);
      // the canvas really has ink on it
      const inked = await chart.evaluate((box) => {
        const c = box.querySelector('canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 3; i < d.length; i += 4) n += d[i] > 0;
        return n;
      });
      assert.ok(inked > 500, `${name}: ${inked} pixels drawn`);
      await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
    });
  }

  await step('acknowledging an alarm in the page shows in sitectl alarms', async () => {
    const before = JSON.parse(execFileSync(sitectl, ['--json', 'alarms'], { encoding: 'utf8' }));
    const target = before.alarms.find((a) => !a.acked);
    assert.ok(target, 'an unacknowledged alarm');
    await page.goto(`${url}/#/alarms`);
    await ready('alarms');
    // a stale token first: the gateway refuses (401) and the page asks again
    await page.evaluate(() => localStorage.setItem('sitegate.token', 'stale-token'));
    await page.click(`button.ack[data-alarm="${target.id}"]`);
    await page.fill('dialog[open] input[name="by"]', '王工');
    await page.fill('dialog[open] input[name="note"]', '已安排洒水车，浏览器测试');
    await page.click('dialog[open] button[type="submit"]');
    await page.waitForSelector('dialog[open] input[name="token"]');
    // the question says the kept token was refused, not just "needs a token"
    assert.match(await page.locator('dialog[open]').innerText(), /令牌被网关拒绝/);
    await page.fill('dialog[open] input[name="token"]', token);
    await page.click('dialog[open] button[type="submit"]');
    await page.waitForSelector(`#main[data-ready="1"] button.ack[data-alarm="${target.id}"]`, { state: 'detached' });
    await ready('alarms');
    await page.screenshot({ path: join(shots, 'alarms.png'), fullPage: true });
    const after = JSON.parse(execFileSync(sitectl, ['--json', 'alarms'], { encoding: 'utf8' }));
    const a = after.alarms.find((x) => x.id === target.id);
    assert.ok(a && a.acked, `alarm ${target.id} acknowledged in sitectl alarms`);
    assert.equal(a.acked_by, '王工');
    assert.equal(a.note, '已安排洒水车，浏览器测试');
  });

  await step('equipment, materials and the report page render', async () => {
    await page.goto(`${url}/#/equipment`);
    await ready('equipment');
    assert.ok(await page.locator('button[data-unit="crane-01"]').count() === 1);
    await page.screenshot({ path: join(shots, 'equipment.png'), fullPage: true });
    await page.goto(`${url}/#/materials`);
    await ready('materials');
    await page.goto(`${url}/#/report`);
    await ready('report');
    const frame = page.frameLocator('#report-frame');
    await frame.locator('h1').waitFor();
    assert.match(await frame.locator('h1').textContent(), /月度工地报告/);
    await page.screenshot({ path: join(shots, 'report.png'), fullPage: false });
  });

  // The report in English is English: its title, sentences and tables.
  await step('the report page follows the language', async () => {
    await page.goto(`${url}/#/report`);
    await ready('report');
    await page.click('#lang');
    await page.waitForFunction(() => document.documentElement.lang === 'en' && document.querySelector('#main[data-ready="1"]'));
    const frame = page.frameLocator('#report-frame');
    await frame.locator('h1').waitFor();
    assert.match(await frame.locator('h1').textContent(), /monthly site report/);
    const heads = await frame.locator('h2, h3, th, p.line').allTextContents();
    const zh = heads.filter((h) => /[\u4e00-\u9fff]/.test(h));
    assert.deepEqual(zh, [], 'Chinese in the English report');
    const links = await page.locator('.csvlinks a').allTextContents();
    assert.ok(links.length > 0 && links.every((l) => !/[\u4e00-\u9fff]/.test(l)), `CSV buttons: ${links}`);
    await page.screenshot({ path: join(shots, 'report-en.png'), fullPage: false });
    await page.click('#lang');
    await page.waitForFunction(() => document.documentElement.lang === 'zh-CN');
  });

  // The site-office screen: full screen, dark, large figures, every panel
  // in both languages, without the header; it reads /api/screen only.
  await step('the site-office screen shows every panel in large type', async () => {
    for (const lang of ['zh', 'en']) {
      await page.evaluate((l) => localStorage.setItem('sitegate.lang', l), lang);
      for (const panel of ['noise', 'dust', 'waste', 'equipment', 'alarms']) {
        await page.goto(`${url}/#/screen?panel=${panel}`);
        await page.reload();
        await ready('screen');
        await page.waitForSelector(`.spanel[data-panel="${panel}"]`);
        assert.equal(await page.locator('#nav').count(), 0, 'no navigation on the screen');
        const text = await page.locator('.spanel').innerText();
        if (panel !== 'alarms') {
          const size = await page.locator('.spanel .sfig .v').first().evaluate((e) => parseFloat(getComputedStyle(e).fontSize));
          assert.ok(size >= 60, `${panel}: figures ${size}px high`);
          assert.match(await page.locator('.spanel .sfig .v').first().textContent(), /\d/, `${panel}: ${text}`);
        }
        const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
        assert.equal(bg, 'rgb(11, 20, 32)');
        if (lang === 'zh') {
          const eq = await (await fetch(`${url}/api/equipment`)).json();
          const own = eq.groups.map((g) => g.name).reduce((x, n) => x.split(n).join(' '), text);
          const words = own.replace(/[A-Za-z0-9]+(?:-[A-Za-z0-9]+)+/g, ' ')
            .replace(/\b(?:kWh|kW|dB|LAeq|Lmax|PM10|CO₂|µg\/m³)\b/g, ' ').match(/\b[a-z_]{3,}\b/g) || [];
          assert.deepEqual(words, [], `screen ${panel} in Chinese: ${text}`);
        } else {
          const title = await page.locator('.spanel h2').textContent();
          assert.ok(!/[\u4e00-\u9fff]/.test(title), `screen ${panel} title in English: ${title}`);
        }
        await page.screenshot({ path: join(shots, `screen-${panel}-${lang}.png`), fullPage: false });
      }
    }
    await page.evaluate(() => localStorage.setItem('sitegate.lang', 'zh'));
    await page.goto(`${url}/#/overview`);
    await page.reload();
    await ready('overview');
    assert.equal(await page.getAttribute('html', 'lang'), 'zh-CN');
  });

  // A Chinese page shows no raw code and no English sentence: what is left
  // after the ids (crane-01, dust-01, plates), units and the standards'
  // own abbreviations is no lower-case Latin word of 3+ letters.
  await step('every Chinese page is free of raw codes and English', async () => {
    // The site's own names for its equipment groups are its configuration.
    const eq = await (await fetch(`${url}/api/equipment`)).json();
    const own = eq.groups.map((g) => g.name);
    for (const name of ['overview', 'noise', 'dust', 'waste', 'materials', 'equipment', 'alarms']) {
      await page.goto(`${url}/#/${name}`);
      await ready(name);
      const text = await page.locator('#main').evaluate((m) => m.innerText);
      const words = own.reduce((x, n) => x.split(n).join(' '), text)
        .replace(/[A-Za-z0-9]+(?:-[A-Za-z0-9]+)+/g, ' ') // device ids: crane-01, em-site
        .replace(/\b(?:kWh|kW|dB|LAeq|Lmax|CSV|CO₂|µg\/m³|ug\/m3)\b/g, ' ')
        .match(/\b[a-z_]{3,}\b/g) || [];
      const where = words.map((w) => text.slice(Math.max(0, text.indexOf(w) - 30), text.indexOf(w) + 30).replace(/\s+/g, ' '));
      assert.deepEqual(words, [], `${name}: ${[...new Set(words)].join(', ')} in: ${where.join(' | ')}`);
    }
  });

  // Every action on every page is reachable at 390 px: nothing is wider
  // than the phone, and each button lies within its width.
  await step('a phone reaches every action without sideways scrolling', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    for (const name of ['alarms', 'equipment', 'waste', 'materials', 'report', 'screen']) {
      await page.goto(`${url}/#/${name}`);
      await ready(name);
      await assertWithinPhone(page, name);
      // (the screen sizes itself to the viewport: a full-page shot would chase it)
      await page.screenshot({ path: join(shots, `${name}-phone.png`), fullPage: name !== 'screen' });
    }
  });

  await step('a phone sees the overview in one column', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(`${url}/#/overview`);
    await ready('overview');
    const widths = await page.locator('.tile').evaluateAll((ts) => ts.map((t) => t.getBoundingClientRect().width));
    assert.ok(widths.every((w) => w > 300 && w <= 390), `tile widths ${widths}`);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page is ${overflow}px wider than the phone`);
    await page.screenshot({ path: join(shots, 'overview-phone.png'), fullPage: true });
  });

  finish();
} finally {
  await close();
}

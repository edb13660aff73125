// The noise and dust pages: windows as the rules judge them (the API
// computes them from stored samples with the rule engine's functions),
// a chart with the limit lines and the table behind it.
import { t, tname } from './i18n.js';
import { api, el, num, pct, fmtTime, levelClass, table, choice, section } from './util.js';
import { timeChart, colors, limitColors } from './charts.js';

const RANGES = [['6', 'h6'], ['24', 'h24'], ['48', 'h48']];

function setParam(params, k, v) {
  params.set(k, v);
  location.hash = `#/${location.hash.replace(/^#\/?/, '').split('?')[0]}?${params}`;
}

function rangeChoice(params, def = '24') {
  const h = RANGES.some(([v]) => v === params.get('h')) ? params.get('h') : def;
  return [h, el('label', { class: 'ctl' }, el('span', {}, t('range')),
    choice(RANGES.map(([v, k]) => [v, t(k)]), h, (v) => setParam(params, 'h', v)))];
}

// A limit over each window: at its start and its end, so that one window
// alone already draws a line (a single point draws nothing).
function spans(windows, value) {
  const m = new Map();
  for (const w of windows) {
    const v = value(w);
    if (!m.has(w.start)) m.set(w.start, v);
    m.set(w.end, v);
  }
  return m;
}

// Merges per-series {x: y} maps into uPlot's aligned arrays.
function align(maps) {
  const xs = [...new Set(maps.flatMap((m) => [...m.keys()]))].sort((a, b) => a - b);
  return [xs, maps.map((m) => xs.map((x) => (m.has(x) ? m.get(x) : null)))];
}

export async function noisePage(main, params) {
  const [h, rangeCtl] = rangeChoice(params);
  const now = Date.now() / 1000;
  const j = await api(`/api/noise?since=${Math.floor(now - h * 3600)}`);
  const devices = [...new Set(j.windows.map((w) => w.device))];
  const maps = [];
  const series = [];
  devices.forEach((d, i) => {
    const mine = j.windows.filter((w) => w.device === d);
    maps.push(new Map(mine.map((w) => [w.end, w.laeq])));
    series.push({ label: `${d} LAeq`, color: colors[i % colors.length] });
    maps.push(new Map(mine.filter((w) => w.period === 'night' && w.lmax !== null).map((w) => [w.end, w.lmax])));
    series.push({ label: `${d} ${t('lmax')}（${t('period_night')}）`, color: colors[(i + 3) % colors.length], noLine: true, pointSize: 6 });
  });
  maps.push(spans(j.windows, (w) => w.limit));
  series.push({ label: t('limit'), color: limitColors.limit, dash: [6, 4], step: true, isLimit: true, points: false });
  maps.push(spans(j.windows, (w) => (w.period === 'night' ? w.lmax_limit : null)));
  series.push({ label: `${t('lmax')} ${t('limit')}`, color: limitColors.warn, dash: [2, 3], step: true, isLimit: true, points: false });
  const [xs, vals] = align(maps);
  series.forEach((s, i) => { s.values = vals[i]; });
  const r = j.rules;
  const rows = [...j.windows].sort((a, b) => b.end - a.end).map((w) => ({
    ...w,
    _class: w.exceeded ? 'lv-alarm' : null,
  }));
  const verdict = (w) => (w.exceeded === null ? t('incomplete') : w.exceeded ? t('exceeded') : t('ok'));
  main.replaceChildren(
    el('div', { class: 'controls' }, rangeCtl),
    section(t('noise_chart'),
      el('p', { class: 'muted small' }, t('noise_rules', { day: r.day_limit, night: r.night_limit, margin: r.lmax_margin })),
      timeChart(xs, series, { unit: 'dB(A)', xRange: [now - h * 3600, now] })),
    section(t('windows'), table([
      { key: 'device', label: t('device') },
      { key: 'start', label: t('start'), fmt: (w) => fmtTime(w.start), csv: (w) => fmtTime(w.start) },
      { key: 'end', label: t('end'), fmt: (w) => fmtTime(w.end), csv: (w) => fmtTime(w.end) },
      { key: 'period', label: t('period'), fmt: (w) => t(`period_${w.period}`) },
      { key: 'laeq', label: 'LAeq dB(A)', num: true, fmt: (w) => num(w.laeq, 1) },
      { key: 'lmax', label: 'Lmax dB(A)', num: true, fmt: (w) => num(w.lmax, 1) },
      { key: 'limit', label: t('limit'), num: true, fmt: (w) => num(w.limit, 0) },
      { key: 'coverage', label: t('coverage'), num: true, fmt: (w) => pct(w.coverage, 0) },
      { key: 'verdict', label: t('verdict'), fmt: verdict, csv: (w) => (w.exceeded === null ? 'incomplete' : w.exceeded ? 'exceeded' : 'compliant') },
    ], rows, `noise-windows-${h}h`)));
  return 120;
}

export async function dustPage(main, params) {
  const [h, rangeCtl] = rangeChoice(params);
  const win = params.get('w') === 'short' ? 'short' : 'long'; // the levels are on the hourly mean
  const now = Date.now() / 1000;
  const j = await api(`/api/dust?window=${win}&since=${Math.floor(now - h * 3600)}`);
  const devices = [...new Set(j.windows.map((w) => w.device))];
  const maps = [];
  const series = [];
  let ci = 0;
  for (const q of ['pm10', 'pm2_5']) {
    for (const d of devices) {
      const mine = j.windows.filter((w) => w.device === d && w.quantity === q);
      maps.push(new Map(mine.map((w) => [w.end, w.mean])));
      series.push({ label: `${d} ${q === 'pm10' ? 'PM10' : 'PM2.5'}`, color: colors[ci++ % colors.length], dash: q === 'pm2_5' ? [1, 0] : undefined });
    }
  }
  const pm10 = j.windows.filter((w) => w.quantity === 'pm10');
  for (const [k, label] of [['warn', t('warn')], ['alarm', t('alarm')]]) {
    if (pm10.some((w) => w[k])) {
      maps.push(spans(pm10, (w) => w[k]));
      series.push({ label: `PM10 ${label}`, color: limitColors[k], dash: [6, 4], isLimit: true, points: false, step: true });
    }
  }
  const [xs, vals] = align(maps);
  series.forEach((s, i) => { s.values = vals[i]; });
  const rows = [...j.windows].sort((a, b) => b.end - a.end || a.device.localeCompare(b.device)).map((w) => ({
    ...w, _class: w.level === 'alarm' ? 'lv-alarm' : w.level === 'warning' ? 'lv-warning' : null,
  }));
  main.replaceChildren(
    el('div', { class: 'controls' }, rangeCtl,
      el('label', { class: 'ctl' }, el('span', {}, t('window')),
        choice([['short', t('w15m')], ['long', t('w1h')]], win, (v) => setParam(params, 'w', v)))),
    section(t('dust_chart'), timeChart(xs, series, { unit: 'µg/m³', xRange: [now - h * 3600, now] })),
    section(t('windows'), table([
      { key: 'device', label: t('device') },
      { key: 'quantity', label: t('quantity'), fmt: (w) => tname('q', w.quantity) },
      { key: 'start', label: t('start'), fmt: (w) => fmtTime(w.start), csv: (w) => fmtTime(w.start) },
      { key: 'end', label: t('end'), fmt: (w) => fmtTime(w.end), csv: (w) => fmtTime(w.end) },
      { key: 'mean', label: `${t('mean')} µg/m³`, num: true, fmt: (w) => num(w.mean, 1) },
      { key: 'max', label: `${t('max')} µg/m³`, num: true, fmt: (w) => num(w.max, 1) },
      { key: 'samples', label: t('samples'), num: true },
      { key: 'unreliable', label: t('unreliable'), num: true },
      { key: 'coverage', label: t('coverage'), num: true, fmt: (w) => pct(w.coverage, 0) },
      { key: 'level', label: t('level'), fmt: (w) => (w.level ? el('span', { class: levelClass(w.level) }, t(`level_${w.level}`)) : '–'), csv: (w) => w.level || '' },
    ], rows, `dust-${win}-${h}h`)));
  return 120;
}

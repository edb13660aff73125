// Time charts with uPlot (npm, copied into vendor/ by the build). Each
// chart's box carries data-points: the number of data points drawn, which
// the browser test reads.
import uPlot from './vendor/uPlot.esm.js';
import { site, el, fmtTime, fmtClock } from './util.js';
import { t } from './i18n.js';

export const colors = ['#1f6fb2', '#d9822b', '#2e9e5b', '#8e44ad', '#c0392b', '#16a085', '#7f8c8d'];
export const limitColors = { warn: '#e6a700', alarm: '#d0342c', limit: '#d0342c' };

const live = new Set();
const ro = new ResizeObserver((entries) => {
  for (const e of entries) {
    const u = e.target._uplot;
    if (u) u.setSize({ width: Math.max(280, e.contentRect.width), height: u.height });
  }
});

// Frees the charts of a page that is being replaced.
export function disposeCharts() {
  for (const u of live) { ro.unobserve(u.root.parentElement); u.destroy(); }
  live.clear();
}

// series: [{label, values, color, dash, points: true|false, step: true, width}]
// xs: Unix seconds. Returns the box element.
export function timeChart(xs, series, { unit = '', height = 300, title, xRange } = {}) {
  const box = el('div', { class: 'chart', 'data-points': '0' });
  const data = [xs, ...series.map((s) => s.values)];
  let points = 0;
  for (const s of series) if (!s.isLimit) for (const v of s.values) points += v !== null && v !== undefined && Number.isFinite(v);
  box.dataset.points = String(points);
  if (!xs.length) {
    box.append(el('p', { class: 'empty' }, t('no_data')));
    return box;
  }
  const opts = {
    title,
    width: 600,
    height,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), site.tz),
    // a fixed span (the chosen range): one window alone still sits in time
    scales: { x: xRange ? { time: true, range: () => xRange } : { time: true } },
    // 24-hour clock in the site's zone; the date where a day begins
    axes: [{
      values: (u, splits) => splits.map((s, i) => {
        const d = fmtTime(s).slice(5, 10);
        return i === 0 || fmtTime(splits[i - 1]).slice(5, 10) !== d ? `${fmtClock(s)}\n${d}` : fmtClock(s);
      }),
    }, { label: unit, size: 60 }],
    legend: { live: true },
    // the x series: its legend entry in the page's words and the site's time
    series: [{ label: t('time'), value: (u, v) => (v === null || v === undefined ? '–' : fmtTime(v)) }, ...series.map((s, i) => ({
      label: s.label,
      stroke: s.color || colors[i % colors.length],
      width: s.width || (s.isLimit ? 1.5 : 2),
      dash: s.dash,
      spanGaps: false,
      paths: s.step ? uPlot.paths.stepped({ align: 1 }) : s.noLine ? () => null : undefined,
      points: { show: s.points ?? !s.isLimit, size: s.pointSize || 5, fill: s.color || colors[i % colors.length] },
      value: (u, v) => (v === null || v === undefined ? '–' : `${v.toFixed(1)} ${unit}`),
    }))],
  };
  // uPlot needs the box in the document to measure; draw on the next frame.
  requestAnimationFrame(() => {
    if (!box.isConnected) return;
    opts.width = Math.max(280, box.clientWidth || 600);
    const u = new uPlot(opts, data, box);
    box._uplot = u;
    live.add(u);
    ro.observe(box);
    box.dataset.drawn = '1';
  });
  return box;
}

// Construction waste and materials: the allowance, the cumulative discharge
// with its projection, categories and destinations, the ticket ledger, the
// printable public-disclosure notice, material loss rates and progress.
import { t, tname } from './i18n.js';
import { api, act, el, num, pct, fmtTime, siteMonth, table, section, dialog, toast, site } from './util.js';
import { timeChart, limitColors } from './charts.js';

const TICKETS_SHOWN = 300;
const CATS = ['engineering', 'demolition', 'decoration', 'spoil', 'mud'];
const DESTS = ['reuse_onsite', 'recycling', 'backfill', 'disposal'];
const KINDS = ['mixed', 'concrete', 'mortar', 'brick_tile', 'metal', 'wood', 'plastic', 'glass', 'gypsum', 'packaging'];

// What the projection's rate was computed from, stated beside it.
function basis(p) {
  if (p.method !== 'recent_rate') return t('proj_average');
  return t('proj_basis', { days: p.window_days, n: p.window_tickets, t: num(p.window_discharged_t, 1) });
}

// A Date as a datetime-local input's value (local time, minutes).
function localInput(d) {
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

function stat(label, value, sub, cls) {
  return el('div', { class: `stat ${cls || ''}` }, el('span', { class: 'l' }, label), el('span', { class: 'v' }, value), sub ? el('span', { class: 'sub' }, sub) : null);
}

async function addTicket() {
  const v = await dialog(t('add_ticket'), [
    { name: 'category', label: t('category'), options: CATS.map((c) => [c, tname('cat', c)]) },
    { name: 'kind', label: t('kind'), options: KINDS.map((k) => [k, tname('kind', k)]), value: 'mixed' },
    { name: 'dest', label: t('dest'), options: DESTS.map((d) => [d, tname('dest', d)]) },
    { name: 'net_t', label: t('net_t'), type: 'number', step: '0.01', required: true },
    { name: 'when', label: t('ticket_time'), type: 'datetime-local', value: localInput(new Date()), required: true },
    { name: 'plate', label: t('plate') },
    { name: 'carrier', label: t('carrier') },
    { name: 'dest_name', label: t('dest_name') },
    { name: 'note', label: t('note'), required: true },
  ]);
  if (!v) return;
  // The paper ticket's own time, read in this browser's zone (the site's).
  const body = { t: Math.round(new Date(v.when).getTime() / 1000), dir: 'out', category: v.category, dest: v.dest, net_kg: Math.round(Number(v.net_t) * 1000), note: v.note };
  for (const k of ['kind', 'plate', 'carrier', 'dest_name']) if (v[k]) body[k] = v[k];
  try {
    const r = await act('/api/waste/tickets', 'POST', body);
    toast(`${t('ticket_added')}: #${r.id}`);
    window.dispatchEvent(new HashChangeEvent('hashchange'));
  } catch (e) { toast(e.message, true); }
}

// The public notice, in its own window, ready to print.
async function disclosure(month) {
  const d = await api(`/api/waste/disclosure?month=${month}`);
  const w = window.open('', '_blank');
  if (!w) return;
  const rows = CATS.map((c) => `<tr><td>${tname('cat', c)}</td>${DESTS.map((k) => `<td>${num(d.by_category[c][`${k}_t`], 1)}</td>`).join('')}<td>${num(d.by_category[c].total_t, 1)}</td></tr>`).join('');
  const names = (list) => list.map((x) => `<tr><td>${esc(x.name)}</td><td>${num(x.t, 1)}</td><td>${x.trips}</td></tr>`).join('');
  w.document.write(`<!doctype html><html lang="zh-CN"><meta charset="utf-8"><title>${t('disclosure_title')} ${d.month}</title>
<style>body{font-family:"Noto Sans CJK SC","WenQuanYi Zen Hei",sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #444;padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}</style>
<h1>${t('disclosure_title')}（${d.month}）</h1><p>${esc(d.site.name)}（${esc(d.site.id)}）</p>
<table><tr><th>${t('category')}</th>${DESTS.map((k) => `<th>${tname('dest', k)}</th>`).join('')}<th>${t('total')}</th></tr>${rows}</table>
<p>${t('generated')} ${num(d.generated_t, 1)} t · ${t('discharged')} ${num(d.discharged_t, 1)} t · ${t('utilisation')} ${pct(d.utilisation_rate)}</p>
<h2>${t('carriers')}</h2><table><tr><th>${t('carriers')}</th><th>t</th><th>${t('trips')}</th></tr>${names(d.carriers)}</table>
<h2>${t('facilities')}</h2><table><tr><th>${t('facilities')}</th><th>t</th><th>${t('trips')}</th></tr>${names(d.facilities)}</table>
<p>${t('discharged')} ${num(d.to_date.discharged_t, 1)} / ${t('allowance')} ${num(d.to_date.allowance_t, 1)} t（${pct(d.to_date.allowance_used)}）· ${t('intensity')} ${num(d.to_date.intensity_t_per_10k_m2, 1)} / ${num(d.to_date.limit_t_per_10k_m2, 1)} ${t('unit_t_10k')}</p>
<p><small>${t('disclosure_note')}</small></p></html>`);
  w.document.close();
  w.focus();
}

function esc(s) {
  return String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c]));
}

export async function wastePage(main) {
  const [s, tk] = await Promise.all([api('/api/waste/summary'), api('/api/waste/tickets?limit=100000')]);
  // cumulative discharge, ticket by ticket (reversals are negative)
  const xs = [];
  const cum = [];
  let sum = 0;
  for (const x of [...tk.tickets].filter((x) => x.discharged).sort((a, b) => a.t - b.t)) {
    sum += x.net_t;
    if (xs.length && xs[xs.length - 1] === x.t) cum[cum.length - 1] = sum;
    else { xs.push(x.t); cum.push(Math.round(sum * 1000) / 1000); }
  }
  const series = [
    { label: t('discharged'), values: cum, points: false },
    { label: t('allowance'), values: xs.map(() => s.allowance_t), color: limitColors.alarm, dash: [6, 4], isLimit: true, points: false },
    { label: t('projected'), values: xs.map(() => s.projected_t), color: limitColors.warn, dash: [2, 3], isLimit: true, points: false },
  ];
  const cats = CATS.map((c) => ({ cat: c, ...s.by_category[c] }));
  const recent = [...tk.tickets].sort((a, b) => b.t - a.t || b.id - a.id).slice(0, TICKETS_SHOWN);
  const over = s.projected_t > s.allowance_t;
  const month = siteMonth(Date.now() / 1000);
  main.replaceChildren(
    el('div', { class: 'stats' },
      stat(t('discharged'), `${num(s.discharged_t, 1)} t`, `${pct(s.allowance_used)} ${t('used')}`),
      stat(t('allowance'), `${num(s.allowance_t, 1)} t`, `${num(s.limit_t_per_10k_m2, 1)} ${t('unit_t_10k')}`),
      stat(t('projected'), `${num(s.projected_t, 1)} t`, `${t('progress')} ${pct(s.projection.progress, 0)} · ${basis(s.projection)}`, over ? 'lv-alarm' : ''),
      stat(t('intensity'), `${num(s.intensity_t_per_10k_m2, 1)}`, t('unit_t_10k')),
      stat(t('utilisation'), pct(s.utilisation_rate), `${t('target')} ${pct(s.utilisation_target, 0)}`, s.utilisation_rate < s.utilisation_target ? 'lv-warning' : ''),
      stat(t('excluded'), `${num(s.excluded_t, 1)} t`, `${t('hazardous')} ${num(s.hazardous_t, 1)} t`)),
    el('div', { class: 'controls' },
      el('button', { type: 'button', class: 'primary', id: 'add-ticket', onclick: addTicket }, t('add_ticket')),
      el('button', { type: 'button', onclick: () => disclosure(month) }, `${t('disclosure')}（${month}）`),
      el('a', { class: 'button', href: '/api/waste/tickets?format=csv&limit=100000', download: `tickets-${site.id}.csv` }, `${t('tickets')} CSV`)),
    section(t('waste_chart'), timeChart(xs, series, { unit: 't' })),
    section(t('by_category'), table([
      { key: 'cat', label: t('category'), fmt: (r) => tname('cat', r.cat) },
      ...DESTS.map((d) => ({ key: `${d}_t`, label: tname('dest', d), num: true, fmt: (r) => num(r[`${d}_t`], 1) })),
      { key: 'total_t', label: t('total'), num: true, fmt: (r) => num(r.total_t, 1) },
      { key: 'excluded', label: t('counted'), fmt: (r) => (r.excluded ? '✗' : '✓'), csv: (r) => (r.excluded ? 0 : 1) },
    ], cats, 'waste-by-category')),
    section(`${t('tickets')}（${recent.length} / ${s.entries} ${t('entries')}）`, table([
      { key: 'id', label: '#', num: true },
      { key: 't', label: t('time'), fmt: (r) => fmtTime(r.t), csv: (r) => fmtTime(r.t) },
      { key: 'type', label: t('category'), fmt: (r) => (r.type === 'waste' ? tname('cat', r.category) : tname('mat', r.material || r.type)) },
      { key: 'kind', label: t('kind'), fmt: (r) => (r.kind ? tname('kind', r.kind) : '–') },
      { key: 'dest', label: t('dest'), fmt: (r) => (r.dest ? tname('dest', r.dest) : '–') },
      { key: 'dest_name', label: t('dest_name') },
      { key: 'plate', label: t('plate') },
      { key: 'net_t', label: t('net_t'), num: true, fmt: (r) => num(r.net_t, 2) },
      { key: 'source', label: t('source'), fmt: (r) => tname('src', r.source) },
      { key: 'note', label: t('note') },
    ], recent, 'waste-tickets')));
  return 120;
}

export async function materialsPage(main) {
  const [m, p] = await Promise.all([api('/api/materials/summary'), api('/api/site/progress')]);
  const setProgress = async () => {
    const v = await dialog(t('set_progress'), [{ name: 'p', label: `${t('progress')} (0–100 %)`, type: 'number', step: '1', value: Math.round(p.progress * 100), required: true }]);
    if (!v) return;
    try {
      await act('/api/site/progress', 'PUT', { progress: Number(v.p) / 100 });
      toast(t('progress_saved'));
      window.dispatchEvent(new HashChangeEvent('hashchange'));
    } catch (e) { toast(e.message, true); }
  };
  const rows = m.materials.map((x) => ({ ...x, _class: x.status === 'over_baseline' ? 'lv-alarm' : x.status === 'over_target' ? 'lv-warning' : null }));
  main.replaceChildren(
    el('div', { class: 'stats' },
      stat(t('progress'), pct(p.progress, 0), p.set ? fmtTime(p.set) : ''),
      stat(t('delivered'), `${num(m.delivered_t, 1)} t`),
      stat(t('green_share'), pct(m.green_share))),
    el('div', { class: 'controls' }, el('button', { type: 'button', class: 'primary', id: 'set-progress', onclick: setProgress }, t('set_progress'))),
    section(t('nav_materials'), table([
      { key: 'material', label: t('material'), fmt: (r) => tname('mat', r.material) },
      { key: 'delivered_t', label: `${t('delivered')} t`, num: true, fmt: (r) => num(r.delivered_t, 1) },
      { key: 'returned_t', label: `${t('returned')} t`, num: true, fmt: (r) => num(r.returned_t, 1) },
      { key: 'design_t', label: `${t('design')} t`, num: true, fmt: (r) => num(r.design_t, 1) },
      { key: 'loss_rate_to_date', label: t('loss_rate'), num: true, fmt: (r) => pct(r.loss_rate_to_date ?? r.loss_rate, 2) },
      { key: 'target_rate', label: t('target'), num: true, fmt: (r) => pct(r.target_rate, 2) },
      { key: 'baseline_rate', label: t('baseline'), num: true, fmt: (r) => pct(r.baseline_rate, 2) },
      { key: 'green_share', label: t('green_share'), num: true, fmt: (r) => pct(r.green_share, 1) },
      { key: 'status', label: t('status'), fmt: (r) => tname('st', r.status) },
    ], rows, 'materials')),
    section(`${t('progress')}`, table([
      { key: 't', label: t('time'), fmt: (r) => fmtTime(r.t), csv: (r) => fmtTime(r.t) },
      { key: 'progress', label: t('progress'), num: true, fmt: (r) => pct(r.progress, 0) },
    ], [...p.history].reverse(), 'progress')));
  return 300;
}

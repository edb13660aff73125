// The site-office screen (大屏): full screen, dark, large type, for the TV
// in the site office, read from across the room. It cycles through noise,
// dust, waste, equipment and alarms, one panel at a time, and reads only
// /api/screen, the public figures that need no token from any address
// (protocol/HTTP.md). Read-only: no button acts on the site.
import { t, tname, ruleName, alarmText } from './i18n.js';
import { api, el, num, pct, fmtClock, levelClass } from './util.js';

const PANELS = ['noise', 'dust', 'waste', 'equipment', 'alarms'];
const CYCLE_S = 12;   // one panel's time on screen
const REFRESH_S = 30; // new figures
let shown = 0;        // the panel on screen, kept across refreshes

function figure(value, unit, lv) {
  return el('div', { class: `sfig ${levelClass(lv)}` }, el('span', { class: 'v' }, value), el('span', { class: 'u' }, unit));
}

function row(name, fig, sub) {
  return el('div', { class: 'srow' }, el('div', { class: 'sname' }, name), fig, el('div', { class: 'ssub' }, sub));
}

function noisePanel(s) {
  const rows = s.noise.sliding.map((w) => {
    const lv = w.laeq === null ? null : w.laeq > w.limit ? 'alarm' : w.laeq > w.limit - 3 ? 'warning' : 'normal';
    return row(w.device, figure(num(w.laeq, 1), 'dB(A)', lv),
      `${t(`period_${w.period}`)} · ${t('limit')} ${num(w.limit, 0)} dB(A)`);
  });
  const exceeded = s.noise.windows.filter((w) => w.exceeded === true).length;
  return [t('ov_noise'), rows, t('screen_noise_24h', { n: exceeded })];
}

function dustPanel(s) {
  const last = new Map();
  for (const w of s.dust.windows) if (w.quantity === 'pm10' && w.mean !== null) last.set(w.device, w);
  const rows = [...last.values()].map((w) => row(w.device, figure(num(w.mean, 1), 'µg/m³', w.level),
    `${t('hour_mean')} · ${t('warn')} ${num(w.warn, 0)} · ${t('alarm')} ${num(w.alarm, 0)}`));
  return [t('ov_dust'), rows, ''];
}

function wastePanel(s) {
  const w = s.waste;
  const lv = w.allowance_used >= w.alarm_share ? 'alarm' : w.allowance_used >= w.alarm_warn_share ? 'warning' : 'normal';
  return [t('ov_waste'), [
    row(t('discharged'), figure(num(w.discharged_t, 1), t('screen_t'), lv), `${t('used')} ${pct(w.allowance_used)} · ${t('allowance')} ${num(w.allowance_t, 1)} ${t('screen_t')}`),
    row(t('projected'), figure(num(w.projected_t, 1), t('screen_t'), w.projected_t > w.allowance_t ? 'alarm' : 'normal'), ''),
    row(t('utilisation'), figure(pct(w.utilisation_rate), '', 'normal'), `${t('target')} ${pct(w.utilisation_target, 0)}`),
  ], ''];
}

function equipmentPanel(s) {
  const rows = s.equipment.groups.map((g) => {
    const lv = g.cap_kw > 0 && g.power_kw > g.cap_kw ? 'alarm' : g.cap_kw > 0 && g.power_kw > 0.9 * g.cap_kw ? 'warning' : 'normal';
    const running = s.equipment.units.filter((u) => u.group === g.name && u.state === 'running').length;
    const all = s.equipment.units.filter((u) => u.group === g.name).length;
    return row(g.name, figure(num(g.power_kw, 1), 'kW', lv),
      `${g.cap_kw > 0 ? `${t('cap')} ${num(g.cap_kw, 0)} kW` : t('no_cap')} · ${t('units_running')} ${running}/${all}`);
  });
  return [t('ov_equipment'), rows, ''];
}

function alarmsPanel(s) {
  const rows = s.alarms.slice(0, 6).map((a) => row(ruleName(a.rule),
    el('div', { class: `sfig small ${levelClass(a.level)}` }, el('span', { class: 'v' }, tname('level', a.level))),
    `${fmtClock(a.raised)} · ${alarmText(a)}`));
  return [t('ov_alarms'), rows.length ? rows : [el('div', { class: 'sok' }, t('no_alarms'))],
    s.alarms.length > 6 ? t('screen_more', { n: s.alarms.length - 6 }) : ''];
}

const makers = { noise: noisePanel, dust: dustPanel, waste: wastePanel, equipment: equipmentPanel, alarms: alarmsPanel };

export async function screenPage(main, params, stale) {
  const s = await api('/api/screen');
  document.body.classList.add('screen');
  const only = PANELS.includes(params.get('panel')) ? params.get('panel') : null;
  const head = el('div', { class: 'shead' },
    el('div', { class: 'stitle' }, s.site.name),
    el('div', { class: 'sclock', id: 'screen-clock' }, fmtClock(s.now)),
    el('button', { type: 'button', class: 'sfull', onclick: () => document.documentElement.requestFullscreen?.() }, t('screen_full')));
  const body = el('section', { class: 'spanel' });
  const dots = el('div', { class: 'sdots' }, PANELS.map((p) => el('span', { 'data-panel': p }, t(`screen_tab_${p}`))));
  const foot = el('div', { class: 'sfoot' }, `${t('devices_online')} ${s.devices_online}/${s.devices_total}`);
  const show = () => {
    const name = only || PANELS[shown % PANELS.length];
    const [title, rows, note] = makers[name](s);
    body.dataset.panel = name;
    body.replaceChildren(el('h2', {}, title), ...(rows.length ? rows : [el('div', { class: 'sok' }, t('no_data'))]),
      note ? el('p', { class: 'snote' }, note) : '');
    for (const d of dots.children) d.classList.toggle('on', d.dataset.panel === name);
  };
  show();
  main.replaceChildren(el('div', { class: 'sframe' }, head, body, dots, foot));
  const cycle = setInterval(() => {
    if (stale()) { clearInterval(cycle); return; }
    shown++;
    show();
  }, CYCLE_S * 1000);
  return REFRESH_S;
}

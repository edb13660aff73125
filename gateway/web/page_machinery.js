// Non-road mobile machinery (非道路移动机械, issue 17): the zone's rule,
// the machines on site now with today's engine hours, fuel and smoke, the
// rule's active alarms, the register with entry and exit by hand, and one
// machine's days, moves and audit trail (#/machinery?code=CODE). Its own
// file, so the shared ones (app.js, util.js) only gain a route.
import { t, tname, ruleName, alarmText } from './i18n.js';
import { api, act, el, num, fmtTime, levelClass, table, section, dialog, toast } from './util.js';

const STAGES = ['0', 'I', 'II', 'III', 'IV', 'electric'];
const FUELS = ['diesel', 'petrol', 'electric'];
const reload = () => window.dispatchEvent(new HashChangeEvent('hashchange'));

function stat(label, value, sub, cls, id) {
  return el('div', { class: `stat ${cls || ''}`, id }, el('span', { class: 'l' }, label), el('span', { class: 'v' }, value), sub ? el('span', { class: 'sub' }, sub) : null);
}

const stage = (s) => (s === null || s === undefined ? '–' : tname('mach_stage', s));
const opacity = (m, limit) => (m.opacity === null || m.opacity === undefined ? '–'
  : el('span', { class: limit > 0 && m.opacity > limit ? 'lv-alarm' : null }, `${num(m.opacity, 2)} m⁻¹`));

// What a machine breaks now, in words (the API gives rule names).
function breaches(m) {
  if (!m.on_site) return t('mach_off_site');
  if (m.compliant) return el('span', { class: 'badge lv-normal' }, t('mach_compliant'));
  return el('span', { class: 'badge lv-alarm' }, m.reasons.map((r) => tname('mach_why', r)).join('；'));
}

async function move(m, dir) {
  const v = await dialog(`${t(dir === 'enter' ? 'mach_enter' : 'mach_leave')}: ${m.code}`, [
    { name: 'reason', label: t('reason'), required: true },
    { name: 'by', label: t('by'), value: localStorage.getItem('sitegate.by') || '' },
  ]);
  if (!v) return;
  if (v.by) localStorage.setItem('sitegate.by', v.by);
  try {
    await act(`/api/machinery/${encodeURIComponent(m.code)}/${dir}`, 'POST', { by: v.by || 'dashboard', reason: v.reason });
    toast(t('mach_saved'));
    reload();
  } catch (e) { toast(e.message, true); }
}

async function addMachine() {
  const v = await dialog(t('mach_add'), [
    { name: 'code', label: t('mach_code'), required: true },
    { name: 'type', label: t('mach_type'), required: true },
    { name: 'stage', label: t('mach_stage'), options: STAGES.map((s) => [s, tname('mach_stage', s)]), value: 'III' },
    { name: 'power_kw', label: `${t('mach_power')} kW`, type: 'number', step: '0.1', required: true },
    { name: 'fuel', label: t('mach_fuel'), options: FUELS.map((f) => [f, tname('mach_fuel', f)]) },
    { name: 'owner', label: t('mach_owner') },
    { name: 'terminal', label: t('mach_terminal') },
    { name: 'reason', label: t('reason'), value: t('mach_added_reason'), required: true },
    { name: 'by', label: t('by'), value: localStorage.getItem('sitegate.by') || '' },
  ]);
  if (!v) return;
  const body = { code: v.code.trim(), type: v.type, stage: v.stage, power_kw: Number(v.power_kw), fuel: v.stage === 'electric' ? 'electric' : v.fuel, reason: v.reason, by: v.by || 'dashboard' };
  for (const k of ['owner', 'terminal']) if (v[k]) body[k] = v[k];
  try {
    await act('/api/machinery', 'POST', body);
    toast(`${t('mach_saved')}: ${body.code}`);
    reload();
  } catch (e) { toast(e.message, true); }
}

// An audit row's register fields after the change, in the reader's language.
function registeredAs(r) {
  const m = r.machine;
  if (!m) return '–';
  return [m.type, stage(m.stage), `${num(m.power_kw, 0)} kW`, tname('mach_fuel', m.fuel), m.owner,
    m.label && `${t('mach_label')} ${tname('mach_label', m.label)}`, m.terminal && `${t('mach_terminal')} ${m.terminal}`]
    .filter((x) => x).join(' · ');
}

function codeLink(m) {
  return el('a', { href: `#/machinery?code=${encodeURIComponent(m.code)}`, class: 'mach-code' }, m.code);
}

async function detail(main, code) {
  const m = await api(`/api/machinery/${encodeURIComponent(code)}?days=7`);
  main.replaceChildren(
    el('div', { class: 'controls' }, el('a', { class: 'button', href: '#/machinery' }, `← ${t('nav_machinery')}`),
      el('strong', { id: 'mach-code' }, `${t('mach_code')} ${m.code}`)),
    el('div', { class: 'stats' },
      stat(t('mach_type'), m.type || t('mach_unregistered'), m.owner || ''),
      stat(t('mach_stage'), stage(m.stage), m.power_kw ? `${num(m.power_kw, 0)} kW · ${tname('mach_fuel', m.fuel)}` : ''),
      stat(t('mach_on_site'), m.on_site ? t('mach_yes') : t('mach_no'), m.last_move ? `${t(m.last_move.in ? 'mach_in' : 'mach_out')} ${fmtTime(m.last_move.t)}` : ''),
      stat(t('mach_rule'), m.compliant ? t('mach_compliant') : t('mach_breach'), null, m.compliant ? '' : 'lv-alarm')),
    section(t('mach_days'), table([
      { key: 'date', label: t('mach_date') },
      { key: 'onsite_h', label: t('mach_onsite_h'), num: true, fmt: (d) => num(d.onsite_h, 1) },
      { key: 'engine_h', label: t('mach_engine_h'), num: true, fmt: (d) => num(d.engine_h, 1) },
      { key: 'idle_share', label: t('mach_idle'), num: true, fmt: (d) => (d.idle_share === null ? '–' : `${num(d.idle_share * 100, 0)}%`) },
      { key: 'fuel_l', label: `${t('mach_fuel_l')} L`, num: true, fmt: (d) => num(d.fuel_l, 1) },
      { key: 't_co2', label: 't CO₂', num: true, fmt: (d) => num(d.t_co2, 3) },
      { key: 'nox_kg', label: 'NOx kg', num: true, fmt: (d) => num(d.nox_kg, 2) },
      { key: 'pm_kg', label: 'PM kg', num: true, fmt: (d) => num(d.pm_kg, 3) },
    ], [...m.days].reverse(), `machine-${m.code}-days`), el('p', { class: 'muted' }, t('mach_factors_note'))),
    section(t('mach_moves'), table([
      { key: 't', label: t('time'), fmt: (r) => fmtTime(r.t, true), csv: (r) => fmtTime(r.t, true) },
      { key: 'dir', label: t('mach_dir'), fmt: (r) => t(r.dir === 'in' ? 'mach_in' : 'mach_out'), csv: (r) => r.dir },
      { key: 'source', label: t('source'), fmt: (r) => tname('mach_src', r.source), csv: (r) => r.source },
      { key: 'by', label: t('by') },
    ], [...m.moves].reverse(), `machine-${m.code}-moves`)),
    section(t('audit'), table([
      { key: 't', label: t('time'), fmt: (r) => fmtTime(r.t, true), csv: (r) => fmtTime(r.t, true) },
      { key: 'action', label: t('mach_action'), fmt: (r) => tname('mach_act', r.action), csv: (r) => r.action },
      { key: 'by', label: t('by') },
      { key: 'reason', label: t('reason') },
      { key: 'machine', label: t('mach_registered_as'), fmt: registeredAs, csv: registeredAs },
    ], m.audit, `machine-${m.code}-audit`)));
  return 60;
}

export async function machineryPage(main, params) {
  if (params.get('code')) return detail(main, params.get('code'));
  const [r, al] = await Promise.all([api('/api/machinery'), api('/api/alarms')]);
  const z = r.zone;
  const ms = r.machines;
  const onSite = ms.filter((m) => m.on_site).map((m) => ({ ...m, _class: m.compliant ? null : 'lv-alarm' }));
  const bad = onSite.filter((m) => !m.compliant);
  const alarms = al.alarms.filter((a) => a.rule.startsWith('machinery.')).map((a) => ({ ...a, _class: levelClass(a.level) }));
  const fuel = onSite.reduce((s, m) => s + (m.fuel_l_today || 0), 0);
  main.replaceChildren(
    el('div', { class: 'stats' },
      stat(t('mach_registered'), String(ms.filter((m) => m.registered).length), null, '', 'mach-registered'),
      stat(t('mach_on_site'), String(onSite.length), `${t('mach_working')} ${onSite.filter((m) => m.working).length}`, '', 'mach-on-site'),
      stat(t('mach_breaches'), String(bad.length), bad.map((m) => m.code).join(' '), bad.length ? 'lv-alarm' : '', 'mach-breaches'),
      stat(t('mach_fuel_today'), `${num(fuel, 1)} L`),
      stat(t('mach_zone'), `≥ ${stage(z.min_stage)}`, `${t('mach_smoke_limit')} ${num(z.opacity_limit_per_m, 2)} m⁻¹${z.require_registration ? ` · ${t('mach_reg_required')}` : ''}`)),
    el('div', { class: 'controls' },
      el('button', { type: 'button', class: 'primary', id: 'mach-add', onclick: addMachine }, t('mach_add'))),
    section(t('mach_on_site_now'), table([
      { key: 'code', label: t('mach_code'), fmt: codeLink },
      { key: 'type', label: t('mach_type'), fmt: (m) => m.type || t('mach_unregistered') },
      { key: 'stage', label: t('mach_stage'), fmt: (m) => stage(m.stage) },
      { key: 'power_kw', label: `${t('mach_power')} kW`, num: true, fmt: (m) => num(m.power_kw, 0) },
      { key: 'working', label: t('mach_working'), fmt: (m) => (m.working ? t('mach_yes') : t('mach_no')), csv: (m) => (m.working ? 1 : 0) },
      { key: 'compliant', label: t('mach_rule'), fmt: breaches, csv: (m) => m.reasons.join(' ') },
      { key: 'hours_today', label: t('mach_hours'), num: true, fmt: (m) => num(m.hours_today, 1) },
      { key: 'engine_h_today', label: t('mach_engine_h'), num: true, fmt: (m) => num(m.engine_h_today, 1) },
      { key: 'fuel_l_today', label: `${t('mach_fuel_l')} L`, num: true, fmt: (m) => num(m.fuel_l_today, 1) },
      { key: 'opacity', label: t('mach_opacity'), num: true, fmt: (m) => opacity(m, z.opacity_limit_per_m), csv: (m) => m.opacity ?? '' },
    ], onSite, 'machinery-on-site')),
    section(`${t('mach_alarms')}（${alarms.length}）`, table([
      { key: 'level', label: t('level'), fmt: (a) => el('span', { class: `badge ${levelClass(a.level)}` }, t(`level_${a.level}`)), csv: (a) => a.level },
      { key: 'rule', label: t('rule'), fmt: (a) => ruleName(a.rule), csv: (a) => a.rule },
      { key: 'source', label: t('mach_code') },
      { key: 'raised', label: t('raised'), fmt: (a) => fmtTime(a.raised), csv: (a) => fmtTime(a.raised) },
      { key: 'message', label: t('message'), fmt: (a) => alarmText(a), csv: (a) => alarmText(a) },
    ], alarms, 'machinery-alarms')),
    section(t('mach_register'), table([
      { key: 'code', label: t('mach_code'), fmt: codeLink },
      { key: 'type', label: t('mach_type'), fmt: (m) => m.type || t('mach_unregistered') },
      { key: 'stage', label: t('mach_stage'), fmt: (m) => stage(m.stage) },
      { key: 'power_kw', label: `${t('mach_power')} kW`, num: true, fmt: (m) => num(m.power_kw, 0) },
      { key: 'fuel', label: t('mach_fuel'), fmt: (m) => (m.fuel ? tname('mach_fuel', m.fuel) : '–') },
      { key: 'owner', label: t('mach_owner'), fmt: (m) => m.owner || '–' },
      { key: 'terminal', label: t('mach_terminal'), fmt: (m) => m.terminal || '–' },
      { key: 'on_site', label: t('mach_on_site'), fmt: (m) => (m.on_site ? t('mach_yes') : t('mach_no')), csv: (m) => (m.on_site ? 1 : 0) },
      { key: 'added', label: t('mach_added'), fmt: (m) => (m.added ? fmtTime(m.added) : '–'), csv: (m) => (m.added ? fmtTime(m.added) : '') },
      { key: 'act', label: '', csv: () => '', fmt: (m) => el('span', { class: 'mach-acts' },
        el('button', { type: 'button', class: 'small', 'data-enter': m.code, onclick: () => move(m, 'enter') }, t('mach_enter')),
        el('button', { type: 'button', class: 'small', 'data-leave': m.code, onclick: () => move(m, 'leave') }, t('mach_leave'))) },
    ], ms, 'machinery-register')),
    el('p', { class: 'muted' }, t('mach_rule_note')));
  return 30;
}

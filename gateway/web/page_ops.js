// Equipment (groups, units, overrides, the audit log) and alarms (active
// ones with acknowledgement, the history).
import { t, tname, ruleName, alarmText } from './i18n.js';
import { api, act, el, num, fmtTime, levelClass, table, section, dialog, toast, duration } from './util.js';

const reload = () => window.dispatchEvent(new HashChangeEvent('hashchange'));

async function override(unit) {
  const v = await dialog(`${t('override')}: ${unit.id}`, [
    { name: 'mode', label: t('on_off'), options: [['off', t('set_off')], ['on', t('set_on')], ['auto', t('set_auto')]] },
    { name: 'hours', label: t('for_h'), type: 'number', step: '0.5', value: '2' },
    { name: 'reason', label: t('reason'), required: true },
    { name: 'by', label: t('by'), value: localStorage.getItem('sitegate.by') || '' },
  ]);
  if (!v) return;
  if (v.by) localStorage.setItem('sitegate.by', v.by);
  const body = v.mode === 'auto'
    ? { clear: true, by: v.by || 'dashboard', reason: v.reason }
    : { on: v.mode === 'on', for_s: Math.round(Number(v.hours) * 3600), reason: v.reason, by: v.by || 'dashboard' };
  try {
    await act(`/api/equipment/${encodeURIComponent(unit.id)}/override`, 'POST', body);
    toast(t('override_saved'));
    reload();
  } catch (e) { toast(e.message, true); }
}

function policies(p) {
  const out = [];
  if (p.peak_kw > 0) out.push(`${t('peak')} ${num(p.peak_kw, 0)} kW`);
  if (p.idle_off_min > 0) out.push(`${t('idle_off')} ${num(p.idle_off_min, 0)} ${t('minutes')}`);
  if (p.schedule && p.schedule !== 'always') out.push(`${t('schedule')} ${tname('sched', p.schedule)}${p.schedule_allows_now ? '' : `（${t('paused')}）`}`);
  if (p.duty > 0) out.push(`${t('duty')} ${p.duty}`);
  if (p.dust_linkage) out.push(`${t('dust_link')} ${tname('link', p.dust_linkage)} ≥ ${t(`level_${p.dust_level}`)}`);
  if (p.dust_linkage) out.push(`${t('freeze')} < ${num(p.freeze_c, 0)} °C`);
  return out.join(' · ') || '–';
}

export async function equipmentPage(main) {
  const [eq, log] = await Promise.all([api('/api/equipment'), api('/api/equipment/log?limit=200')]);
  const units = eq.units.map((u) => ({ ...u, _class: u.not_following ? 'lv-alarm' : u.override ? 'lv-warning' : null }));
  main.replaceChildren(
    section(t('groups'), table([
      { key: 'name', label: t('groups') },
      { key: 'members', label: t('units'), fmt: (g) => g.members.join(', '), csv: (g) => g.members.join(' ') },
      { key: 'power_kw', label: `${t('power')} kW`, num: true, fmt: (g) => num(g.power_kw, 1) },
      { key: 'cap', label: `${t('cap')} kW`, num: true, fmt: (g) => (g.policies.peak_kw > 0 ? num(g.policies.peak_kw, 0) : '–'), csv: (g) => g.policies.peak_kw || '' },
      { key: 'policies', label: t('policies'), fmt: (g) => policies(g.policies), csv: (g) => policies(g.policies) },
      { key: 'temp_c', label: '°C', num: true, fmt: (g) => num(g.temp_c, 1) },
    ], eq.groups, 'equipment-groups')),
    section(t('units'), table([
      { key: 'id', label: t('device') },
      { key: 'group', label: t('groups') },
      { key: 'kind', label: t('kind'), fmt: (u) => tname('eq', u.kind) },
      { key: 'state', label: t('state'), fmt: (u) => el('span', { class: `state st-${u.state}` }, t(`st_${u.state}`)) , csv: (u) => u.state },
      { key: 'power_kw', label: `${t('power')} kW`, num: true, fmt: (u) => num(u.power_kw, 1) },
      { key: 'rated_kw', label: `${t('rated')} kW`, num: true, fmt: (u) => num(u.rated_kw, 0) },
      { key: 'priority', label: t('priority'), num: true },
      { key: 'run_h', label: t('run_h'), num: true, fmt: (u) => num(u.run_h, 1) },
      { key: 'held', label: t('held'), fmt: (u) => (u.held ? tname('why', u.held) : '–') },
      { key: 'override', label: t('override'), fmt: (u) => (u.override ? `${u.override.on ? t('set_on') : t('set_off')} → ${fmtTime(u.override.until)} (${u.override.by}: ${u.override.reason})` : '–'), csv: (u) => (u.override ? `${u.override.on ? 'on' : 'off'} until ${fmtTime(u.override.until)}` : '') },
      { key: 'act', label: '', fmt: (u) => (u.controllable ? el('button', { type: 'button', class: 'small', 'data-unit': u.id, onclick: () => override(u) }, t('override')) : ''), csv: () => '' },
    ], units, 'equipment-units')),
    section(t('audit'), table([
      { key: 't', label: t('time'), fmt: (r) => fmtTime(r.t, true), csv: (r) => fmtTime(r.t, true) },
      { key: 'unit', label: t('device') },
      { key: 'on', label: t('on_off'), fmt: (r) => (r.on ? t('set_on') : t('set_off')), csv: (r) => (r.on ? 'on' : 'off') },
      { key: 'reason', label: t('reason'), fmt: (r) => tname('why', r.reason) },
      { key: 'origin', label: t('origin'), fmt: (r) => tname('origin', r.origin) },
      { key: 'by', label: t('by'), fmt: (r) => tname('by', r.by) },
      { key: 'note', label: t('note') },
      { key: 'result', label: t('result'), fmt: (r) => tname('res', r.result) },
    ], log.entries, 'equipment-log')));
  return 30;
}

async function acknowledge(a) {
  const v = await dialog(`${t('ack')}: ${ruleName(a.rule)} · ${a.source}`, [
    { name: 'by', label: t('ack_by'), value: localStorage.getItem('sitegate.by') || '', required: true },
    { name: 'note', label: t('ack_note'), required: true },
  ]);
  if (!v) return;
  localStorage.setItem('sitegate.by', v.by);
  try {
    await act(`/api/alarms/${a.id}/ack`, 'POST', { by: v.by, note: v.note });
    toast(`${t('ack_done')}: #${a.id}`);
    reload();
  } catch (e) { toast(e.message, true); }
}

function alarmCols(withAck) {
  // The active list shows the figure now, the history the worst it reached;
  // each column says which, and the sentence uses the same one.
  const fig = withAck ? 'figure' : 'peak';
  return [
    { key: 'id', label: '#', num: true },
    { key: 'level', label: t('level'), fmt: (a) => el('span', { class: `badge ${levelClass(a.level)}` }, t(`level_${a.level}`)), csv: (a) => a.level },
    { key: 'rule', label: t('rule'), fmt: (a) => ruleName(a.rule), csv: (a) => a.rule },
    { key: 'source', label: t('source') },
    { key: fig, label: `${t('figure')}（${t(withAck ? 'value_now' : 'value_peak')}）`, num: true, fmt: (a) => (a[fig] === null ? '–' : `${num(a[fig], 1)} ${a.unit || ''}`) },
    { key: 'limit', label: t('limit'), num: true, fmt: (a) => (a.limit === null ? '–' : `${num(a.limit, 1)} ${a.unit || ''}`) },
    { key: 'raised', label: t('raised'), fmt: (a) => fmtTime(a.raised), csv: (a) => fmtTime(a.raised) },
    { key: 'cleared', label: t('cleared'), fmt: (a) => (a.cleared ? `${fmtTime(a.cleared)} (${duration(a.cleared - a.raised)})` : '–'), csv: (a) => (a.cleared ? fmtTime(a.cleared) : '') },
    { key: 'acked', label: t('acked'), fmt: (a) => (a.acked ? `${a.acked_by}: ${a.note}` : withAck ? el('button', { type: 'button', class: 'small primary ack', 'data-alarm': a.id, onclick: () => acknowledge(a) }, t('ack')) : t('not_acked')), csv: (a) => (a.acked ? `${a.acked_by}: ${a.note}` : '') },
    { key: 'message', label: t('message'), fmt: (a) => alarmText(a, fig), csv: (a) => alarmText(a, fig) },
  ];
}

export async function alarmsPage(main) {
  const [active, hist] = await Promise.all([api('/api/alarms'), api('/api/alarms?active=0')]);
  const mark = (a) => ({ ...a, _class: levelClass(a.level) });
  main.replaceChildren(
    section(`${t('active_alarms')}（${active.alarms.length}）`, table(alarmCols(true), active.alarms.map(mark), 'alarms-active')),
    section(t('history'), table(alarmCols(false), hist.alarms, 'alarms-history')));
  return 30;
}

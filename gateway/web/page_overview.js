// The overview: the site at a glance, refreshed every 15 s.
import { t, tname, ruleName } from './i18n.js';
import { api, el, num, pct, fmtTime, fmtClock, levelClass, table, section } from './util.js';

const REFRESH_S = 15;

function tile(id, title, href, ...kids) {
  return el('a', { class: 'tile', id, href }, el('h3', {}, title), ...kids);
}

// A value with its unit and what it is compared with.
function big(value, unit, cls) {
  return el('div', { class: `big ${cls || ''}` }, el('span', { class: 'v' }, value), el('span', { class: 'u' }, unit));
}

function dustTile(status, dust) {
  const rows = [];
  for (const d of status.devices.filter((x) => x.type === 'dust')) {
    const latest = d.latest.pm10 ? d.latest.pm10.v : null;
    const ws = dust.windows.filter((w) => w.device === d.id && w.quantity === 'pm10');
    const w = ws[ws.length - 1];
    const lv = w ? w.level : null;
    rows.push(el('div', { class: `row ${levelClass(lv)}` },
      el('span', { class: 'name' }, d.id),
      big(num(latest, 1), 'µg/m³', levelClass(lv)),
      el('span', { class: 'sub' },
        `${t('hour_mean')} ${w ? num(w.mean, 1) : '–'}`,
        w && w.warn ? ` · ${t('warn')} ${num(w.warn, 0)}` : '',
        w && w.alarm ? ` · ${t('alarm')} ${num(w.alarm, 0)}` : '')));
  }
  return tile('tile-dust', t('ov_dust'), '#/dust', ...(rows.length ? rows : [el('p', { class: 'muted' }, t('no_data'))]));
}

function noiseTile(noise) {
  const rows = noise.sliding.map((w) => {
    const over = w.laeq !== null && w.laeq > w.limit;
    const lv = over ? 'alarm' : w.laeq !== null && w.laeq > w.limit - 3 ? 'warning' : 'normal';
    return el('div', { class: `row ${levelClass(lv)}` },
      el('span', { class: 'name' }, w.device),
      big(num(w.laeq, 1), 'dB(A)', levelClass(lv)),
      el('span', { class: 'sub' },
        el('span', { class: `period ${w.period}` }, t(`period_${w.period}`)),
        ` ${t('limit')} ${num(w.limit, 0)}`,
        w.period === 'night' && w.lmax !== null ? ` · ${t('lmax')} ${num(w.lmax, 1)} / ${num(w.lmax_limit, 0)}` : '',
        w.complete ? '' : ` · ${t('incomplete')}`));
  });
  return tile('tile-noise', t('ov_noise'), '#/noise', el('p', { class: 'muted small' }, t('sliding')),
    ...(rows.length ? rows : [el('p', { class: 'muted' }, t('no_data'))]));
}

function equipmentTile(eq) {
  const rows = eq.groups.map((g) => {
    const cap = g.policies.peak_kw;
    const running = eq.units.filter((u) => u.group === g.name && u.state === 'running').length;
    const share = cap > 0 ? Math.min(1, g.power_kw / cap) : 0;
    const lv = cap > 0 && g.power_kw > cap ? 'alarm' : cap > 0 && share > 0.9 ? 'warning' : 'normal';
    return el('div', { class: `row ${levelClass(lv)}` },
      el('span', { class: 'name' }, g.name),
      big(num(g.power_kw, 1), 'kW', levelClass(lv)),
      el('span', { class: 'sub' }, cap > 0 ? `${t('cap')} ${num(cap, 0)} kW` : t('no_cap'), ` · ${t('units_running')} ${running}/${g.members.length}`),
      cap > 0 ? el('div', { class: 'meter' }, el('i', { style: `width:${(share * 100).toFixed(1)}%` })) : null);
  });
  return tile('tile-equipment', t('ov_equipment'), '#/equipment', ...(rows.length ? rows : [el('p', { class: 'muted' }, t('no_data'))]));
}

function wasteTile(w) {
  const used = w.allowance_used ?? 0;
  const proj = w.allowance_t > 0 && w.projected_t !== null ? w.projected_t / w.allowance_t : null;
  const lv = used >= w.alarm_share ? 'alarm' : used >= w.alarm_warn_share || (proj !== null && proj > 1) ? 'warning' : 'normal';
  const deg = Math.min(1, used) * 360;
  const projDeg = proj !== null ? Math.min(1, proj) * 360 : 0;
  const gauge = el('div', {
    class: `gauge ${levelClass(lv)}`,
    style: `--used:${deg}deg;--proj:${projDeg}deg`,
    title: `${pct(used)} ${t('used')}`,
  }, el('div', { class: 'hole' }, el('span', { class: 'v' }, pct(used, 1)), el('span', { class: 'u' }, t('used'))));
  return tile('tile-waste', t('ov_waste'), '#/waste',
    el('div', { class: 'gaugebox' }, gauge,
      el('dl', {},
        el('dt', {}, t('discharged')), el('dd', {}, `${num(w.discharged_t, 1)} t`),
        el('dt', {}, t('allowance')), el('dd', {}, `${num(w.allowance_t, 1)} t`),
        el('dt', {}, t('projected')), el('dd', { class: proj !== null && proj > 1 ? 'lv-alarm' : '' }, `${num(w.projected_t, 1)} t`),
        el('dt', {}, t('utilisation')), el('dd', {}, `${pct(w.utilisation_rate)} (${t('target')} ${pct(w.utilisation_target, 0)})`))));
}

function uplinkTile(u) {
  const state = !u.enabled ? t('uplink_off') : u.connected ? t('uplink_ready') : u.state;
  const lv = !u.enabled ? 'normal' : u.connected ? 'normal' : 'warning';
  return tile('tile-uplink', t('ov_uplink'), '#/alarms',
    big(state, '', levelClass(lv)),
    el('p', { class: 'sub' }, `${t('backlog')} ${u.backlog_total} · ${t('last_ack')} ${u.last_ack ? fmtClock(u.last_ack) : '–'}`));
}

function alarmsTile(al) {
  const list = al.alarms;
  const n2 = list.filter((a) => a.level === 'alarm').length;
  const rows = list.slice(0, 5).map((a) => el('li', { class: levelClass(a.level) },
    el('span', { class: 'dot' }), `${ruleName(a.rule)} · ${a.source}`,
    a.figure !== null ? el('span', { class: 'muted' }, ` ${num(a.figure, 1)}${a.unit ? ` ${a.unit}` : ''}`) : '',
    a.acked ? el('span', { class: 'muted' }, ` ✓`) : ''));
  return tile('tile-alarms', t('ov_alarms'), '#/alarms',
    big(String(list.length), '', list.length ? levelClass(n2 ? 'alarm' : 'warning') : 'lv-normal'),
    list.length ? el('ul', { class: 'alarmlist' }, rows) : el('p', { class: 'muted' }, t('no_alarms')),
    list.length > 5 ? el('p', { class: 'muted' }, t('more_alarms')) : null);
}

function energyTile(carbon) {
  const today = carbon.days[carbon.days.length - 1];
  return tile('tile-energy', t('ov_energy'), '#/equipment',
    big(num(today ? today.kwh : null, 1), t('kwh')),
    el('p', { class: 'sub' }, `${num(today ? today.t_co2 : null, 3)} ${t('t_co2')}`));
}

// A device's refusals, each reason in the site manager's words (the same
// catalogue entries as `sitectl status`): "8：数据包格式错误…".
export function rejectText(d) {
  const why = Object.entries(d.reject_reasons || {}).filter(([, n]) => n > 0);
  if (!why.length) return String(d.rejects || 0);
  return why.map(([k, n]) => `${n}${t('colon')}${tname('reject', k)}`).join(t('ctl.list_sep'));
}

// Every device: its state, what it has sent and what was refused, and why.
function devicesTable(status) {
  const counted = (d) => (d.type === 'scale' ? t('ctl.n_tickets', { n: d.packs }) : d.type === 'gate' ? t('ctl.n_events', { n: d.packs }) : String(d.records));
  const rows = status.devices.map((d) => ({ ...d, _class: d.online ? null : 'lv-warning' }));
  return section(t('devices'), table([
    { key: 'id', label: t('device') },
    { key: 'type', label: t('kind'), fmt: (d) => tname('devtype', d.type) },
    { key: 'online', label: t('state'), fmt: (d) => t(d.online ? 'dev_online' : 'dev_offline'), csv: (d) => (d.online ? 'online' : 'offline') },
    { key: 'last_seen', label: t('last_seen'), fmt: (d) => (d.last_seen ? fmtTime(d.last_seen, true) : '–'), csv: (d) => (d.last_seen ? fmtTime(d.last_seen, true) : '') },
    { key: 'records', label: t('received'), num: true, fmt: counted, csv: (d) => d.records },
    { key: 'rejects', label: t('rejected'), fmt: (d) => el('span', { class: d.rejects ? 'rejects' : 'muted', 'data-device': d.id }, rejectText(d)), csv: rejectText },
  ], rows, 'devices'));
}

export async function overview(main) {
  const now = Date.now() / 1000;
  const [status, alarms, noise, dust, eq, waste, uplink, carbon] = await Promise.all([
    api('/api/status'),
    api('/api/alarms'),
    api(`/api/noise?since=${Math.floor(now - 1300)}`),
    api(`/api/dust?window=long&since=${Math.floor(now - 3 * 3600)}`),
    api('/api/equipment'),
    api('/api/waste/summary'),
    api('/api/uplink'),
    api(`/api/carbon?since=${Math.floor(now - 3600)}`),
  ]);
  main.replaceChildren(
    el('div', { class: 'tiles' },
      alarmsTile(alarms), noiseTile(noise), dustTile(status, dust), equipmentTile(eq),
      wasteTile(waste), uplinkTile(uplink), energyTile(carbon)),
    devicesTable(status),
    el('p', { class: 'muted small' }, `${t('now')} ${fmtTime(status.now)}`));
  return REFRESH_S;
}

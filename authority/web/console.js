// The supervision console (sitegate-rx --http): sign-in, every site's
// state and month at a glance, a page per site. Chinese first, English on
// the switch. The data come from /api/sites, /api/site and /api/sites.csv
// (authority/rxconsole.c); the columns below are one table that gives the
// header, the cell, the sort and the CSV's meaning.
import uPlot from './vendor/uPlot.esm.js';

const MSG = {
  zh: {
    // the ledger's identifiers (UPLINK.md 6011/6012/6021), by name
    'rule_noise.laeq': '噪声 LAeq 超标', 'rule_noise.night_lmax': '夜间最大声级超标', 'rule_dust.long': '扬尘小时均值超标',
    'rule_dust.short': '扬尘 15 分钟均值超标', 'rule_dust.exceed_day': '扬尘日告警窗口超限', 'rule_health.offline': '设备离线',
    'rule_health.clock_skew': '设备时钟偏差', 'rule_health.interference': '扬尘读数受喷淋干扰',
    'rule_health.range': '读数超出量程', 'rule_health.flatline': '读数长时间不变', 'rule_waste.allowance': '建筑垃圾达限额预警线',
    'rule_waste.projection': '建筑垃圾预计超限额', 'rule_equipment.no_follow': '设备未执行指令', 'rule_uplink.down': '数据上传中断',
    'rule_machinery.unregistered': '未登记机械在场', 'rule_machinery.stage': '机械排放阶段不达标',
    'rule_machinery.smoke': '机械排气烟度超标', 'astate_on': '发生', 'astate_off': '解除', 'level_warn': '预警',
    'level_alarm': '告警', 'dest_reuse_onsite': '现场利用', 'dest_recycling': '资源化利用', 'dest_backfill': '回填',
    'dest_disposal': '处置', 'mat_rebar': '钢筋', 'mat_concrete': '混凝土', 'mat_blocks': '砌块',
    'mat_formwork_timber': '模板木材',
    title: '工地监管平台', sites: '全部工地', logout: '退出', lang: 'English',
    user: '用户名', password: '密码', signin: '登录', bad_login: '用户名或密码错误',
    too_many: '登录失败次数过多，请 {min} 分钟后再试',
    n_sites: '工地数', silent: '超过一天未上报', broken: '数据链断裂', mismatch: '封存校验不符',
    over_waste: '超出建筑垃圾限额', no_area: '面积未上报', filter: '筛选（编号或名称）', csv: '导出 CSV',
    month: '月份', mn: '工地编号', subject: '证书', last: '最后上报', link: '链路', up: '在线',
    down: '离线', never: '从未', pending: '待补传', chain: '数据链', chained: '完整', broken_s: '断裂',
    seals: '小时封存', noise_day: '噪声超标（昼）', noise_night: '噪声超标（夜）', dust: '扬尘事件',
    waste_t: '建筑垃圾 (t)', per_area: 't/万m²（限 300/200）', name: '工地名称', used: '已用限额', recycling: '资源化率（目标 55%）',
    energy: '电能 (kWh)', co2: 'CO₂ (t)', refused: '拒收', back: '返回', pm10: 'PM10 (µg/m³)',
    noise: '噪声 LAeq (dB(A))', ledger: '签名台账', seq: '序号', cn: '类型', state: '校验', when: '时间',
    what: '内容', last24: '最近 24 小时分钟数据', none: '无数据',
    month_hours: '{m} 月小时数据', limit: '限值', warn: '预警', pm10_h: 'PM10 小时均值 (µg/m³)',
    noise_h: '噪声小时 Leq (dB(A))',
    cn_6011: '建筑垃圾出场', cn_6012: '材料进场', cn_6021: '报警', cn_6031: '能耗与碳排放',
    cn_6041: '小时封存', cn_6061: '工地概况', st_chained: '已校验', st_pending: '待补链', st_broken: '断裂',
    verified: '已校验', incomplete: '不完整', seal_mismatch: '不符',
  },
  en: {
    'rule_noise.laeq': 'noise LAeq over the limit', 'rule_noise.night_lmax': 'night Lmax over the limit',
    'rule_dust.long': 'dust hourly mean over the limit', 'rule_dust.short': 'dust 15-min mean over the limit',
    'rule_dust.exceed_day': 'too many dust alarm windows today', 'rule_health.offline': 'device offline',
    'rule_health.clock_skew': 'device clock off', 'rule_health.interference': 'dust readings sprayed',
    'rule_health.range': 'reading out of range', 'rule_health.flatline': 'reading stuck',
    'rule_waste.allowance': 'waste at the allowance line',
    'rule_waste.projection': 'waste projected over the allowance',
    'rule_equipment.no_follow': 'unit did not follow a command', 'rule_uplink.down': 'uplink down',
    'rule_machinery.unregistered': 'unregistered machine on site',
    'rule_machinery.stage': 'machine below the emission stage',
    'rule_machinery.smoke': 'machine smoke over the limit', 'astate_on': 'raised', 'astate_off': 'cleared',
    'level_warn': 'warning', 'level_alarm': 'alarm', 'dest_reuse_onsite': 'reuse on site',
    'dest_recycling': 'recycling', 'dest_backfill': 'backfill', 'dest_disposal': 'disposal',
    'mat_rebar': 'rebar', 'mat_concrete': 'concrete', 'mat_blocks': 'blocks',
    'mat_formwork_timber': 'formwork timber',
    title: 'Site supervision', sites: 'All sites', logout: 'Sign out', lang: '中文',
    user: 'User', password: 'Password', signin: 'Sign in', bad_login: 'Wrong user name or password',
    too_many: 'Too many failed sign-ins: try again in {min} min',
    n_sites: 'Sites', silent: 'Silent over a day', broken: 'Chain broken', mismatch: 'Seal mismatch',
    over_waste: 'Over waste allowance', no_area: 'area not sent', filter: 'Filter (MN or name)',
    csv: 'Export CSV', month: 'Month', mn: 'Site (MN)', subject: 'Certificate', last: 'Last upload',
    link: 'Link', up: 'up', down: 'down', never: 'never', pending: 'Gaps to pull', chain: 'Chain',
    chained: 'whole', broken_s: 'broken', seals: 'Hourly seals', noise_day: 'Noise over (day)',
    noise_night: 'Noise over (night)', dust: 'Dust episodes', waste_t: 'Waste (t)', name: 'Site name', used: 'allowance used',
    per_area: 't/10,000 m² (300/200)', recycling: 'Recycling (55% target)', energy: 'Energy (kWh)',
    co2: 'CO₂ (t)', refused: 'Refused', back: 'Back', pm10: 'PM10 (µg/m³)',
    noise: 'Noise LAeq (dB(A))', ledger: 'Signed ledger', seq: 'Seq', cn: 'Kind', state: 'Verified',
    when: 'Time', what: 'Content', last24: 'Minute data, last 24 hours', none: 'no data',
    month_hours: 'Hourly data, {m}', limit: 'limit', warn: 'warning', pm10_h: 'PM10 hourly mean (µg/m³)',
    noise_h: 'Noise hourly Leq (dB(A))',
    cn_6011: 'Waste out', cn_6012: 'Material in', cn_6021: 'Alarm', cn_6031: 'Energy and carbon',
    cn_6041: 'Hourly seal', cn_6061: 'Site profile', st_chained: 'verified', st_pending: 'gap pending', st_broken: 'broken',
    verified: 'verified', incomplete: 'incomplete', seal_mismatch: 'mismatch',
  },
};
let lang = localStorage.getItem('rx-lang') || 'zh';
const t = (k) => MSG[lang][k] ?? k;
const $ = (sel) => document.querySelector(sel);
// An identifier's name (prefix_id), or the identifier when it has none.
const tn = (prefix, id) => (id == null ? '' : MSG[lang][`${prefix}_${id}`] ?? id);
const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const main = $('#main');

const fmtTime = (s) => new Date(s * 1000).toLocaleString(lang === 'zh' ? 'zh-CN' : 'en-GB',
  { timeZone: 'Asia/Shanghai', hour12: false });
// A chart's time axis: 24-hour clock in Beijing time, the date (MM-DD)
// where a day begins, in either language (uPlot's own is English, 12-hour).
const inBeijing = (s, o) => new Date(s * 1000).toLocaleString('en-CA', { timeZone: 'Asia/Shanghai', ...o });
const clock = (s) => inBeijing(s, { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
const dayOf = (s) => inBeijing(s, { month: '2-digit', day: '2-digit' });
const timeAxis = (u, splits) => splits.map((s, i) => {
  if (clock(s) === '00:00') return dayOf(s); // a day's start: its date alone
  return i === 0 || dayOf(splits[i - 1]) !== dayOf(s) ? `${clock(s)}\n${dayOf(s)}` : clock(s);
});
const num = (v, d = 1) => (v == null ? '—' : Number(v).toFixed(d));
const SILENT_S = 86400;
const LINK_S = 300; // a site that sent nothing for 5 minutes is shown down

// [key, header, value for sorting, cell html, is text]
const COLS = [
  ['mn', 'mn', (s) => s.mn, (s) => `<a href="#/site/${encodeURIComponent(s.mn)}">${esc(s.mn)}</a>`, true],
  ['name', 'name', (s) => s.name ?? '', (s) => esc(s.name ?? '—'), true],
  ['last', 'last', (s) => s.last_frame_ms ?? 0, (s) => {
    if (s.last_frame_ms == null) return `<span class="bad">${t('never')}</span>`;
    const silent = now - s.last_frame_ms / 1000 > SILENT_S;
    return `<span class="${silent ? 'bad' : ''}">${esc(fmtTime(s.last_frame_ms / 1000))}</span>`;
  }, true],
  ['link', 'link', (s) => (isUp(s) ? 1 : 0),
    (s) => (isUp(s) ? `<span class="ok">${t('up')}</span>` : `<span class="bad">${t('down')}</span>`), true],
  ['pending', 'pending', (s) => s.pending, (s) => `<span class="${s.pending ? 'warn' : ''}">${s.pending}</span>`],
  ['chain', 'chain', (s) => s.broken, (s) => (s.broken
    ? `<span class="bad">${t('broken_s')} ${s.broken}</span>` : `<span class="ok">${t('chained')} ${s.chained_seq}</span>`), true],
  ['seals', 'seals', (s) => s.seals_mismatch * 1e6 + s.seals_incomplete * 1e3 + s.seals_verified, (s) =>
    `<span class="ok">${s.seals_verified}</span> / <span class="${s.seals_incomplete ? 'warn' : ''}">${s.seals_incomplete}</span>` +
    ` / <span class="${s.seals_mismatch ? 'bad' : ''}">${s.seals_mismatch}</span>`],
  ['noise_day', 'noise_day', (s) => s.noise_day, (s) => bad(s.noise_day)],
  ['noise_night', 'noise_night', (s) => s.noise_night, (s) => bad(s.noise_night)],
  ['dust', 'dust', (s) => s.dust_episodes, (s) => bad(s.dust_episodes)],
  ['waste_t', 'waste_t', (s) => s.waste_kg ?? 0, (s) => num(s.waste_kg == null ? null : s.waste_kg / 1000)],
  ['per_area', 'per_area', (s) => wasteUse(s)?.used ?? -1, (s) => {
    const w = wasteUse(s);
    if (!w) return `<span title="${t('no_area')}">—</span>`;
    return `<span class="${w.used > 1 ? 'bad' : 'ok'}" title="${t('used')} ${(100 * w.used).toFixed(1)}%">` +
      `${w.perArea.toFixed(1)} / ${w.limit.toFixed(0)}</span>`;
  }],
  ['recycling', 'recycling', (s) => recycling(s) ?? -1, (s) => {
    const r = recycling(s);
    return r == null ? '—' : `<span class="${r < 55 ? 'bad' : 'ok'}">${r.toFixed(1)}%</span>`;
  }],
  ['energy', 'energy', (s) => s.energy_kwh ?? 0, (s) => num(s.energy_kwh)],
  ['co2', 'co2', (s) => s.carbon_kg ?? 0, (s) => num(s.carbon_kg == null ? null : s.carbon_kg / 1000, 2)],
  ['refused', 'refused', (s) => s.refused, (s) => bad(s.refused)],
];
let now = Date.now() / 1000;
const isUp = (s) => s.last_frame_ms != null && now - s.last_frame_ms / 1000 < LINK_S;
const bad = (n) => `<span class="${n ? 'bad' : ''}">${n ?? 0}</span>`;
// The project's waste against its allowance (300 t per 10,000 m² cast in
// place, 200 prefab): the construction waste discharged so far (as the
// gateway counts it), over the areas of the latest site profile (6061);
// null before a profile with an area arrived.
const wasteUse = (s) => {
  const area = (s.area_cast_m2 ?? 0) + (s.area_prefab_m2 ?? 0);
  if (!(area > 0)) return null;
  const tonnes = (s.discharged_kg ?? 0) / 1000;
  const allowance = (300 * (s.area_cast_m2 ?? 0) + 200 * (s.area_prefab_m2 ?? 0)) / 10000;
  return { perArea: tonnes / (area / 10000), limit: (allowance * 10000) / area, used: tonnes / allowance };
};
const recycling = (s) => (s.waste_kg > 0 ? (100 * (s.recycled_kg ?? 0)) / s.waste_kg : null);
let sortKey = 'mn';
let sortAsc = true;
let filter = '';

async function api(path) {
  const r = await fetch(path, { credentials: 'same-origin' });
  if (r.status === 401) {
    showLogin();
    throw new Error('sign in');
  }
  if (!r.ok) throw new Error(`${path}: ${r.status}`);
  return r.json();
}

function setPage(name) {
  main.dataset.page = name;
  main.dataset.ready = '0';
}

function chrome() {
  document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
  document.title = t('title');
  $('#title').textContent = t('title');
  $('#nav-sites').textContent = t('sites');
  $('#logout').textContent = t('logout');
  $('#lang').textContent = t('lang');
}

function showLogin() {
  setPage('login');
  $('#logout').hidden = true;
  $('#who').textContent = '';
  main.innerHTML = `<form class="login" id="login-form">
    <label>${t('user')} <input id="login-user" autocomplete="username" required></label>
    <label>${t('password')} <input id="login-password" type="password" autocomplete="current-password" required></label>
    <button type="submit" id="login-submit">${t('signin')}</button>
    <div class="err" id="login-err"></div></form>`;
  $('#login-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const r = await fetch('/api/login', {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ user: $('#login-user').value, password: $('#login-password').value }),
    });
    if (r.status === 429) {
      const j = await r.json().catch(() => ({}));
      $('#login-err').textContent = t('too_many').replace('{min}', Math.ceil((j.retry_after || 60) / 60));
      return;
    }
    if (!r.ok) {
      $('#login-err').textContent = t('bad_login');
      return;
    }
    route();
  });
  main.dataset.ready = '1';
}

async function who() {
  const me = await api('/api/me');
  $('#who').textContent = me.user || '';
  $('#logout').hidden = me.open;
}

let data = null;

async function sitesPage() {
  setPage('sites');
  await who();
  data = await api('/api/sites');
  now = data.now;
  drawSites();
}

function drawSites() {
  const s = data.sites;
  const silent = s.filter((x) => x.last_frame_ms == null || now - x.last_frame_ms / 1000 > SILENT_S).length;
  const tile = (id, label, v, isBad) =>
    `<div class="tile ${isBad ? 'bad' : ''}" id="${id}"><div>${label}</div><div class="v">${v}</div></div>`;
  const shown = s.filter((x) => !filter || x.mn.toLowerCase().includes(filter) ||
    (x.subject || '').toLowerCase().includes(filter) || (x.name || '').toLowerCase().includes(filter));
  const withArea = s.filter((x) => wasteUse(x));
  const over = withArea.filter((x) => wasteUse(x).used > 1).length;
  const col = COLS.find((c) => c[0] === sortKey) || COLS[0];
  shown.sort((a, b) => {
    const x = col[2](a);
    const y = col[2](b);
    const d = typeof x === 'string' ? x.localeCompare(y) : x - y;
    return sortAsc ? d : -d;
  });
  main.innerHTML = `<div class="tiles">
    ${tile('tile-sites', t('n_sites'), s.length, false)}
    ${tile('tile-silent', t('silent'), silent, silent > 0)}
    ${tile('tile-broken', t('broken'), s.filter((x) => x.broken > 0).length, s.some((x) => x.broken > 0))}
    ${tile('tile-mismatch', t('mismatch'), s.filter((x) => x.seals_mismatch > 0).length, s.some((x) => x.seals_mismatch > 0))}
    ${tile('tile-waste', t('over_waste'), withArea.length ? over : `<span title="${t('no_area')}">—</span>`, over > 0)}
    </div>
    <div class="bar"><span>${t('month')} ${esc(data.month)}</span>
    <input id="filter" placeholder="${t('filter')}" value="${esc(filter)}">
    <a id="csv" href="/api/sites.csv?month=${encodeURIComponent(data.month)}" download="sites-${esc(data.month)}.csv">${t('csv')}</a></div>
    <table id="sites"><thead><tr>${COLS.map((c) => `<th data-key="${c[0]}" class="${c[4] ? 'text' : ''} ${
  c[0] === sortKey ? `sorted ${sortAsc ? 'asc' : ''}` : ''}">${t(c[1])}</th>`).join('')}</tr></thead>
    <tbody>${shown.map((x) => `<tr data-mn="${esc(x.mn)}">${COLS.map((c) =>
    `<td class="${c[4] ? 'text' : ''}">${c[3](x)}</td>`).join('')}</tr>`).join('')}</tbody></table>`;
  main.querySelectorAll('th').forEach((th) => th.addEventListener('click', () => {
    sortAsc = sortKey === th.dataset.key ? !sortAsc : true;
    sortKey = th.dataset.key;
    drawSites();
  }));
  const f = $('#filter');
  f.addEventListener('input', () => {
    filter = f.value.trim().toLowerCase();
    drawSites();
    $('#filter').focus();
    $('#filter').setSelectionRange(filter.length, filter.length);
  });
  main.dataset.ready = '1';
}

function ledgerWhat(r) {
  if (r.cn === '6011' || r.cn === '6012')
    return `${esc(r.plate ?? '')} ${num(r.net_kg == null ? null : r.net_kg / 1000, 2)} t ${esc(r.dest ? tn('dest', r.dest) : tn('mat', r.material))}`;
  if (r.cn === '6021') {
    return `${esc(tn('rule', r.rule))}：${esc(tn('astate', r.alarm_state))} ${esc(tn('level', r.level))} ${num(r.value)} / ${num(r.limit_value)}`;
  }
  if (r.cn === '6031') return `${num(r.energy_kwh)} kWh, ${num(r.carbon_kg)} kg CO₂`;
  if (r.cn === '6061') return `${esc(r.site_name)} ${num(r.area_cast_m2, 0)} + ${num(r.area_prefab_m2, 0)} m²`;
  return '';
}

// The limits drawn on the charts: PM10's hourly warning and alarm of local
// practice (150/200 µg/m³, the gateway's defaults, deploy/CONFIG.md) and
// the noise limits of GB 12523-2011 (70 dB(A) by day, 06-22 Beijing time,
// 55 at night). They are what the console judges by; a site may have set
// its own dust levels, which its alarms (the ledger) carry.
const PM10_WARN = 150;
const PM10_ALARM = 200;
const NOISE_DAY = 70;
const NOISE_NIGHT = 55;
const isDay = (ts) => {
  const h = Math.floor(((ts + 8 * 3600) % 86400) / 3600);
  return h >= 6 && h < 22;
};
const LIMITS = {
  a34002_avg: [
    { label: () => t('warn'), color: '#e6a700', at: () => PM10_WARN },
    { label: () => t('limit'), color: '#d0342c', at: () => PM10_ALARM },
  ],
  la_avg: [{ label: () => t('limit'), color: '#d0342c', at: (ts) => (isDay(ts) ? NOISE_DAY : NOISE_NIGHT) }],
};

// `col`: the pollutant's column of the minute or hour rows (a34002_avg,
// la_avg); its limits (LIMITS) are drawn dashed, as steps. `range`: the
// period shown ([t0, t1], Unix s), whatever part of it has data.
function chart(el, title, rows, col, range) {
  const pts = rows.filter((r) => r[col] != null);
  el.dataset.points = String(pts.length);
  el.innerHTML = `<h3>${title}</h3>`;
  if (!pts.length) {
    el.insertAdjacentHTML('beforeend', `<p>${t('none')}</p>`);
    el.dataset.drawn = '1';
    return;
  }
  // The limits span the whole period: the x values are the data's times
  // and every hour of the period; the data's series is undefined (skipped,
  // uPlot joins its line across) at the hours it has no point.
  const at = new Map(pts.map((r) => [r.t, r[col]]));
  const grid = new Set(pts.map((r) => r.t));
  for (let h = Math.ceil(range[0] / 3600) * 3600; h <= range[1]; h += 3600) grid.add(h);
  grid.add(range[0]);
  grid.add(range[1]);
  const xs = [...grid].sort((a, b) => a - b);
  const lims = LIMITS[col] ?? [];
  // eslint-disable-next-line no-new
  new uPlot({
    width: Math.min(900, main.clientWidth - 40), height: 220, tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), 'Asia/Shanghai'),
    scales: { x: { time: true, range: () => range } },
    axes: [{ values: timeAxis }, {}],
    series: [{ label: t('when'), value: (u, v) => (v == null ? '–' : fmtTime(v)) }, { label: title, stroke: '#1f3a5a', width: 1.5 },
      ...lims.map((l) => ({ label: l.label(), stroke: l.color, dash: [6, 4], width: 1, points: { show: false },
        paths: uPlot.paths.stepped({ align: 1 }) }))],
  }, [xs, xs.map((x) => at.get(x)), ...lims.map((l) => xs.map((x) => l.at(x)))], el);
  el.dataset.limits = String(lims.length);
  el.dataset.drawn = '1';
}

// The months a site's month chart offers: this one and the 12 before it.
function months(current) {
  const [y, m] = current.split('-').map(Number);
  const out = [];
  for (let i = 0; i < 13; i++) {
    const k = y * 12 + (m - 1) - i;
    out.push(`${Math.floor(k / 12)}-${String((k % 12) + 1).padStart(2, '0')}`);
  }
  return out;
}

// The site page's month: the one chosen on it, else the site table's.
let siteMonth = null;

async function sitePage(mn) {
  setPage('site');
  await who();
  const month = siteMonth ?? data?.month;
  const d = await api(`/api/site?mn=${encodeURIComponent(mn)}&hours=24${month ? `&month=${encodeURIComponent(month)}` : ''}`);
  // The name of the latest site profile (6061): in the ledger, or in the table.
  const name = d.ledger.find((r) => r.cn === '6061')?.site_name ??
    data?.sites?.find((x) => x.mn === mn)?.name;
  const thisMonth = new Date((d.now + 8 * 3600) * 1000).toISOString().slice(0, 7); // Beijing time
  main.innerHTML = `<p><a href="#/">${t('back')}</a></p><h2 id="site-mn">${esc(mn)}</h2>${name ? `<p id="site-name">${esc(name)}</p>` : ''}
    <p>${t('last24')}</p>
    <div class="chart" id="chart-pm10"></div><div class="chart" id="chart-noise"></div>
    <div class="bar"><span id="month-title">${t('month_hours').replace('{m}', esc(d.month))}</span>
    <label>${t('month')} <select id="site-month">${months(thisMonth).map((m) =>
    `<option value="${m}" ${m === d.month ? 'selected' : ''}>${m}</option>`).join('')}</select></label></div>
    <div class="chart" id="chart-month-pm10"></div><div class="chart" id="chart-month-noise"></div>
    <h3>${t('ledger')}</h3>
    <table id="ledger"><thead><tr><th>${t('seq')}</th><th class="text">${t('cn')}</th><th class="text">${t('when')}</th>
    <th class="text">${t('state')}</th><th class="text">${t('what')}</th></tr></thead><tbody>
    ${d.ledger.map((r) => `<tr data-seq="${r.seq}"><td>${r.seq}</td><td class="text">${t(`cn_${r.cn}`)}</td>
      <td class="text">${r.t == null ? '—' : esc(fmtTime(r.t))}</td>
      <td class="text ${r.state === 'chained' ? 'ok' : 'bad'}">${t(`st_${r.state}`)}</td>
      <td class="text">${ledgerWhat(r)}</td></tr>`).join('')}</tbody></table>`;
  const day = [d.now - 24 * 3600, d.now];
  chart($('#chart-pm10'), t('pm10'), d.series, 'a34002_avg', day);
  chart($('#chart-noise'), t('noise'), d.series, 'la_avg', day);
  chart($('#chart-month-pm10'), t('pm10_h'), d.hours, 'a34002_avg', [d.t0, d.t1]);
  chart($('#chart-month-noise'), t('noise_h'), d.hours, 'la_avg', [d.t0, d.t1]);
  main.dataset.month = d.month;
  $('#site-month').addEventListener('change', (e) => {
    siteMonth = e.target.value;
    route();
  });
  main.dataset.ready = '1';
}

async function route() {
  chrome();
  const h = location.hash;
  try {
    if (h.startsWith('#/site/')) await sitePage(decodeURIComponent(h.slice(7)));
    else await sitesPage();
  } catch (e) {
    if (e.message !== 'sign in') throw e;
  }
}

$('#lang').addEventListener('click', () => {
  lang = lang === 'zh' ? 'en' : 'zh';
  localStorage.setItem('rx-lang', lang);
  if (main.dataset.page === 'login') {
    chrome();
    showLogin();
  } else route();
});
$('#logout').addEventListener('click', async () => {
  await fetch('/api/logout', { method: 'POST' });
  showLogin();
});
window.addEventListener('hashchange', route);
route();

// What every page shares: the API client (with the token for actions, and
// for reads when the dashboard is opened from another machine on the LAN),
// times in the site's zone, numbers, tables with CSV export, small widgets.
import { t, getLang } from './i18n.js';

export const site = { tz: 'Asia/Shanghai', name: '', id: '' };

// ---- the API
export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// The gateway's refusal in the page's language: the catalogue's
// "err.<code>" with its args as {1}, {2}, ... (protocol/HTTP.md "Errors");
// the gateway's English only for a code the catalogue does not know.
export function refusal(j, status) {
  if (j && j.code) {
    const key = `err.${j.code}`;
    const vars = Object.fromEntries((j.args || []).map((v, i) => [String(i + 1), v]));
    const s = t(key, vars);
    if (s !== key) return s;
  }
  return (j && j.error) || `HTTP ${status}`;
}

async function request(path, opts) {
  const init = { method: opts.method || 'GET', headers: {} };
  if (opts.body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(opts.body);
  }
  const tok = localStorage.getItem('sitegate.token');
  if (tok) init.headers.Authorization = `Bearer ${tok}`;
  const r = await fetch(path, init);
  const text = await r.text();
  let j = null;
  try { j = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!r.ok) throw new ApiError(r.status, refusal(j, r.status));
  return j;
}

// Off loopback the gateway answers reads only with the token (401): ask for
// it once, whichever of a page's parallel reads is refused first, and read
// again. On loopback reads need nothing and this never asks.
let asking = null;
export async function api(path, opts = {}) {
  try {
    return await request(path, opts);
  } catch (e) {
    if (e.status !== 401 || (opts.method && opts.method !== 'GET')) throw e;
    const had = !!localStorage.getItem('sitegate.token');
    localStorage.removeItem('sitegate.token');
    asking = asking || askToken(had).finally(() => { asking = null; });
    if (!(await asking)) throw e;
    return request(path, opts);
  }
}

// An action: asks for the token when there is none or it was refused, once.
export async function act(path, method, body) {
  let refused = false;
  for (let attempt = 0; attempt < 2; attempt++) {
    if (!localStorage.getItem('sitegate.token') && !(await askToken(refused))) throw new ApiError(401, t('token_wrong'));
    try {
      return await api(path, { method, body });
    } catch (e) {
      if (e.status !== 401 || attempt === 1) throw e;
      localStorage.removeItem('sitegate.token');
      refused = true;
    }
  }
  throw new ApiError(401, t('token_wrong'));
}

// A small modal form; resolves to the values or null.
export function dialog(title, fields) {
  return new Promise((resolve) => {
    const d = el('dialog', { class: 'dlg' });
    const form = el('form', { method: 'dialog' });
    form.append(el('h3', {}, title));
    const inputs = {};
    for (const f of fields) {
      let input;
      if (f.options) {
        input = el('select', { name: f.name });
        for (const [v, label] of f.options) input.append(el('option', { value: v }, label));
      } else {
        input = el('input', { name: f.name, type: f.type || 'text', value: f.value ?? '', autocomplete: 'off' });
        if (f.step) input.step = f.step;
      }
      if (f.value !== undefined) input.value = f.value;
      if (f.required) input.required = true;
      inputs[f.name] = input;
      form.append(el('label', {}, el('span', {}, f.label), input));
    }
    const ok = el('button', { type: 'submit', value: 'ok', class: 'primary' }, t('submit'));
    const no = el('button', { type: 'button', value: 'cancel' }, t('cancel'));
    form.append(el('div', { class: 'buttons' }, no, ok));
    d.append(form);
    document.body.append(d);
    let done = false;
    const finish = (v) => { if (!done) { done = true; d.close(); d.remove(); resolve(v); } };
    no.onclick = () => finish(null);
    d.addEventListener('cancel', () => finish(null));
    form.onsubmit = (ev) => {
      ev.preventDefault();
      const out = {};
      for (const [k, i] of Object.entries(inputs)) out[k] = i.value;
      finish(out);
    };
    d.showModal();
  });
}

// `refused`: the token kept in this browser was just refused (401), so the
// question says so instead of asking as if for the first time.
export async function askToken(refused = false) {
  const v = await dialog(refused ? t('token_refused') : t('token_prompt'), [{ name: 'token', label: t('token'), type: 'password', required: true }]);
  if (!v || !v.token) return false;
  localStorage.setItem('sitegate.token', v.token.trim());
  toast(t('token_set'));
  return true;
}

// ---- DOM
export function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e[k] = v;
    else if (k === 'html') e.innerHTML = v;
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids.flat()) if (k !== null && k !== undefined && k !== false) e.append(k instanceof Node ? k : String(k));
  return e;
}

export function toast(msg, bad = false) {
  let stack = document.getElementById('toasts');
  if (!stack) document.body.append(stack = el('div', { id: 'toasts' }));
  const box = el('div', { class: `toast${bad ? ' bad' : ''}`, role: 'status' }, msg);
  stack.append(box);
  setTimeout(() => box.remove(), 4000);
}

// ---- numbers and times
export function num(v, digits = 1) {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–';
  return v.toLocaleString(getLang() === 'zh' ? 'zh-CN' : 'en-GB', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}
export function pct(v, digits = 1) {
  return v === null || v === undefined || !Number.isFinite(v) ? '–' : `${num(v * 100, digits)}%`;
}

function parts(ts, opts) {
  const f = new Intl.DateTimeFormat('en-CA', { timeZone: site.tz, hourCycle: 'h23', ...opts });
  const o = {};
  for (const p of f.formatToParts(new Date(ts * 1000))) o[p.type] = p.value;
  return o;
}
// "2026-11-20 21:20" in the site's zone.
export function fmtTime(ts, seconds = false) {
  if (!ts) return '–';
  const p = parts(ts, { year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: seconds ? '2-digit' : undefined });
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}${seconds ? `:${p.second}` : ''}`;
}
export function fmtClock(ts) {
  const p = parts(ts, { hour: '2-digit', minute: '2-digit' });
  return `${p.hour}:${p.minute}`;
}
export function siteMonth(ts) {
  const p = parts(ts, { year: 'numeric', month: '2-digit' });
  return `${p.year}-${p.month}`;
}
export function duration(s) {
  if (!Number.isFinite(s)) return '–';
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  if (getLang() === 'zh') return d ? `${d}天${h}小时` : h ? `${h}小时${m}分` : `${m}分`;
  return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : `${m}m`;
}

// ---- tables with CSV export
// cols: [{key, label, fmt(row) -> text|Node, csv(row) -> value, num: bool}]
export function table(cols, rows, name) {
  const wrap = el('div', { class: 'tablewrap' });
  const tb = el('table', { class: 'data' });
  tb.append(el('thead', {}, el('tr', {}, cols.map((c) => el('th', { class: c.num ? 'num' : null }, c.label)))));
  const body = el('tbody');
  for (const r of rows) {
    body.append(el('tr', { class: r._class || null }, cols.map((c) => {
      const v = c.fmt ? c.fmt(r) : r[c.key];
      // data-label: the column's name, shown beside the value when a
      // narrow screen turns each row into a card (style.css).
      return el('td', { class: c.num ? 'num' : null, 'data-label': c.label || null }, v ?? '–');
    })));
  }
  if (!rows.length) body.append(el('tr', {}, el('td', { colspan: cols.length, class: 'empty' }, t('no_data'))));
  tb.append(body);
  wrap.append(tb);
  const btn = el('button', { class: 'csv', type: 'button', onclick: () => downloadCsv(cols, rows, name) }, t('csv'));
  return el('div', { class: 'tablebox' }, el('div', { class: 'tablebar' }, btn), wrap);
}

function csvCell(v) {
  const s = v === null || v === undefined ? '' : String(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function toCsv(cols, rows) {
  // Headers in the page's language, as the person reads the columns.
  const lines = [cols.map((c) => csvCell(c.csvLabel || (typeof c.label === 'string' && c.label ? c.label : c.key))).join(',')];
  for (const r of rows) {
    lines.push(cols.map((c) => {
      let v = c.csv ? c.csv(r) : r[c.key];
      if (v instanceof Node) v = v.textContent;
      return csvCell(v);
    }).join(','));
  }
  return `${lines.join('\r\n')}\r\n`;
}

export function downloadCsv(cols, rows, name) {
  // a BOM so that a spreadsheet opens the Chinese as UTF-8
  const blob = new Blob(['\ufeff', toCsv(cols, rows)], { type: 'text/csv;charset=utf-8' });
  const a = el('a', { href: URL.createObjectURL(blob), download: `${name || 'table'}.csv` });
  document.body.append(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}

export function levelClass(level) {
  return level === 'alarm' || level === 2 ? 'lv-alarm' : level === 'warning' || level === 1 ? 'lv-warning' : 'lv-normal';
}

// A pill of buttons; calls on(value) and marks the chosen one.
export function choice(options, value, on) {
  const box = el('div', { class: 'choice', role: 'group' });
  for (const [v, label] of options) {
    const b = el('button', { type: 'button', class: v === value ? 'on' : null, 'data-value': v }, label);
    b.onclick = () => {
      for (const x of box.children) x.classList.toggle('on', x === b);
      on(v);
    };
    box.append(b);
  }
  return box;
}

export function section(title, ...kids) {
  return el('section', { class: 'card' }, el('h2', {}, title), ...kids);
}

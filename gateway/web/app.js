// The dashboard's shell: header, navigation (hash routes, so sitegated
// serves one index.html), the language switch and the refresh loop. Each
// page is a function that fills `main` and may return a refresh interval.
import { t, setLang, getLang } from './i18n.js';
import { api, el, site, askToken, fmtTime, duration } from './util.js';
import { disposeCharts } from './charts.js';
import { overview } from './page_overview.js';
import { noisePage, dustPage } from './page_env.js';
import { wastePage, materialsPage } from './page_waste.js';
import { equipmentPage, alarmsPage } from './page_ops.js';
import { reportPage } from './page_report.js';
import { machineryPage } from './page_machinery.js';
import { screenPage } from './page_screen.js';

const pages = {
  overview: { title: 'nav_overview', run: overview },
  noise: { title: 'nav_noise', run: noisePage },
  dust: { title: 'nav_dust', run: dustPage },
  waste: { title: 'nav_waste', run: wastePage },
  materials: { title: 'nav_materials', run: materialsPage },
  equipment: { title: 'nav_equipment', run: equipmentPage },
  machinery: { title: 'nav_machinery', run: machineryPage },
  alarms: { title: 'nav_alarms', run: alarmsPage },
  report: { title: 'nav_report', run: reportPage },
};

// The site-office screen: full screen, no header or navigation (#/screen).
const screens = { screen: { title: 'screen_title', run: screenPage } };

let timer = null;
let generation = 0;
let status = null;

function route() {
  const h = location.hash.replace(/^#\/?/, '');
  const [name, query] = h.split('?');
  return { name: pages[name] || screens[name] ? name : 'overview', params: new URLSearchParams(query || '') };
}

function header() {
  const nav = el('nav', { id: 'nav' });
  for (const [name, p] of Object.entries(pages)) nav.append(el('a', { href: `#/${name}`, 'data-page': name }, t(p.title)));
  const lang = el('button', { id: 'lang', type: 'button', title: 'Language / 语言' }, t('lang_switch'));
  lang.onclick = () => { setLang(getLang() === 'zh' ? 'en' : 'zh'); render(); };
  const key = el('button', { id: 'token', type: 'button' }, t('token'));
  key.onclick = () => askToken();
  const menu = el('button', { id: 'menu', type: 'button', 'aria-label': 'menu' }, '☰');
  menu.onclick = () => document.body.classList.toggle('nav-open');
  const st = status || {};
  const info = el('div', { class: 'siteinfo' },
    el('strong', { id: 'site-name' }, site.name || '…'),
    el('span', { class: 'muted' }, st.site ? ` ${st.site.id} · ${t('devices_online')} ${st.devices_online}/${st.devices_total} · ${t('uptime')} ${duration(st.uptime_s)}` : ''));
  return el('header', { id: 'top' },
    el('div', { class: 'bar' }, menu, el('h1', {}, t('title')), info, el('div', { class: 'tools' }, key, lang)),
    nav);
}

async function loadStatus() {
  try {
    status = await api('/api/status');
    site.tz = status.site.timezone || site.tz;
    site.name = status.site.name || status.site.id;
    site.id = status.site.id;
  } catch { /* the page says what failed */ }
}

async function render() {
  const gen = ++generation;
  clearTimeout(timer);
  disposeCharts();
  document.body.classList.remove('nav-open');
  const { name, params } = route();
  const page = pages[name] || screens[name];
  document.documentElement.lang = getLang() === 'zh' ? 'zh-CN' : 'en';
  document.title = `${t(page.title)} · ${t('title')}`;
  document.body.classList.remove('screen');
  const root = document.getElementById('app');
  const main = el('main', { id: 'main', 'data-page': name });
  root.replaceChildren(...(screens[name] ? [] : [header()]), main);
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('on', a.dataset.page === name);
  main.append(el('p', { class: 'muted loading' }, t('loading')));
  let every = 0;
  try {
    every = await page.run(main, params, () => gen !== generation);
  } catch (e) {
    main.replaceChildren(el('div', { class: 'card error' }, `${t('error')}: ${e.message}`));
  }
  if (gen !== generation) return;
  main.dataset.ready = '1';
  main.append(el('p', { class: 'muted updated' }, `${t('updated')} ${fmtTime(Date.now() / 1000, true)}`));
  if (every) timer = setTimeout(() => refresh(gen), every * 1000);
}

async function refresh(gen) {
  if (gen !== generation || document.querySelector('dialog[open]')) {
    if (gen === generation) timer = setTimeout(() => refresh(gen), 5000);
    return;
  }
  await loadStatus();
  if (gen === generation) render();
}

window.addEventListener('hashchange', render);
setLang(getLang());
await loadStatus();
render();

// The monthly site report: the page sitegated renders (/api/report, the
// same one `sitectl report` saves), shown in a frame to read and print,
// with each of its tables as CSV.
import { t, getLang } from './i18n.js';
import { api, el, siteMonth, section } from './util.js';

export async function reportPage(main, params) {
  const month = /^\d{4}-\d{2}$/.test(params.get('month') || '') ? params.get('month') : siteMonth(Date.now() / 1000);
  const input = el('input', { type: 'month', id: 'report-month', value: month });
  const go = el('button', { type: 'button', class: 'primary', onclick: () => { location.hash = `#/report?month=${input.value}`; } }, t('report_open'));
  // The report in the page's language: its sentences, titles and CSV
  // tables' names (the CSV's header is its column keys, for machines).
  const lang = getLang();
  const j = await api(`/api/report?month=${month}&lang=${lang}`);
  const frame = el('iframe', { id: 'report-frame', src: `/api/report?month=${month}&format=html&lang=${lang}`, title: t('report_title') });
  const print = el('button', { type: 'button', onclick: () => frame.contentWindow.print() }, t('report_print'));
  const csv = el('div', { class: 'csvlinks' }, el('span', {}, `${t('report_tables')}: `),
    j.tables.map((tb) => el('a', { class: 'button small', href: `/api/report?month=${month}&format=csv&table=${tb.name}&lang=${lang}`, download: `${j.site.id}-${month}-${tb.name}.csv` }, tb.title)));
  main.replaceChildren(
    el('div', { class: 'controls' }, el('label', { class: 'ctl' }, el('span', {}, t('month')), input), go, print),
    csv,
    section(`${t('report_title')} ${month}`, frame));
  return 0;
}

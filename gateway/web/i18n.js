// The dashboard's words, Chinese first (the site manager's language) and
// English. Every string a person reads comes from the one catalogue,
// messages.json, through t(); the daemon's report and sitectl render from
// the same file (common/msgcat.c), so an alarm stored once (rule, source,
// figure, limit, unit) reads the same in either language everywhere.
// A key missing in English falls back to the Chinese, a key missing in both
// shows itself (so a typo is visible, not silent); tests/test_msgcat.c fails
// when a key exists in one language only.

const tables = await (await fetch('./messages.json')).json();
const { zh } = tables;

let lang = localStorage.getItem('sitegate.lang') === 'en' ? 'en' : 'zh';

export function getLang() { return lang; }

export function setLang(l) {
  lang = l === 'en' ? 'en' : 'zh';
  localStorage.setItem('sitegate.lang', lang);
  document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
}

// t('noise_rules', {day: 70}) fills {day}.
export function t(key, vars) {
  let s = tables[lang][key] ?? zh[key] ?? key;
  if (vars) s = s.replace(/\{(\w+)\}/g, (_, k) => (k in vars ? vars[k] : `{${k}}`));
  return s;
}

// A name from a family ('cat', 'engineering') -> its words, else the id.
export function tname(prefix, id) {
  const k = `${prefix}_${id}`;
  return tables[lang][k] ?? zh[k] ?? id;
}

// Figures in sentences: whole numbers as they are, others to one decimal
// (common/msgcat.c formats the same way).
export function fmtFigure(v) {
  if (typeof v !== 'number' || !Number.isFinite(v)) return '–';
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

// Which catalogue entry an alarm rule reads from, and its {q} (the same
// resolution as msgcat_alarm_key() in common/msgcat.c).
export function alarmKey(rule) {
  if (`alarm.${rule}` in zh) return { key: rule, q: '' };
  const parts = rule.split('.');
  if (parts.length > 2) return { key: parts.slice(0, -1).join('.'), q: parts[parts.length - 1] };
  const m = /^dust\.(.+)_(long|short|exceed_day)$/.exec(rule);
  if (m) return { key: `dust.${m[2]}`, q: m[1] };
  return { key: 'other', q: '' };
}

export function ruleName(rule) {
  const { key, q } = alarmKey(rule);
  if (key === 'other') return rule;
  return t(`rule.${key === rule ? rule : key}`, { q: tname('q', q) });
}

// An alarm's sentence from its stored parts, in the current language.
// `which` picks the figure: 'figure' (now) or 'peak' (the worst).
export function alarmText(a, which = 'figure') {
  const { key, q } = alarmKey(a.rule);
  return t(`alarm.${key}`, {
    source: a.source, rule: a.rule, unit: a.unit || '', q: tname('q', q),
    figure: fmtFigure(a[which]), limit: fmtFigure(a.limit), peak: fmtFigure(a.peak),
  });
}

// revcache dashboard: reads /stats and /stats/history every second with the
// admin token and draws them. Every text it shows goes through textContent:
// route names and reasons come from the config and the disk, not from here.
'use strict';
(() => {
  const TOKEN_KEY = 'revcache-admin-token';
  const REFRESH_MS = 1000;
  const OUTCOMES = [
    ['hit', '#1f7a3d'], ['collapsed', '#5aa469'], ['stale_while_revalidate', '#8cc084'],
    ['stale_if_error', '#c2b280'], ['rate_limited', '#7a5195'], ['miss', '#d1495b'],
    ['revalidated', '#2e86ab'], ['refetched', '#edae49'], ['bypass', '#8d99ae'],
    ['method', '#6c757d'], ['rejected', '#ef476f'], ['error', '#9b2226'],
  ];
  const PALETTE = ['#2e86ab', '#d1495b', '#edae49', '#1f7a3d', '#7a5195', '#00798c',
    '#ef476f', '#8d99ae', '#c2b280', '#3d405b', '#f4a261', '#5aa469'];

  const $ = (sel, root = document) => root.querySelector(sel);
  const el = (tag, props = {}, text) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props)) {
      if (k === 'class') e.className = v;
      else e.setAttribute(k, v);
    }
    if (text !== undefined) e.textContent = text;
    return e;
  };

  // ---- the token: from the fragment (then removed) or the form, kept in this tab only
  function takeFragmentToken() {
    const params = new URLSearchParams(location.hash.slice(1));
    const t = params.get('token');
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    if (location.hash) history.replaceState(null, '', location.pathname);
  }
  const token = () => sessionStorage.getItem(TOKEN_KEY);

  class Unauthorized extends Error {}

  async function get(path) {
    const headers = {};
    const t = token();
    if (t) headers.Authorization = 'Bearer ' + t;
    const res = await fetch(path, {
      headers, cache: 'no-store', credentials: 'omit', mode: 'same-origin', redirect: 'error',
    });
    if (res.status === 401) throw new Unauthorized(path);
    if (!res.ok) {
      const body = (await res.text()).slice(0, 300);
      throw new Error(`${path}: ${res.status} ${body}`);
    }
    return res.json();
  }

  // ---- formatting
  const int = (n) => (n === null || n === undefined ? '–' : Number(n).toLocaleString('en-US'));
  const pct = (r) => (r === null || r === undefined ? '–' : (r * 100).toFixed(1) + ' %');
  function bytes(n) {
    if (n === null || n === undefined) return '–';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n : n.toFixed(1)) + ' ' + units[i];
  }
  function ago(seconds) {
    if (seconds < 0) seconds = 0;
    if (seconds < 90) return Math.round(seconds) + ' s';
    if (seconds < 5400) return Math.round(seconds / 60) + ' min';
    if (seconds < 172800) return Math.round(seconds / 3600) + ' h';
    return Math.round(seconds / 86400) + ' d';
  }
  const clock = (unix) => new Date(unix * 1000).toLocaleTimeString('en-GB');

  function setStat(name, text, value) {
    const e = $(`[data-stat="${name}"]`);
    e.textContent = text;
    if (value !== undefined) e.dataset.value = value === null ? '' : String(value);
    return e;
  }
  function pill(name, text, tone) {
    const e = setStat(name, text);
    e.classList.remove('good', 'bad', 'warn');
    if (tone) e.classList.add(tone);
  }

  // ---- history: columns as /stats/history sends them, appended by `since`
  let hist = null;
  function merge(h) {
    if (!hist || h.first !== hist.next) {
      hist = h;
      return;
    }
    const cap = h.capacity;
    const grow = (a, b) => a.concat(b).slice(-cap);
    const before = hist.time.length;
    for (const key of ['time', 'hit_ratio', 'not_modified', 'evictions', 'swept', 'l1_keys',
      'l1_bytes', 'l2_entries', 'l2_bytes']) {
      hist[key] = grow(hist[key], h[key]);
    }
    for (const [o] of OUTCOMES) hist.requests[o] = grow(hist.requests[o], h.requests[o]);
    const zeros = (n) => new Array(n).fill(0);
    for (const [cls, col] of Object.entries(h.upstream)) {
      hist.upstream[cls] = grow(hist.upstream[cls] || zeros(before), col);
    }
    for (const cls of Object.keys(hist.upstream)) {
      if (!(cls in h.upstream)) hist.upstream[cls] = grow(hist.upstream[cls], zeros(h.time.length));
    }
    hist.first = h.first;
    hist.next = h.next;
  }

  // ---- charts: one uPlot each, made again only when its series change
  const charts = {};
  function chart(name, series, data, opts = {}) {
    const fig = $(`[data-chart="${name}"]`);
    const box = $('.plot', fig);
    const key = series.map((s) => s.label).join('|');
    let c = charts[name];
    const width = Math.max(200, box.clientWidth);
    if (!c || c.key !== key) {
      if (c) c.plot.destroy();
      const plot = new uPlot({
        width, height: 220,
        scales: { x: { time: true }, ...(opts.scales || {}) },
        axes: [{}, { size: 60, ...(opts.yAxis || {}) }],
        series: [{}, ...series.map((s) => ({ width: 1.5, points: { show: false }, ...s }))],
        legend: { live: false },
      }, data, box);
      c = charts[name] = { plot, key, draws: 0 };
    } else {
      c.plot.setData(data);
    }
    if (c.plot.width !== width) c.plot.setSize({ width, height: 220 });
    c.draws += 1;
    fig.dataset.samples = String(data[0].length);
    fig.dataset.last = data[0].length ? String(data[0][data[0].length - 1]) : '';
    fig.dataset.draws = String(c.draws);
  }

  // Served from the cache, of all requests, over the last `n` samples at
  // each sample; null where there were none.
  const CACHED = new Set(['hit', 'collapsed', 'stale_while_revalidate', 'stale_if_error',
    'rate_limited', 'revalidated']);
  function rollingHitRatio(n) {
    const len = hist.time.length;
    const all = new Array(len).fill(0);
    const cached = new Array(len).fill(0);
    for (const [o] of OUTCOMES) {
      const col = hist.requests[o];
      for (let i = 0; i < len; i++) {
        all[i] += col[i];
        if (CACHED.has(o)) cached[i] += col[i];
      }
    }
    const out = new Array(len).fill(null);
    let a = 0;
    let c = 0;
    for (let i = 0; i < len; i++) {
      a += all[i];
      c += cached[i];
      if (i >= n) {
        a -= all[i - n];
        c -= cached[i - n];
      }
      if (a > 0) out[i] = c / a;
    }
    return out;
  }

  function drawCharts() {
    const t = hist.time;
    const nonZero = (col) => col.some((v) => v);
    const outcomes = OUTCOMES.filter(([o]) => nonZero(hist.requests[o]));
    const shown = outcomes.length ? outcomes : [OUTCOMES[0]];
    chart('requests', shown.map(([o, color]) => ({ label: o, stroke: color })),
      [t, ...shown.map(([o]) => hist.requests[o])]);
    chart('hit-ratio', [{ label: 'hit ratio', stroke: '#1f7a3d', points: { show: true, size: 3 } }],
      [t, rollingHitRatio(10)], {
        scales: { y: { range: [0, 1] } },
        yAxis: { values: (u, v) => v.map((x) => Math.round(x * 100) + '%') },
      });
    const classes = Object.keys(hist.upstream).sort();
    chart('upstream', [
      ...classes.map((c, i) => ({ label: c, stroke: PALETTE[i % PALETTE.length] })),
      { label: '304s', stroke: '#3d405b', dash: [4, 4] },
    ], [t, ...classes.map((c) => hist.upstream[c]), hist.not_modified]);
    const tiers = [{ label: 'L1 bytes', stroke: '#2e86ab' }];
    const tierData = [t, hist.l1_bytes];
    if (hist.l2_bytes.some((v) => v !== null)) {
      tiers.push({ label: 'L2 bytes', stroke: '#7a5195' });
      tierData.push(hist.l2_bytes);
    }
    chart('tiers', tiers, tierData, {
      yAxis: { size: 70, values: (u, v) => v.map((x) => bytes(x)) },
    });
    chart('evictions', [
      { label: 'L1 evictions', stroke: '#d1495b' },
      { label: 'L2 swept', stroke: '#edae49' },
    ], [t, hist.evictions, hist.swept]);
  }

  // ---- tables
  function cell(tr, label, text, props = {}) {
    const td = el('td', { 'data-label': label, ...props }, text);
    tr.append(td);
    return td;
  }
  function fill(name, rows) {
    const table = $(`[data-table="${name}"]`);
    $('tbody', table).replaceChildren(...rows);
    table.hidden = rows.length === 0;
    const empty = $(`[data-empty="${name}"]`);
    if (empty) empty.hidden = rows.length !== 0;
  }

  function drawRoutes(stats) {
    fill('routes', stats.routes.map((r) => {
      const tr = el('tr', { 'data-route': r.name });
      cell(tr, 'route', r.name);
      cell(tr, 'dialect', r.dialect);
      for (const [field, label, value] of [
        ['requests', 'requests', r.requests],
        ['upstream', 'upstream', r.upstream],
        ['saved', 'saved', r.saved],
        ['not_modified', '304s', r.not_modified],
      ]) {
        cell(tr, label, int(value), { class: 'num', 'data-field': field, 'data-value': String(value) });
      }
      const classes = Object.entries(r.upstream_by_class).sort((a, b) => b[1] - a[1]);
      cell(tr, 'by class', classes.map(([c, n]) => `${c} ${int(n)}`).join(' · ') || '–',
        { class: 'classes' });
      return tr;
    }));
  }

  function drawFeeds(stats) {
    const rows = [];
    for (const r of stats.routes) {
      const f = r.feed;
      if (!f) continue;
      const tr = el('tr', { 'data-feed': r.name });
      cell(tr, 'route', r.name);
      cell(tr, 'health', f.healthy ? 'healthy' : 'unhealthy',
        { class: f.healthy ? 'good' : 'bad', 'data-field': 'healthy', 'data-value': String(f.healthy) });
      cell(tr, 'last event', ago(stats.now - f.last_event) + ' ago');
      let trust;
      if (f.trust_seconds === null) trust = 'no trust configured';
      else if (f.trusted) trust = `trusted (${ago(f.trust_seconds)}), since ${clock(f.healthy_since)}`;
      else trust = 'not trusted: revalidating';
      cell(tr, 'trust', trust, { class: f.trusted ? 'good' : (f.trust_seconds === null ? '' : 'warn') });
      rows.push(tr);
    }
    fill('feeds', rows);
  }

  function drawRateLimits(stats) {
    const rows = [];
    for (const r of stats.routes) {
      for (const l of r.rate_limits) {
        const tr = el('tr', { 'data-rate-limit': `${r.name}/${l.partition}/${l.resource}` });
        cell(tr, 'route', r.name);
        cell(tr, 'partition', l.partition);
        cell(tr, 'resource', l.resource);
        const td = cell(tr, 'remaining', '');
        const share = l.limit ? l.remaining / l.limit : 0;
        const meter = el('span', { class: share < 0.1 ? 'meter low' : 'meter' });
        const bar = el('span');
        bar.style.width = Math.round(share * 100) + '%';
        meter.append(bar);
        td.append(meter, document.createTextNode(`${int(l.remaining)} / ${int(l.limit)}`));
        cell(tr, 'used', int(l.used), { class: 'num' });
        cell(tr, 'resets', 'in ' + ago(l.reset - stats.now));
        cell(tr, 'saved', int(l.saved), { class: 'num' });
        rows.push(tr);
      }
    }
    fill('rate-limits', rows);
  }

  function facts(name, pairs) {
    const dl = $(`[data-facts="${name}"]`);
    dl.replaceChildren(...pairs.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
  }

  function drawTiers(stats) {
    const disk = stats.disk_tier;
    const d = stats.l2;
    pill('disk-tier', 'disk: ' + disk.state, { enabled: 'good', disabled: 'bad' }[disk.state]);
    const diskFacts = [['state', disk.state + (disk.reason ? `: ${disk.reason}` : '')]];
    if (d) {
      diskFacts.push(['entries', int(d.entries)], ['index', bytes(d.index_bytes)],
        ['body files', `${int(d.files)} (${bytes(d.file_bytes)})`],
        ['swept', `${int(d.swept_idle)} idle, ${int(d.swept_over_budget)} over budget (${int(d.sweeps)} sweeps)`],
        ['pending purges', int(d.tombstones)], ['write errors', int(d.errors)],
        ['corrupt dropped', int(d.corrupt_dropped)]);
    }
    facts('disk', diskFacts);
    const s = stats.l3;
    if (!s) {
      pill('shared-tier', 'shared: off');
      facts('shared', [['state', 'not configured (this node shares nothing)']]);
    } else {
      pill('shared-tier', 'shared: ' + (s.healthy ? 'healthy' : 'unreachable'), s.healthy ? 'good' : 'bad');
      facts('shared', [['health', s.healthy ? 'healthy' : 'unreachable: serving without it'],
        ['lookups', `${int(s.hits)} hits, ${int(s.misses)} misses`], ['stored', int(s.stored)],
        ['errors', int(s.errors)], ['lock waits', int(s.lock_waits)],
        ['invalidations', `${int(s.published)} published, ${int(s.applied)} applied`],
        ['stream gaps', int(s.gaps)]]);
    }
  }

  function drawTiles(stats) {
    const total = Object.values(stats.requests).reduce((a, b) => a + b, 0);
    setStat('requests', int(total), total);
    setStat('hit-ratio', pct(stats.hit_ratio), stats.hit_ratio);
    const saved = stats.routes.reduce((a, r) => a + r.saved, 0);
    setStat('saved', int(saved), saved);
    setStat('saved-share', total ? `${pct(saved / total)} of client requests` : '');
    const nm = stats.routes.reduce((a, r) => a + r.not_modified, 0);
    setStat('not-modified', int(nm), nm);
    setStat('l1', bytes(stats.l1.bytes), stats.l1.bytes);
    setStat('l1-sub', `of ${bytes(stats.l1.capacity_bytes)} · ${int(stats.l1.keys)} keys`);
    setStat('evictions', int(stats.l1.evictions), stats.l1.evictions);
    if (stats.l2) {
      setStat('l2', bytes(stats.l2.index_bytes + stats.l2.file_bytes));
      setStat('l2-sub', `${int(stats.l2.entries)} entries · ${stats.disk_tier.state}`);
    } else {
      setStat('l2', stats.disk_tier.state);
      setStat('l2-sub', stats.disk_tier.reason || '');
    }
    if (hist && hist.time.length) {
      const n = Math.min(10, hist.time.length);
      let sum = 0;
      for (const [o] of OUTCOMES) sum += hist.requests[o].slice(-n).reduce((a, b) => a + b, 0);
      setStat('rps', (sum / n).toFixed(1), sum / n);
    }
    setStat('updated', 'updated ' + clock(stats.now));
  }

  // ---- the loop
  const main = document.body;
  let refreshes = 0;
  function showError(text) {
    const e = $('[data-role="error"]');
    e.textContent = text || '';
    e.hidden = !text;
  }
  function askToken(reason) {
    const form = $('[data-role="token-form"]');
    form.hidden = false;
    showError(reason);
    $('input', form).focus();
  }

  async function refresh() {
    try {
      const since = hist ? `?since=${hist.next}` : '';
      const [stats, h] = await Promise.all([get('/stats'), get('/stats/history' + since)]);
      merge(h);
      drawTiles(stats);
      drawRoutes(stats);
      drawFeeds(stats);
      drawRateLimits(stats);
      drawTiers(stats);
      drawCharts();
      showError('');
      $('[data-role="token-form"]').hidden = true;
      $('[data-role="forget-token"]').hidden = !token();
      refreshes += 1;
      main.dataset.refreshes = String(refreshes);
    } catch (e) {
      if (e instanceof Unauthorized) {
        askToken(token() ? 'The admin API refused this token (401).' : 'The admin API needs its token (401).');
        return; // until a token is given
      }
      showError('Cannot read the admin API: ' + e.message);
    }
    setTimeout(refresh, REFRESH_MS);
  }

  function start() {
    takeFragmentToken();
    $('[data-role="token-form"]').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const input = $('input', ev.target);
      sessionStorage.setItem(TOKEN_KEY, input.value.trim());
      input.value = '';
      ev.target.hidden = true;
      refresh();
    });
    $('[data-role="forget-token"]').addEventListener('click', () => {
      sessionStorage.removeItem(TOKEN_KEY);
      location.reload();
    });
    window.addEventListener('resize', () => {
      for (const c of Object.values(charts)) {
        const box = c.plot.root.parentElement;
        c.plot.setSize({ width: Math.max(200, box.clientWidth), height: 220 });
      }
    });
    refresh();
  }

  if (typeof uPlot === 'undefined') {
    showError('The chart library did not load.');
  } else {
    start();
  }
})();

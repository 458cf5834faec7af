// imdsd web console: reads the admin JSON API and renders it. Read-only.
//
// Security: tags, User-Agents and paths are chosen by guests. Everything
// from the API goes into the page as text (textContent, attribute values),
// never parsed as HTML; the page's Content-Security-Policy forbids inline
// scripts as a second line of defence.
'use strict';

(function () {
  const REFRESH_MS = 5000;
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const OPTION_KEYS = [
    'http_tokens',
    'http_put_response_hop_limit',
    'http_endpoint',
    'http_protocol_ipv6',
    'instance_metadata_tags',
  ];

  const state = {
    instances: [],
    report: null,
    selected: null,
    windowSecs: 604800,
    serverOffsetMs: 0,
    timer: null,
    generation: 0,
  };

  // ---- helpers -----------------------------------------------------------

  function $(id) {
    return document.getElementById(id);
  }

  /** Creates an element with a class and text (text is never parsed). */
  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    return node;
  }

  function nowSecs() {
    return Math.floor((Date.now() + state.serverOffsetMs) / 1000);
  }

  function pad(n) {
    return String(n).padStart(2, '0');
  }

  function fmtTime(secs) {
    if (secs === null || secs === undefined) return '';
    const d = new Date(secs * 1000);
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' +
      pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
  }

  function fmtHM(secs) {
    const d = new Date(secs * 1000);
    return pad(d.getHours()) + ':' + pad(d.getMinutes());
  }

  function windowText() {
    switch (state.windowSecs) {
      case 3600: return 'in the last hour';
      case 86400: return 'in the last day';
      default: return 'in the last 7 days';
    }
  }

  function instanceHref(id) {
    return '#' + encodeURIComponent(id);
  }

  async function getJSON(path) {
    const resp = await fetch(path, { cache: 'no-store', headers: { Accept: 'application/json' } });
    const date = resp.headers.get('date');
    if (date) {
      const server = Date.parse(date);
      if (!Number.isNaN(server)) state.serverOffsetMs = server - Date.now();
    }
    const text = await resp.text();
    let body = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch (e) {
      body = null;
    }
    if (!resp.ok) {
      const msg = body && typeof body.error === 'string' ? body.error : text.slice(0, 200);
      throw new Error(path.split('?')[0] + ': HTTP ' + resp.status + ' ' + msg);
    }
    return body;
  }

  function showError(err) {
    const box = $('error');
    if (err) {
      box.textContent = 'Could not refresh: ' + (err && err.message ? err.message : String(err));
      box.hidden = false;
    } else {
      box.hidden = true;
      box.textContent = '';
    }
  }

  function reportFor(id) {
    const r = state.report;
    if (!r) return null;
    return r.instances.find((i) => i.instance_id === id) || null;
  }

  function isSafe(id) {
    return !!state.report && state.report.no_imdsv1_calls.indexOf(id) >= 0;
  }

  // ---- summary -----------------------------------------------------------

  function instanceLink(inst, id) {
    const a = el('a', 'id', id);
    a.href = instanceHref(id);
    const li = el('li');
    li.appendChild(a);
    if (inst && inst.name) {
      li.appendChild(document.createTextNode(' '));
      li.appendChild(el('span', 'name', inst.name));
    }
    return li;
  }

  function renderSummary() {
    const byId = new Map(state.instances.map((i) => [i.instance_id, i]));
    const safe = $('safe-list');
    const unsafe = $('unsafe-list');
    const safeItems = [];
    const unsafeItems = [];
    if (state.report) {
      for (const id of state.report.no_imdsv1_calls) {
        const inst = byId.get(id);
        const li = instanceLink(inst, id);
        if (inst && inst.metadata_options.http_tokens === 'required') {
          li.appendChild(el('span', 'badge ok', 'already requires IMDSv2'));
        } else {
          li.appendChild(el('span', 'badge hint', 'ready for --http-tokens required'));
        }
        safeItems.push(li);
      }
      for (const r of state.report.instances) {
        const li = instanceLink(byId.get(r.instance_id), r.instance_id);
        li.appendChild(el('span', 'badge warn', r.no_token_requests + ' IMDSv1 requests'));
        if (r.rejected_requests > 0) {
          li.appendChild(el('span', 'badge bad', r.rejected_requests + ' refused'));
        }
        const top = r.callers[0];
        if (top) {
          const tc = el('span', 'muted small', 'top caller: ');
          tc.appendChild(el('code', 'ua', top.user_agent || '(no User-Agent)'));
          li.appendChild(tc);
        }
        unsafeItems.push(li);
      }
    }
    if (!safeItems.length) safeItems.push(el('li', 'muted', 'none'));
    if (!unsafeItems.length) unsafeItems.push(el('li', 'muted', 'none'));
    safe.replaceChildren(...safeItems);
    unsafe.replaceChildren(...unsafeItems);
    for (const node of document.querySelectorAll('.window-text')) node.textContent = windowText();
  }

  // ---- instances table ---------------------------------------------------

  function optionCell(key, value) {
    const td = el('td', 'opt opt-' + key.replace(/_/g, '-'), value);
    if (key === 'http_tokens') td.classList.add(value === 'required' ? 'good' : 'warn');
    return td;
  }

  function renderInstances() {
    const rows = [];
    for (const inst of state.instances) {
      const tr = el('tr');
      tr.dataset.instanceId = inst.instance_id;
      if (inst.instance_id === state.selected) tr.classList.add('selected');
      const idCell = el('td', 'id');
      const a = el('a', null, inst.instance_id);
      a.href = instanceHref(inst.instance_id);
      idCell.appendChild(a);
      tr.appendChild(idCell);
      tr.appendChild(el('td', 'name', inst.name || ''));
      tr.appendChild(el('td', 'state state-' + inst.state, inst.state));
      tr.appendChild(el('td', 'ip', inst.private_ipv4 || inst.ipv6 || ''));
      for (const key of OPTION_KEYS) tr.appendChild(optionCell(key, inst.metadata_options[key]));
      const st = el('td', 'options-state');
      const badge = el('span', 'badge ' + (inst.options_state === 'applied' ? 'ok' : 'warn'), inst.options_state);
      badge.title = 'generation ' + inst.generation + ', served: ' +
        (inst.observed_generation === null ? 'none reported' : inst.observed_generation);
      st.appendChild(badge);
      tr.appendChild(st);
      const calls = el('td', 'num v1-calls');
      const r = reportFor(inst.instance_id);
      if (r) {
        calls.appendChild(el('span', 'badge warn', r.no_token_requests));
      } else if (isSafe(inst.instance_id)) {
        calls.appendChild(el('span', 'badge ok', '0'));
      } else {
        calls.textContent = '—';
      }
      tr.appendChild(calls);
      tr.addEventListener('click', (ev) => {
        if (ev.target instanceof HTMLAnchorElement) return;
        location.hash = instanceHref(inst.instance_id);
      });
      rows.push(tr);
    }
    $('instances').tBodies[0].replaceChildren(...rows);
    $('no-instances').hidden = rows.length > 0;
  }

  // ---- detail ------------------------------------------------------------

  function renderFacts(inst) {
    const dl = $('detail-facts');
    const facts = [
      ['State', inst.state],
      ['Type', inst.instance_type],
      ['Zone', inst.availability_zone],
      ['Private IPv4', inst.private_ipv4 || '—'],
      ['IPv6', inst.ipv6 || '—'],
      ['Public IPv4', inst.public_ipv4 || '—'],
      ['Options', inst.options_state + ' (generation ' + inst.generation + ')'],
      ['Served by', inst.served_by || '—'],
    ];
    const tags = Object.entries(inst.tags || {});
    facts.push(['Tags', tags.length ? tags.map(([k, v]) => k + '=' + v).join(', ') : '—']);
    const nodes = [];
    for (const [k, v] of facts) {
      nodes.push(el('dt', null, k));
      nodes.push(el('dd', null, v));
    }
    dl.replaceChildren(...nodes);
  }

  /**
   * Draws `buckets` ({t, value}; value null = no data) as SVG bars in
   * `figure`. Only numbers and times we format go into the SVG.
   */
  function drawBars(figure, buckets, labelEvery, fmtLabel, unit) {
    const W = 640;
    const H = 150;
    const left = 34;
    const right = 6;
    const top = 10;
    const bottom = 22;
    const plotW = W - left - right;
    const plotH = H - top - bottom;
    const values = buckets.map((b) => (b.value === null ? 0 : b.value));
    const max = Math.max(1, ...values);
    const scaleMax = niceCeil(max);
    const slot = plotW / buckets.length;
    const root = svg('svg', {
      viewBox: '0 0 ' + W + ' ' + H,
      class: 'bars',
      role: 'img',
    });
    let total = 0;
    for (const v of values) total += v;
    const caption = svg('title', {});
    caption.textContent = total + ' IMDSv1 requests, at most ' + max + ' per ' + unit;
    root.appendChild(caption);
    // grid and y labels
    for (const frac of [0, 0.5, 1]) {
      const y = top + plotH - frac * plotH;
      root.appendChild(svg('line', { x1: left, x2: W - right, y1: y, y2: y, class: 'grid' }));
      const label = svg('text', { x: left - 4, y: y + 4, class: 'ylabel', 'text-anchor': 'end' });
      label.textContent = String(Math.round(scaleMax * frac));
      root.appendChild(label);
    }
    buckets.forEach((b, i) => {
      const x = left + i * slot + slot * 0.12;
      const w = Math.max(1, slot * 0.76);
      let rect;
      if (b.value === null) {
        rect = svg('rect', { x: x, y: top + plotH - 1, width: w, height: 1, class: 'nodata' });
      } else if (b.value === 0) {
        rect = svg('rect', { x: x, y: top + plotH - 2, width: w, height: 2, class: 'zero' });
      } else {
        const h = Math.max(2, (b.value / scaleMax) * plotH);
        rect = svg('rect', { x: x, y: top + plotH - h, width: w, height: h, class: 'bar' });
      }
      const tip = svg('title', {});
      tip.textContent = fmtLabel(b.t) + ': ' + (b.value === null ? 'no data' : b.value + ' requests');
      rect.appendChild(tip);
      root.appendChild(rect);
      if (i % labelEvery === 0) {
        const t = svg('text', { x: left + i * slot, y: H - 6, class: 'xlabel' });
        t.textContent = fmtHM(b.t);
        root.appendChild(t);
      }
    });
    figure.querySelector('.chart-body').replaceChildren(root);
    figure.querySelector('.chart-total').textContent = '(' + total + ' requests)';
  }

  function niceCeil(v) {
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  async function loadSeries(id, start, end, period) {
    const q = '/v1/metrics/metadata-no-token?instance_id=' + encodeURIComponent(id) +
      '&start=' + start + '&end=' + end + '&period=' + period;
    const series = await getJSON(q);
    const byTs = new Map(series.datapoints.map((d) => [d.timestamp, d.sum]));
    const buckets = [];
    for (let t = start; t < end; t += period) {
      buckets.push({ t: t, value: byTs.has(t) ? byTs.get(t) : null });
    }
    return buckets;
  }

  function renderCallers(id) {
    const r = reportFor(id);
    const rows = [];
    if (r) {
      for (const c of r.callers) {
        const tr = el('tr');
        tr.appendChild(el('td', 'ip', c.source));
        const ua = el('td', 'ua');
        if (c.user_agent) {
          ua.appendChild(el('code', null, c.user_agent));
        } else {
          ua.appendChild(el('span', 'muted', '(no User-Agent)'));
        }
        tr.appendChild(ua);
        const path = c.path.startsWith('/') ? c.path : '/' + c.path;
        const pathCell = el('td', 'path');
        pathCell.appendChild(el('code', null, path));
        tr.appendChild(pathCell);
        tr.appendChild(el('td', 'num', c.count));
        tr.appendChild(el('td', 'time', fmtTime(c.first_seen)));
        tr.appendChild(el('td', 'time', fmtTime(c.last_seen)));
        rows.push(tr);
      }
    }
    $('callers').tBodies[0].replaceChildren(...rows);
    $('callers').hidden = rows.length === 0;
    $('callers-empty').hidden = rows.length > 0 || !isSafe(id);
    const other = $('callers-other');
    if (r && r.other_requests > 0) {
      other.textContent = r.other_requests + ' more requests from callers no longer listed individually.';
      other.hidden = false;
    } else {
      other.hidden = true;
    }
  }

  function eventDetails(e) {
    switch (e.kind) {
      case 'spot-interruption':
        return e.action + ' at ' + fmtTime(e.time);
      case 'rebalance':
        return 'notice at ' + fmtTime(e.notice_time);
      case 'maintenance':
        return e.code + ': ' + e.description + ' — ' + fmtTime(e.not_before) +
          (e.not_after ? ' to ' + fmtTime(e.not_after) : '') +
          (e.not_before_deadline ? ' (deadline ' + fmtTime(e.not_before_deadline) + ')' : '');
      case 'target-lifecycle-state':
        return e.state;
      default:
        return '';
    }
  }

  function renderEvents(events) {
    const rows = events.map((e) => {
      const tr = el('tr');
      tr.appendChild(el('td', 'id', e.event_id));
      tr.appendChild(el('td', null, e.kind));
      const phase = el('td');
      phase.appendChild(el('span', 'badge phase-' + e.phase, e.phase));
      tr.appendChild(phase);
      tr.appendChild(el('td', null, eventDetails(e)));
      tr.appendChild(el('td', 'time', fmtTime(e.visible_from)));
      return tr;
    });
    $('events').tBodies[0].replaceChildren(...rows);
    $('events').hidden = rows.length === 0;
    $('events-empty').hidden = rows.length > 0;
  }

  async function refreshDetail(gen) {
    const id = state.selected;
    const section = $('detail');
    const inst = state.instances.find((i) => i.instance_id === id);
    if (!inst) {
      section.hidden = true;
      return;
    }
    const now = nowSecs();
    const m0 = Math.floor(now / 60) * 60;
    const h0 = Math.floor(now / 3600) * 3600;
    const [hour, day, events] = await Promise.all([
      loadSeries(id, m0 - 59 * 60, m0 + 60, 60),
      loadSeries(id, h0 - 23 * 3600, h0 + 3600, 3600),
      getJSON('/v1/events?instance_id=' + encodeURIComponent(id)),
    ]);
    if (gen !== state.generation || id !== state.selected) return; // superseded
    $('detail-id').textContent = id;
    $('detail-name').textContent = inst.name ? '(' + inst.name + ')' : '';
    renderFacts(inst);
    drawBars($('chart-hour'), hour, 10, fmtHM, 'minute');
    drawBars($('chart-day'), day, 4, (t) => fmtHM(t) + '–' + fmtHM(t + 3600), 'hour');
    renderCallers(id);
    renderEvents(events);
    section.hidden = false;
  }

  // ---- refresh loop ------------------------------------------------------

  function selectFromHash() {
    const raw = location.hash.replace(/^#/, '');
    let id = null;
    try {
      id = raw ? decodeURIComponent(raw) : null;
    } catch (e) {
      id = null;
    }
    return id;
  }

  async function refresh() {
    clearTimeout(state.timer);
    const gen = ++state.generation;
    try {
      const since = nowSecs() - state.windowSecs;
      const [instances, report] = await Promise.all([
        getJSON('/v1/instances'),
        getJSON('/v1/reports/v1-callers?since=' + since),
      ]);
      if (gen !== state.generation) return;
      state.instances = instances;
      state.report = report;
      const wanted = selectFromHash();
      if (wanted && instances.some((i) => i.instance_id === wanted)) {
        state.selected = wanted;
      } else if (!instances.some((i) => i.instance_id === state.selected)) {
        state.selected = instances.length ? instances[0].instance_id : null;
      }
      renderSummary();
      renderInstances();
      await refreshDetail(gen);
      if (gen !== state.generation) return;
      showError(null);
      $('refresh-status').textContent = 'updated ' + fmtTime(nowSecs()).slice(11);
    } catch (err) {
      if (gen !== state.generation) return;
      showError(err);
      $('refresh-status').textContent = 'refresh failed';
    }
    state.timer = setTimeout(refresh, REFRESH_MS);
  }

  function start() {
    const sel = $('window');
    state.windowSecs = Number(sel.value) || 604800;
    sel.addEventListener('change', () => {
      state.windowSecs = Number(sel.value) || 604800;
      refresh();
    });
    window.addEventListener('hashchange', () => {
      const id = selectFromHash();
      if (id) state.selected = id;
      refresh();
    });
    refresh();
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
  } else {
    start();
  }
})();

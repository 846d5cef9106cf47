// Internal Admin Dashboard: plain JavaScript, no build step, no dependencies.
//
// Safety rule: every value that comes from the API is put into the page as text
// (textContent, createTextNode, attribute values); nothing is ever parsed as HTML.
'use strict';

(() => {
  const API = '/internal/api/v1';
  const TOKEN_KEY = 'bgjobs.adminToken';
  // Polling: every 2 s while a job runs, every 10 s otherwise, and a 30 s safety net while
  // the event stream is live.
  const FAST_POLL_MS = 2000;
  const IDLE_POLL_MS = 10000;
  const SAFETY_POLL_MS = 30000;
  const ERROR_POLL_MS = 15000;
  // A run's details page asks again this soon after a failed read.
  const DETAIL_RETRY_MS = 3000;
  const HISTORY_PAGE = 20;
  const CHART_LIMIT = 500;
  const CHART_MIN_SLOTS = 30;
  const MESSAGE_TTL_MS = 60000;

  const STATUS_LABEL = { success: 'Success', failed: 'Failed', running: 'Running', skipped: 'Skipped' };
  const FILTER_WORD = { success: 'successful', failed: 'failed', running: 'running', skipped: 'skipped' };
  const TRIGGER_LABEL = { schedule: 'Scheduled', catch_up: 'Catch-up', manual: 'Manual' };
  // The stats keys the jobs report first (audio clean-up, cost update); others follow.
  const STATS_FIRST = ['deleted', 'updated', 'unchanged', 'skipped', 'failed'];
  const LEVEL_LABEL = { error: 'Error', warn: 'Warning', info: 'Info' };
  const WORDS = { usd: 'USD', id: 'ID', ids: 'IDs', api: 'API', url: 'URL', ms: 'ms', http: 'HTTP' };

  const state = {
    jobs: null,
    loading: false,
    again: false,
    timer: 0,
    timerDue: 0,
    polledAt: 0,
    lastUpdated: null,
    failedSince: null,
    needsAuth: false,
    authAttempted: false,
    statuses: new Map(),
    messages: new Map(),
    starting: new Set(),
    history: { job: '', status: '', trigger: '', from: '', to: '', cursor: null, rows: 0, seq: 0, signature: '' },
    // Operator controls on the cards: the open pause forms (job -> draft reason) and the
    // jobs with a control request in flight.
    pauseDrafts: new Map(),
    // The cards asking "Cancel run #N?" (job -> execution id).
    cancelDrafts: new Map(),
    // The last real run of each job whose latest execution is a dry run.
    realRuns: new Map(),
    busy: new Set(),
    workers: [],
    route: { kind: 'dashboard' },
    detail: { id: null, seq: 0, timer: 0, run: null, last: null, cancelFor: null, cancelNote: null },
    trends: { seq: 0 },
    // What the token may do (GET /session): a viewer token reads only, so the write
    // controls are shown disabled. `sessionFor` is the token it was asked for.
    canWrite: true,
    sessionFor: null,
  };

  const READ_ONLY_TITLE = 'Read-only: this token may view but not run or change jobs (use the admin token)';
  // The visible note that describes every control a viewer's token may not use.
  const READ_ONLY_NOTE = 'read-only-note';

  const $ = (id) => document.getElementById(id);

  // ---- DOM helpers (text only) ---------------------------------------------------

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === 'class') el.className = value;
      else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
      else el.setAttribute(key, value === true ? '' : String(value));
    }
    append(el, children);
    return el;
  }

  function append(el, children) {
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  const SVG_NS = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined) el.setAttribute(key, String(value));
    }
    return el;
  }

  function icon(name) {
    const tpl = $('icon-' + name);
    return tpl ? tpl.content.firstElementChild.cloneNode(true) : document.createTextNode('');
  }

  function show(el, visible) {
    el.hidden = !visible;
  }

  // ---- formatting ----------------------------------------------------------------

  const exactFormat = new Intl.DateTimeFormat(undefined, {
    year: 'numeric', month: 'short', day: 'numeric',
    hour: '2-digit', minute: '2-digit', second: '2-digit', timeZoneName: 'short',
  });
  const shortFormat = new Intl.DateTimeFormat(undefined, {
    month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit',
  });
  const clockFormat = new Intl.DateTimeFormat(undefined, {
    hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
  const relativeFormat = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
  const numberFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 6 });

  function parseTime(iso) {
    if (typeof iso !== 'string') return null;
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? null : date;
  }

  function utcText(date) {
    return date.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
  }

  function relative(date, now) {
    const seconds = (date.getTime() - now.getTime()) / 1000;
    const abs = Math.abs(seconds);
    if (abs < 45) return seconds < 0 ? 'just now' : 'in a few seconds';
    const units = [
      ['minute', 60, 45 * 60],
      ['hour', 3600, 22 * 3600],
      ['day', 86400, 26 * 86400],
      ['month', 30 * 86400, 320 * 86400],
      ['year', 365 * 86400, Infinity],
    ];
    for (const [unit, size, limit] of units) {
      if (abs < limit) return relativeFormat.format(Math.round(seconds / size), unit);
    }
    return exactFormat.format(date);
  }

  // <time> with the relative text, the exact local time beside it and UTC on hover.
  function timeBlock(iso, now, { exact = true } = {}) {
    const date = parseTime(iso);
    if (!date) return document.createTextNode('—');
    const title = 'UTC: ' + utcText(date);
    const frag = document.createDocumentFragment();
    frag.append(h('time', { datetime: iso, title, class: 'rel' }, relative(date, now)));
    if (exact) frag.append(h('time', { datetime: iso, title, class: 'exact' }, exactFormat.format(date)));
    return frag;
  }

  function duration(ms) {
    if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) return '—';
    if (ms < 1000) return `${Math.round(ms)} ms`;
    const s = ms / 1000;
    if (s < 59.95) return `${s < 10 ? s.toFixed(1) : Math.round(s)} s`;
    const totalSeconds = Math.round(s);
    const m = Math.floor(totalSeconds / 60);
    const rs = totalSeconds % 60;
    if (m < 60) return rs ? `${m} min ${rs} s` : `${m} min`;
    const hours = Math.floor(m / 60);
    const rm = m % 60;
    if (hours < 48) return rm ? `${hours} h ${rm} min` : `${hours} h`;
    const days = Math.floor(hours / 24);
    const rh = hours % 24;
    return rh ? `${days} d ${rh} h` : `${days} d`;
  }

  function elapsedMs(execution, now) {
    if (typeof execution.duration_ms === 'number') return execution.duration_ms;
    const start = parseTime(execution.started_at);
    if (!start) return null;
    const end = parseTime(execution.completed_at) || now;
    return Math.max(0, end.getTime() - start.getTime());
  }

  // `already_absent` -> "Already absent", `cost_usd` -> "Cost USD".
  function humanize(key) {
    const words = String(key)
      .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
      .split(/[\s_\-.]+/)
      .filter(Boolean)
      .map((w) => WORDS[w.toLowerCase()] || w.toLowerCase());
    if (words.length === 0) return String(key) || '(unnamed)';
    const first = words[0];
    words[0] = WORDS[first.toLowerCase()] ? first : first.charAt(0).toUpperCase() + first.slice(1);
    return words.join(' ');
  }

  function formatValue(value) {
    if (value === null || value === undefined) return '—';
    if (typeof value === 'number') {
      // Digits a float does not hold are not shown as if it did (1e30 is not
      // "1,000,000,000,000,000,019,884,624,838,656"), nor is 1e-9 shown as 0.
      const size = Math.abs(value);
      if (size >= 1e15 || (size > 0 && size < 1e-6)) return value.toExponential(3);
      return numberFormat.format(value);
    }
    if (typeof value === 'boolean') return value ? 'Yes' : 'No';
    if (typeof value === 'string') return value === '' ? '—' : value;
    if (Array.isArray(value)) {
      if (value.length === 0) return 'None';
      if (value.every((v) => v === null || typeof v !== 'object')) return value.map(formatValue).join(', ');
    }
    // Deeper than the page lays out: the JSON itself, cut short.
    const text = JSON.stringify(value);
    return text.length > 200 ? text.slice(0, 200) + '…' : text;
  }

  // Every stat as [label, value, isZero]; nested objects are flattened ("Parent › child").
  // Keys starting with `would_` say what a dry run would have done: a real run's are left
  // out (pass its `dry_run`).
  function flattenStats(stats, dryRun) {
    const out = [];
    const walk = (obj, prefix, depth) => {
      for (const [key, value] of Object.entries(obj)) {
        if (!dryRun && depth === 0 && key.startsWith('would_')) continue;
        const label = prefix ? `${prefix} › ${humanize(key)}` : humanize(key);
        if (value && typeof value === 'object' && !Array.isArray(value) && depth < 2) {
          walk(value, label, depth + 1);
        } else {
          out.push([label, formatValue(value), value === 0]);
        }
      }
    };
    if (stats && typeof stats === 'object' && !Array.isArray(stats)) walk(stats, '', 0);
    // Stats that are not an object (a string the server could not read as JSON, a list)
    // are still shown, as they are.
    else if (stats !== null && stats !== undefined && stats !== '') out.push(['Stats', formatValue(stats), false]);
    return out;
  }

  // ---- API -------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  function token() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || '';
    } catch (_) {
      return '';
    }
  }

  function setToken(value) {
    try {
      if (value) sessionStorage.setItem(TOKEN_KEY, value);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch (_) {
      /* storage unavailable: the token lives for this request only */
    }
  }

  async function api(path, options = {}) {
    const headers = { Accept: 'application/json' };
    const bearer = token();
    if (bearer) headers.Authorization = 'Bearer ' + bearer;
    let body;
    if (options.json !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(options.json);
    }
    let response;
    try {
      response = await fetch(API + path, {
        method: options.method || 'GET',
        headers,
        body,
        cache: 'no-store',
        credentials: 'same-origin',
        redirect: 'error',
      });
    } catch (_) {
      throw new ApiError(0, 'unreachable', 'The server did not answer. Check that api-server is running and reachable.');
    }
    let answer = null;
    try {
      answer = await response.json();
    } catch (_) {
      answer = null;
    }
    if (!response.ok) {
      const error = answer && typeof answer === 'object' && answer.error ? answer.error : {};
      const message = typeof error.message === 'string' && error.message
        ? error.message
        : `The server answered HTTP ${response.status}${response.statusText ? ' ' + response.statusText : ''}.`;
      throw new ApiError(response.status, typeof error.code === 'string' ? error.code : 'http_' + response.status, message);
    }
    if (answer === null || typeof answer !== 'object') {
      throw new ApiError(response.status, 'bad_answer', 'The server sent an answer that is not JSON.');
    }
    return answer;
  }

  // ---- auth ------------------------------------------------------------------------

  function needAuth() {
    state.needsAuth = true;
    clearTimeout(state.timer);
    state.timer = 0;
    stopStream();
    show($('auth'), true);
    for (const id of ['jobs-section', 'history', 'workers', 'run-detail', 'trends', 'not-ready', 'read-only-note']) show($(id), false);
    show($('updated'), false);
    show($('refresh'), false);
    show($('sign-out'), false);
    const error = $('auth-error');
    if (state.authAttempted) {
      error.textContent = 'That token was not accepted. Check it and try again.';
      show(error, true);
      $('token-input').select();
    } else if (token()) {
      error.textContent = 'The saved token is no longer accepted. Enter the current admin token.';
      show(error, true);
    } else {
      show(error, false);
    }
    setToken('');
    $('token-input').focus();
    announce('The admin token is required.');
  }

  function onAuthSubmit(event) {
    event.preventDefault();
    const input = $('token-input');
    const value = input.value.trim();
    const error = $('auth-error');
    if (!value) {
      error.textContent = 'Enter the admin token.';
      show(error, true);
      input.focus();
      return;
    }
    setToken(value);
    state.authAttempted = true;
    refresh();
  }

  function leaveAuth() {
    if (!state.needsAuth) return;
    state.needsAuth = false;
    state.authAttempted = false;
    $('token-input').value = '';
    show($('auth'), false);
    applyRoute();
    renderReady();
    renderReadOnly();
    show($('refresh'), true);
    $('main').focus({ preventScroll: true });
  }

  // ---- refresh loop ----------------------------------------------------------------

  function anyRunning() {
    return Array.isArray(state.jobs) && state.jobs.some((j) => j.latest_execution && j.latest_execution.status === 'running');
  }

  // The next poll is counted from the end of the previous one, whatever else happens in
  // between: a stream that keeps failing (and retrying) never puts it off. A poll already
  // due sooner than the current pace asks for is kept.
  function schedule() {
    if (state.needsAuth) {
      clearTimeout(state.timer);
      state.timer = 0;
      return;
    }
    const delay = state.failedSince ? ERROR_POLL_MS : streamLive() ? SAFETY_POLL_MS : anyRunning() ? FAST_POLL_MS : IDLE_POLL_MS;
    const due = (state.polledAt || Date.now()) + delay;
    if (state.timer && state.timerDue <= due) return;
    clearTimeout(state.timer);
    state.timerDue = due;
    state.timer = setTimeout(() => {
      state.timer = 0;
      refresh();
    }, Math.max(0, due - Date.now()));
  }

  async function refresh() {
    if (state.loading) {
      // A refresh asked for during another one (e.g. right after Run now) runs after it,
      // so that its answer is not one read before the change.
      state.again = true;
      return;
    }
    state.again = false;
    state.loading = true;
    clearTimeout(state.timer);
    state.timer = 0;
    const button = $('refresh');
    button.setAttribute('aria-busy', 'true');
    try {
      const asked = Date.now();
      const body = await api('/jobs');
      if (!Array.isArray(body.data)) throw new ApiError(200, 'bad_answer', 'The server sent an unexpected answer.');
      leaveAuth();
      state.jobs = keepNewer(body.data, asked);
      state.lastUpdated = new Date();
      state.failedSince = null;
      show($('load-error'), false);
      renderJobs();
      retryRealRuns();
      noticeChanges();
      if (token()) show($('sign-out'), true);
      loadSession();
      syncHistory();
      loadWorkers();
      // The job's name and whether it may run again come from the jobs list.
      if (state.route.kind === 'detail' && state.detail.last) renderDetail(...state.detail.last);
      if (state.route.kind === 'trends') {
        const job = state.jobs.find((j) => j.job_name === state.route.job);
        if (job) $('trends-title').textContent = `Trends · ${job.display_name}`;
      }
      ensureStream();
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) {
        needAuth();
      } else {
        state.failedSince = state.failedSince || new Date();
        showLoadError(error);
      }
    } finally {
      state.loading = false;
      state.polledAt = Date.now();
      button.removeAttribute('aria-busy');
      renderUpdated();
      if (state.again && !state.needsAuth) setTimeout(refresh, 0);
      else schedule();
    }
  }

  // Asks once per token what it may do, and redraws the controls when that changes.
  async function loadSession() {
    const asked = token();
    if (state.sessionFor === asked) return;
    state.sessionFor = asked;
    try {
      const body = await api('/session');
      const canWrite = !(body.data && body.data.can_write === false);
      if (state.sessionFor !== asked || canWrite === state.canWrite) return;
      state.canWrite = canWrite;
      renderReadOnly();
      renderJobs();
      if (state.route.kind === 'detail' && state.detail.last) renderDetail(...state.detail.last);
    } catch (error) {
      // An older server without the route: offer everything, the API still decides.
      if (state.sessionFor === asked) state.sessionFor = null;
    }
  }

  // A viewer's token: a visible note says why the write controls are off (and describes
  // each of them, through aria-describedby).
  function renderReadOnly() {
    show($(READ_ONLY_NOTE), !state.canWrite && !state.needsAuth);
  }

  function showLoadError(error) {
    const unreachable = error instanceof ApiError && error.status === 0;
    const title = unreachable ? 'Cannot reach the jobs API' : 'The jobs API answered with an error';
    const detail = error instanceof ApiError
      ? (error.status ? `${error.message} (HTTP ${error.status}, ${error.code})` : error.message)
      : 'Something went wrong while loading the jobs.';
    if (state.jobs) {
      $('load-error-title').textContent = `${title} — showing data from ${clockFormat.format(state.lastUpdated)}`;
    } else {
      $('load-error-title').textContent = title;
      const grid = $('jobs');
      grid.replaceChildren();
      grid.setAttribute('aria-busy', 'false');
    }
    $('load-error-detail').textContent = `${detail} Retrying automatically every ${ERROR_POLL_MS / 1000} s.`;
    show($('load-error'), true);
  }

  function renderUpdated() {
    const el = $('updated');
    if (!state.lastUpdated || state.needsAuth) {
      show(el, false);
      return;
    }
    const fast = anyRunning();
    const mode = state.failedSince ? 'retrying' : ready.problem ? 'not-ready' : streamLive() ? 'stream' : fast ? 'fast' : 'slow';
    el.classList.toggle('is-fast', (mode === 'stream' || mode === 'fast'));
    el.classList.toggle('is-stale', mode === 'retrying' || mode === 'not-ready');
    el.dataset.mode = mode;
    $('updated-text').textContent = `Updated ${clockFormat.format(state.lastUpdated)}`;
    $('updated-mode').textContent = ` · ${{ retrying: 'retrying', 'not-ready': 'may be out of date', stream: 'live', fast: 'every 2 s', slow: `every ${IDLE_POLL_MS / 1000} s` }[mode]}`;
    show(el, true);
  }

  function announce(text) {
    const el = $('announce');
    el.textContent = '';
    // A fresh text node after a tick makes screen readers read repeated messages too.
    setTimeout(() => {
      el.textContent = text;
    }, 50);
  }

  // Announces a job that started or finished since the previous refresh.
  function noticeChanges() {
    const lines = [];
    for (const job of state.jobs) {
      const latest = job.latest_execution;
      const key = latest ? `${latest.id}:${latest.status}` : 'none';
      const before = state.statuses.get(job.job_name);
      if (before !== undefined && before !== key && latest) {
        if (latest.status === 'running') lines.push(`${job.display_name} is running${latest.dry_run ? ' a dry run' : ''}.`);
        else if (latest.dry_run) lines.push(`${job.display_name} finished a dry run${latest.status === 'failed' ? ', which failed' : ''}.`);
        else lines.push(`${job.display_name} finished: ${STATUS_LABEL[latest.status] || latest.status}.`);
        if (latest.status !== 'running') state.cancelDrafts.delete(job.job_name);
        const message = state.messages.get(job.job_name);
        // A note about the run in progress is over with it; one that already tells how the
        // run ended (a cancel that closed it) stays.
        if (message && message.kind === 'ok' && !message.final && latest.status !== 'running') state.messages.delete(job.job_name);
      }
      state.statuses.set(job.job_name, key);
    }
    if (lines.length) announce(lines.join(' '));
  }

  // ---- readiness -------------------------------------------------------------------
  //
  // The jobs' routes answer from the server's memory, so they go on answering (and the
  // stream stays open) while the server cannot reach the database or is stopping. GET
  // /readyz says so: the page asks it every few seconds and on every stream failure, and
  // while it is not ready shows why and does not call its figures live.

  const READY_POLL_MS = 5000;
  const READY_TEXT = {
    database_unavailable: (at) => [
      'This server cannot reach the database',
      `Figures ${at ? `as of ${clockFormat.format(at)} ` : ''}may be out of date: changes made since (runs, pauses, on this or any server) are not shown until it reaches the database again.`,
    ],
    shutting_down: () => [
      'This server is shutting down',
      'It starts no new runs and its figures may stop updating. Reload the page to reach another server.',
    ],
    not_ready: () => [
      'This server has not read the jobs\' state yet',
      'It cannot reach the database since it started; the figures shown may be out of date.',
    ],
  };
  const ready = { timer: 0, problem: null, okAt: null, seq: 0 };

  async function checkReady() {
    clearTimeout(ready.timer);
    const seq = ++ready.seq;
    let problem = null;
    try {
      const response = await fetch('/readyz', { headers: { Accept: 'application/json' }, cache: 'no-store', credentials: 'same-origin', redirect: 'error' });
      if (!response.ok) {
        let code = '';
        try {
          const body = await response.json();
          code = body && body.error && typeof body.error.code === 'string' ? body.error.code : '';
        } catch (_) {
          /* not JSON: the status says enough */
        }
        problem = code || `http_${response.status}`;
      }
    } catch (_) {
      // No answer at all: the jobs' own requests fail too and say so.
      problem = null;
    }
    if (seq !== ready.seq) return;
    const was = ready.problem;
    if (!problem) ready.okAt = new Date();
    ready.problem = problem;
    renderReady();
    // Back: read what changed meanwhile at once.
    if (was && !problem && !state.needsAuth) refresh();
    ready.timer = setTimeout(checkReady, READY_POLL_MS);
  }

  function renderReady() {
    const el = $('not-ready');
    if (!ready.problem || state.needsAuth) {
      show(el, false);
      renderUpdated();
      return;
    }
    const text = READY_TEXT[ready.problem] || (() => [
      'This server is not ready',
      `It answered /readyz with ${ready.problem}; the figures shown may be out of date.`,
    ]);
    const [title, detail] = text(ready.okAt);
    el.dataset.problem = ready.problem;
    $('not-ready-title').textContent = title;
    $('not-ready-detail').textContent = detail;
    show(el, true);
    renderUpdated();
  }

  // ---- live updates ----------------------------------------------------------------
  //
  // GET /events read through fetch streaming (EventSource cannot send the bearer token).
  // While it is open, each `job` event replaces its card and polling slows to a 30 s safety
  // net; when it fails or ends, polling takes over at its usual pace and the stream is
  // tried again with backoff, resuming from the last event id it had.
  //
  // An open connection is not proof that events still arrive: a proxy may hold it open and
  // forward nothing. The server writes a `: heartbeat` comment every EVENTS_HEARTBEAT_SECS
  // (15 by default), so a stream silent for over twice that is taken for stalled: it is
  // dropped like a failed one. The next stream is not called live on opening, as the
  // first events of a stream pass even such a proxy: only once a heartbeat comes through.

  const STREAM_RETRY_MS = 1000;
  const STREAM_RETRY_MAX_MS = 30000;
  const STREAM_STALL_MS = 35000;
  const live = {
    controller: null, connected: false, retryMs: STREAM_RETRY_MS, timer: 0, lastId: '', updatedAt: new Map(), historyTimer: 0,
    // Set when a stream stalled, cleared by the first heartbeat of a later one.
    suspect: false,
  };

  // Whether the page may rely on the stream (and call itself live).
  function streamLive() {
    return live.connected && !live.suspect;
  }

  function ensureStream() {
    if (live.controller || live.timer || state.needsAuth) return;
    if (typeof ReadableStream === 'undefined' || typeof TextDecoder === 'undefined') return;
    openStream();
  }

  function stopStream() {
    clearTimeout(live.timer);
    live.timer = 0;
    live.lastId = '';
    if (live.controller) live.controller.abort();
  }

  async function openStream() {
    const controller = new AbortController();
    live.controller = controller;
    const headers = { Accept: 'text/event-stream' };
    const bearer = token();
    if (bearer) headers.Authorization = 'Bearer ' + bearer;
    if (live.lastId) headers['Last-Event-ID'] = live.lastId;
    let opened = false;
    let stalled = false;
    let watchdog = 0;
    // Restarted by every byte that arrives.
    const watch = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => {
        stalled = true;
        live.suspect = true;
        controller.abort();
      }, STREAM_STALL_MS);
    };
    try {
      const response = await fetch(API + '/events', {
        headers, cache: 'no-store', credentials: 'same-origin', redirect: 'error', signal: controller.signal,
      });
      if (!response.ok || !response.body) {
        if (response.status === 401) needAuth();
        return;
      }
      opened = true;
      watch();
      live.connected = true;
      if (!live.suspect) live.retryMs = STREAM_RETRY_MS;
      schedule();
      renderUpdated();
      // Back after an outage: read the state now instead of at the next slow poll, so the
      // error banner and a run shown as running do not outlive the outage.
      if (state.failedSince) refresh();
      if (state.route.kind === 'detail' && state.route.id !== null && state.detail.id === state.route.id
        && (!state.detail.run || state.detail.run.status === 'running')) {
        loadDetail(state.route.id, false);
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        watch();
        buffer += decoder.decode(value, { stream: true });
        let at;
        while ((at = buffer.indexOf('\n\n')) >= 0) {
          onStreamBlock(buffer.slice(0, at));
          buffer = buffer.slice(at + 2);
        }
      }
    } catch (_) {
      /* a broken stream is a closed stream: polling takes over below */
    } finally {
      clearTimeout(watchdog);
      live.connected = false;
      live.controller = null;
      // Aborted by the page itself (sign-out) unless it stalled.
      if ((stalled || !controller.signal.aborted) && !state.needsAuth) {
        checkReady();
        live.timer = setTimeout(() => {
          live.timer = 0;
          ensureStream();
        }, live.retryMs);
        live.retryMs = Math.min(live.retryMs * 2, STREAM_RETRY_MAX_MS);
        // Back to polling at its usual pace, starting with what the stream may have missed.
        if (opened) refresh();
        else schedule();
        renderUpdated();
      }
    }
  }

  // One server-sent event: `id:`, `event:` and one `data:` line of JSON; comments (the
  // heartbeat) start with a colon.
  // A job list asked for before a job's latest event is older than that event: the
  // event's version of the job stays.
  function keepNewer(jobs, asked) {
    if (!Array.isArray(state.jobs)) return jobs;
    return jobs.map((job) => {
      const at = live.updatedAt.get(job.job_name);
      if (at === undefined || at < asked) return job;
      return state.jobs.find((j) => j.job_name === job.job_name) || job;
    });
  }

  function trustStream() {
    live.suspect = false;
    live.retryMs = STREAM_RETRY_MS;
    schedule();
    renderUpdated();
  }

  function onStreamBlock(block) {
    let kind = 'message';
    let data = '';
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) {
        // A heartbeat: this stream carries what the server writes now.
        if (live.suspect) trustStream();
        continue;
      }
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'id') live.lastId = value;
      else if (field === 'event') kind = value;
      else if (field === 'data') data += value;
    }
    if (kind === 'execution' && data) {
      onExecutionEvent(data);
      return;
    }
    if (kind !== 'job' || !data || !Array.isArray(state.jobs)) return;
    let job;
    try {
      job = JSON.parse(data);
    } catch (_) {
      return;
    }
    const at = state.jobs.findIndex((j) => j.job_name === job.job_name);
    if (at < 0) return;
    // The whole entry of GET /jobs: its latest execution, backlog and pause state (a pause
    // or resume made on any server arrives as a `job` event too).
    state.jobs[at] = job;
    live.updatedAt.set(job.job_name, Date.now());
    state.lastUpdated = new Date();
    renderJobs();
    noticeChanges();
    syncHistory();
    // The detail view takes the job's name and whether it may run again from the list.
    if (state.route.kind === 'detail' && state.detail.last) renderDetail(...state.detail.last);
  }

  // A skipped slot never becomes a job's latest execution, so no `job` event follows it:
  // the history shows it by reloading when it matches the list's job filter.
  function onExecutionEvent(data) {
    let run;
    try {
      run = JSON.parse(data);
    } catch (_) {
      return;
    }
    if (!run || run.status !== 'skipped' || state.route.kind !== 'dashboard') return;
    if (state.history.job && state.history.job !== run.job_name) return;
    // One reload for a burst (several jobs' slots skipped in the same second).
    clearTimeout(live.historyTimer);
    live.historyTimer = setTimeout(() => loadHistory(true), 250);
  }

  // ---- cards -----------------------------------------------------------------------
  //
  // A card is rebuilt as a detached element and then patched into the one on the page:
  // only changed text and attributes are written, so its buttons stay the same elements
  // while a run advances (a click is never lost to a re-render). The cards carry no event
  // listeners of their own: one listener on the grid acts on `data-action`, for the job
  // the card shows at the moment of the click.

  function jobState(job) {
    const latest = job.latest_execution;
    if (latest && latest.status === 'running') return 'running';
    if (!job.enabled) return 'disabled';
    if (job.paused) return 'paused';
    if (!latest) return 'never';
    const real = outcomeRun(job);
    if (real === UNKNOWN) return 'unknown';
    if (!real) return 'dry';
    return real.status === 'failed' ? 'failed' : 'success';
  }

  function badge(kind, text) {
    return h('span', { class: `badge badge-${kind}`, 'data-badge': kind }, icon(kind), h('span', { class: 'badge-text' }, text));
  }

  // A finished dry run changed nothing: it has its own neutral badge, never "Success".
  function runBadge(run) {
    if (run.dry_run && run.status !== 'running') {
      if (run.status === 'failed') return badge('dry', 'Dry run failed');
      if (run.status === 'skipped') return badge('skipped', 'Skipped');
      return badge('dry', 'Dry run');
    }
    const status = STATUS_LABEL[run.status] ? run.status : 'never';
    return badge(status, STATUS_LABEL[run.status] || String(run.status));
  }

  // User-supplied text (reasons, names, messages) in its own bidirectional context, so that
  // an override character in it cannot reorder the text around it.
  function iso(text) {
    return h('bdi', {}, text);
  }

  function fact(label, value, wide) {
    return h('div', { class: wide ? 'fact fact-wide' : 'fact' }, h('dt', {}, label), h('dd', {}, value));
  }

  // The last real outcome could not be read (the lookup failed): not the same as none.
  const UNKNOWN = Object.freeze({ unknown: true });

  // The latest real run (not a dry run) of a job whose latest execution is a finished dry
  // run: `undefined` while it is first looked up, `null` when there is none, UNKNOWN when
  // the lookup failed (asked again at the next refresh).
  function lastRealRun(job) {
    const latest = job.latest_execution;
    const known = state.realRuns.get(job.job_name);
    if (known && known.forId === latest.id) return known.run;
    state.realRuns.set(job.job_name, { forId: latest.id, run: undefined, asking: false });
    findRealRun(job.job_name, latest.id);
    return undefined;
  }

  // Its whole history, not a recent page of it: a job may have run many dry runs since.
  // Real runs that ended (a skipped slot has no outcome), the newer of the last success
  // and the last failure.
  async function findRealRun(name, forId) {
    const known = state.realRuns.get(name);
    if (!known || known.forId !== forId || known.asking) return;
    known.asking = true;
    const ask = (status) => api('/jobs/executions?' + new URLSearchParams({
      job_name: name, dry_run: 'false', status, limit: '1', since: '0001-01-01T00:00:00Z',
    }).toString()).then((page) => (Array.isArray(page.data) && page.data[0]) || null);
    let run;
    try {
      const [success, failed] = await Promise.all([ask('success'), ask('failed')]);
      const newer = (a, b) => (parseTime(a.started_at) - parseTime(b.started_at) || a.id - b.id) > 0;
      run = success && failed ? (newer(success, failed) ? success : failed) : success || failed;
    } catch (error) {
      run = UNKNOWN;
      if (error instanceof ApiError && error.status === 401) needAuth();
    }
    known.asking = false;
    if (state.realRuns.get(name) !== known) return;
    known.run = run;
    renderJobs();
  }

  // Each refresh asks again for the last real runs that could not be read.
  function retryRealRuns() {
    for (const [name, known] of state.realRuns) if (known.run === UNKNOWN) findRealRun(name, known.forId);
  }

  // The run whose outcome a card shows: the latest one, or, when that is a finished dry
  // run, the latest real one before it (null: none known; UNKNOWN: it could not be read).
  function outcomeRun(job) {
    const latest = job.latest_execution;
    if (!latest) return null;
    if (!latest.dry_run || latest.status === 'running') return latest;
    return lastRealRun(job) || null;
  }

  function renderCard(job, now) {
    const latest = job.latest_execution || null;
    const running = Boolean(latest && latest.status === 'running');
    const dry = latest && latest.dry_run && !running ? latest : null;
    const found = dry ? lastRealRun(job) : undefined;
    const unknown = found === UNKNOWN;
    const real = unknown ? undefined : found;
    // The run the facts, stats and error are about.
    const shown = dry ? real || dry : latest;
    const status = running ? 'running' : !latest ? 'never' : unknown ? 'unknown' : dry && !real ? 'dry' : shown.status;
    const id = 'job-' + String(job.job_name).replace(/[^A-Za-z0-9_-]/g, '_');

    const badges = h('div', { class: 'badges' });
    if (status === 'success') badges.append(badge('success', 'Success'));
    else if (status === 'failed') badges.append(badge('failed', 'Failed'));
    else if (running) badges.append(badge('running', 'Running'));
    else if (status === 'never') badges.append(badge('never', 'Never run'));
    else if (status === 'unknown') badges.append(badge('unknown', 'Outcome unknown'));
    if (latest && latest.dry_run) badges.append(running ? badge('dry', 'Dry run') : runBadge(latest));
    if (!job.enabled) badges.append(badge('disabled', 'Disabled'));
    if (job.paused) badges.append(badge('paused', 'Paused'));

    const subParts = [job.job_name];
    if (shown) {
      subParts.push(`${TRIGGER_LABEL[shown.trigger] || shown.trigger} run`);
      if (shown.attempt > 1) subParts.push(`attempt ${shown.attempt} of ${job.max_attempts}`);
      if (shown.dry_run) subParts.push('dry run');
    }

    const head = h('div', { class: 'card-head' },
      h('div', { class: 'card-title' },
        h('h3', { id: id + '-title' }, job.display_name || job.job_name),
        h('p', { class: 'card-sub' }, subParts.join(' · '))),
      badges);

    const facts = h('dl', { class: 'facts' });
    if (!shown) {
      facts.append(fact('Last run', 'Never'));
      facts.append(fact('Duration', '—'));
    } else if (running) {
      facts.append(fact('Started', timeBlock(shown.started_at, now)));
      facts.append(fact('Running for', duration(elapsedMs(shown, now))));
    } else {
      facts.append(fact(shown.dry_run ? 'Last run (dry)' : 'Last run', timeBlock(shown.started_at, now)));
      facts.append(fact('Duration', duration(shown.duration_ms)));
    }
    if (job.enabled && job.paused) {
      facts.append(fact('Next run', 'Not scheduled while paused'));
    } else if (job.enabled) {
      facts.append(fact('Next run', job.next_run_at ? timeBlock(job.next_run_at, now) : 'Not scheduled'));
    } else {
      facts.append(fact('Next run', 'Not scheduled while disabled'));
    }
    const schedule = h('span', {}, job.schedule_description || job.schedule || '—');
    const cron = job.schedule ? h('code', { class: 'exact' }, `${job.schedule}${job.timezone ? ' · ' + job.timezone : ''}`) : null;
    facts.append(fact('Schedule', [schedule, cron]));
    if (job.backlog !== undefined && job.backlog !== null) {
      facts.append(h('div', { class: 'fact', 'data-role': 'backlog' }, h('dt', {}, 'Backlog'), h('dd', {}, formatValue(job.backlog))));
    }

    const card = h('article', {
      class: 'card',
      'data-job': job.job_name,
      'data-state': jobState(job),
      'data-status': status,
      'data-dry-run': latest && latest.dry_run ? 'true' : null,
      'aria-labelledby': id + '-title',
      tabindex: '-1',
    }, head, facts);

    if (!job.enabled) {
      card.append(h('div', { class: 'note note-disabled', 'data-role': 'disabled-reason' },
        icon('disabled'),
        h('div', { class: 'note-body' },
          h('p', { class: 'note-title' }, 'Disabled'),
          h('p', {}, iso(job.disabled_reason || 'This job is switched off.')))));
    }

    // A pause is run-time state, kept whether or not the job is also disabled: it shows,
    // and can be lifted, either way.
    if (job.paused) card.append(pausedNote(job, now));

    if (dry) card.append(dryNote(dry, found, now));

    if (shown && shown.status === 'failed' && !(dry && shown === dry)) {
      card.append(h('div', { class: 'note note-error', 'data-role': 'error' },
        icon('failed'),
        h('div', { class: 'note-body' },
          h('p', { class: 'note-title' }, 'Error'),
          h('pre', { class: 'error-text', dir: 'auto' }, shown.error_message || 'No error message was recorded.'))));
    }

    if (shown) {
      const title = running ? 'Progress' : shown.dry_run ? 'What the dry run would have done' : dry ? 'Stats of the last real run' : 'Stats of the last run';
      const statsHead = h('div', { class: 'stats-head' },
        h('h4', { class: 'stats-title', id: id + '-stats' }, title),
        running ? h('span', { class: 'live' }, 'Live') : null);
      const rows = flattenStats(shown.stats, shown.dry_run);
      const body = rows.length
        ? h('dl', { class: 'stats', 'aria-labelledby': id + '-stats' },
          rows.map(([label, value, zero]) => h('div', { class: zero ? 'stat stat-zero' : 'stat' }, h('dt', {}, iso(label)), h('dd', {}, iso(value)))))
        : h('p', { class: 'no-stats' }, running ? 'No progress reported yet.' : 'No stats were recorded.');
      card.append(h('div', { class: 'stats-block' }, statsHead, body));
    } else {
      card.append(h('p', { class: 'no-stats' }, 'This job has not run yet.'));
    }

    const starting = state.starting.has(job.job_name);
    const runDisabled = running || !job.enabled || starting || !state.canWrite;
    const runLabel = running ? 'Running…' : starting ? 'Starting…' : 'Run now';
    const reasonId = id + '-run-reason';
    const runButton = h('button', {
      type: 'button',
      class: 'btn btn-primary',
      'data-action': 'run',
      disabled: runDisabled,
      'aria-describedby': !job.enabled ? reasonId : !state.canWrite ? READ_ONLY_NOTE : null,
      title: !job.enabled ? `Disabled: ${job.disabled_reason || 'switched off'}` : running ? 'This job is running now' : !state.canWrite ? READ_ONLY_TITLE : null,
    }, running ? icon('running') : icon('play'), h('span', { 'data-role': 'run-label' }, runLabel));
    const historyButton = h('button', {
      type: 'button',
      class: 'btn',
      'data-action': 'history',
      'aria-controls': 'history',
    }, icon('history'), 'History');
    const actions = h('div', { class: 'card-actions' }, runButton, historyButton, ...controlButtons(job, latest));
    if (state.pauseDrafts.has(job.job_name)) actions.append(pauseForm(job));
    if (running && state.cancelDrafts.get(job.job_name) === latest.id) actions.append(cancelConfirm(latest.id));
    if (!job.enabled) {
      actions.append(h('span', { id: reasonId, class: 'visually-hidden', 'data-role': 'run-reason' }, `Run now is unavailable: the job is disabled (${job.disabled_reason || 'switched off'}).`));
    }
    let message = state.messages.get(job.job_name);
    // "Cancellation requested" is about a run in progress: it goes when that run ends.
    if (message && message.runId !== undefined && !message.final && !(running && latest.id === message.runId)) {
      state.messages.delete(job.job_name);
      message = undefined;
    }
    const msg = h('p', { class: 'run-msg', role: 'status', 'data-role': 'run-message' });
    if (message && now - message.at < MESSAGE_TTL_MS) {
      msg.textContent = message.text;
      msg.classList.add(message.kind === 'ok' ? 'msg-ok' : 'msg-error');
    }
    actions.append(msg);
    card.append(actions);
    return card;
  }

  // Says what the latest execution, a dry run, did; the card's outcome is the real run's.
  function dryNote(run, real, now) {
    const at = parseTime(run.started_at);
    const ended = run.status === 'failed' ? 'failed' : run.status === 'skipped' ? 'was skipped' : 'finished';
    let after = '';
    if (real === UNKNOWN) after = ' The outcome of the last real run could not be loaded; the page asks again at its next refresh.';
    else if (real) after = ' The outcome shown is that of the last real run.';
    else if (real === null) after = ' No real run of this job is recorded: the card shows the dry run.';
    return h('div', { class: 'note note-dry-run', 'data-role': 'dry-run' },
      icon('dry'),
      h('div', { class: 'note-body' },
        h('p', { class: 'note-title' }, 'Latest run: a dry run'),
        h('p', {}, 'Dry run ', h('a', { href: `#/executions/${run.id}`, 'data-role': 'open-dry-run' }, `#${run.id}`),
          ` ${ended}${at ? ' ' + relative(at, now) : ''} and changed nothing.${after}`),
        run.status === 'failed' ? h('pre', { class: 'error-text', dir: 'auto' }, run.error_message || 'No error message was recorded.') : null));
  }

  // Makes `el` (on the page) look like `next` (detached), keeping every element that is
  // still there: same tag in the same place, or the same `data-action` / `data-role` /
  // `data-job` key among its siblings.
  function keyOf(node) {
    if (node.nodeType !== Node.ELEMENT_NODE) return '';
    return node.getAttribute('data-job') || node.getAttribute('data-action') || node.getAttribute('data-role') || '';
  }

  function sameKind(a, b) {
    return a.nodeType === b.nodeType && a.nodeName === b.nodeName && keyOf(a) === keyOf(b);
  }

  function patch(el, next) {
    if (el.nodeType !== Node.ELEMENT_NODE) {
      if (el.nodeValue !== next.nodeValue) el.nodeValue = next.nodeValue;
      return;
    }
    for (const { name } of Array.from(el.attributes)) if (!next.hasAttribute(name)) el.removeAttribute(name);
    for (const { name, value } of Array.from(next.attributes)) if (el.getAttribute(name) !== value) el.setAttribute(name, value);
    patchChildren(el, next);
  }

  function patchChildren(parent, next) {
    const keyed = new Map();
    for (const child of parent.childNodes) {
      const key = keyOf(child);
      if (key && !keyed.has(key)) keyed.set(key, child);
    }
    let cursor = parent.firstChild;
    for (const child of Array.from(next.childNodes)) {
      const key = keyOf(child);
      let old = null;
      if (key) {
        old = keyed.get(key) || null;
        keyed.delete(key);
        if (old && !sameKind(old, child)) old = null;
      } else if (cursor && sameKind(cursor, child)) {
        old = cursor;
      }
      if (old) {
        patch(old, child);
        if (old === cursor) cursor = cursor.nextSibling;
        else parent.insertBefore(old, cursor);
      } else {
        parent.insertBefore(child, cursor);
      }
    }
    while (cursor) {
      const after = cursor.nextSibling;
      cursor.remove();
      cursor = after;
    }
  }

  function renderJobs() {
    const grid = $('jobs');
    const now = new Date();
    const jobs = state.jobs || [];

    // A control that disappears (its card's state changed) hands keyboard focus to its card.
    const active = document.activeElement;
    const activeCard = active && active.closest ? active.closest('[data-job]') : null;
    const focusJob = activeCard ? activeCard.getAttribute('data-job') : null;

    patchChildren(grid, h('div', {}, ...jobs.map((job) => renderCard(job, now))));
    grid.setAttribute('aria-busy', 'false');

    if (focusJob !== null && !grid.contains(active)) {
      const card = Array.from(grid.children).find((c) => c.getAttribute('data-job') === focusJob);
      if (card) card.focus({ preventScroll: true });
    }

    const summary = $('jobs-summary');
    const counts = { running: 0, failed: 0, success: 0, never: 0, dry: 0, unknown: 0, disabled: 0 };
    for (const job of jobs) {
      const latest = job.latest_execution;
      if (!latest) counts.never += 1;
      else if (latest.status === 'running') counts.running += 1;
      else {
        // A dry run is no success or failure: the last real run's outcome counts.
        const real = outcomeRun(job);
        if (real === UNKNOWN) counts.unknown += 1;
        else if (!real) counts.dry += 1;
        else if (real.status in counts) counts[real.status] += 1;
      }
      if (!job.enabled) counts.disabled += 1;
    }
    const parts = [`${jobs.length} ${jobs.length === 1 ? 'job' : 'jobs'}`];
    if (counts.running) parts.push(`${counts.running} running`);
    if (counts.failed) parts.push(`${counts.failed} failed`);
    if (counts.success) parts.push(`${counts.success} succeeded`);
    if (counts.dry) parts.push(`${counts.dry} with dry runs only`);
    if (counts.unknown) parts.push(`${counts.unknown} with the last outcome unknown`);
    if (counts.never) parts.push(`${counts.never} never run`);
    if (counts.disabled) parts.push(`${counts.disabled} disabled`);
    summary.textContent = parts.join(' · ');

    const empty = $('empty');
    if (jobs.length === 0) {
      $('empty-title').textContent = 'No jobs are registered';
      $('empty-detail').textContent = 'This server has no background jobs to show.';
      show(empty, true);
    } else if (jobs.every((j) => !j.latest_execution)) {
      $('empty-title').textContent = 'Nothing has run yet';
      const upcoming = jobs
        .filter((j) => j.enabled && parseTime(j.next_run_at))
        .sort((a, b) => parseTime(a.next_run_at) - parseTime(b.next_run_at))[0];
      $('empty-detail').textContent = upcoming
        ? `No job has run on this server yet. The first scheduled run is ${upcoming.display_name}, ${relative(parseTime(upcoming.next_run_at), now)} (${exactFormat.format(parseTime(upcoming.next_run_at))}).`
        : 'No job has run on this server yet, and none is scheduled: every job is disabled.';
      show(empty, true);
    } else {
      show(empty, false);
    }
    renderUpdated();
  }

  // One listener for every card control: it acts on the job as the page knows it now.
  function cardJob(target) {
    const card = target.closest('article[data-job]');
    if (!card) return null;
    const name = card.getAttribute('data-job');
    return (state.jobs || []).find((j) => j.job_name === name) || null;
  }

  function onCardClick(event) {
    const control = event.target.closest('[data-action]');
    if (!control || control.disabled || control.tagName === 'A' || control.tagName === 'INPUT') return;
    const job = cardJob(control);
    if (!job) return;
    const name = job.job_name;
    const latest = job.latest_execution;
    switch (control.getAttribute('data-action')) {
      case 'run':
        runNow(job);
        break;
      case 'history':
        openHistory(name);
        break;
      case 'dry-run':
        dryRun(job);
        break;
      case 'resume':
        resumeJob(job);
        break;
      case 'pause': {
        state.pauseDrafts.set(name, '');
        renderJobs();
        const input = document.querySelector(`article[data-job="${CSS.escape(name)}"] [data-action=pause-reason]`);
        if (input) input.focus();
        break;
      }
      case 'pause-confirm':
        pauseJob(job, state.pauseDrafts.get(name) || '');
        break;
      case 'pause-cancel':
        state.pauseDrafts.delete(name);
        renderJobs();
        focusControl(name, 'pause');
        break;
      case 'cancel':
        if (latest && latest.status === 'running') {
          state.cancelDrafts.set(name, latest.id);
          renderJobs();
          focusControl(name, 'cancel-confirm');
        }
        break;
      case 'cancel-confirm': {
        const id = state.cancelDrafts.get(name);
        state.cancelDrafts.delete(name);
        if (id === undefined) break;
        state.messages.delete(name);
        renderJobs();
        cancelRun(id, (text, kind, final) => {
          state.messages.set(name, { kind, text, final, runId: id, at: new Date() });
          renderJobs();
        });
        break;
      }
      case 'cancel-keep':
        state.cancelDrafts.delete(name);
        renderJobs();
        focusControl(name, 'cancel');
        break;
      default:
        break;
    }
  }

  function focusControl(name, action) {
    const el = document.querySelector(`article[data-job="${CSS.escape(name)}"] [data-action="${action}"]`);
    if (el && !el.disabled) el.focus();
  }

  function onCardInput(event) {
    if (event.target.getAttribute('data-action') !== 'pause-reason') return;
    const job = cardJob(event.target);
    if (job) state.pauseDrafts.set(job.job_name, event.target.value);
  }

  function onCardKey(event) {
    if (event.target.getAttribute('data-action') !== 'pause-reason') return;
    const job = cardJob(event.target);
    if (!job) return;
    if (event.key === 'Enter') pauseJob(job, state.pauseDrafts.get(job.job_name) || '');
    if (event.key === 'Escape') {
      state.pauseDrafts.delete(job.job_name);
      renderJobs();
      focusControl(job.job_name, 'pause');
    }
  }

  // ---- run now ---------------------------------------------------------------------

  async function runNow(job) {
    if (state.starting.has(job.job_name)) return;
    state.starting.add(job.job_name);
    state.messages.delete(job.job_name);
    renderJobs();
    let message;
    try {
      const body = await api(`/jobs/${encodeURIComponent(job.job_name)}/run`, { method: 'POST' });
      const started = body.data || {};
      message = { kind: 'ok', text: `Started run #${started.execution_id}. Following its progress…` };
      announce(`${job.display_name} started.`);
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) {
        state.starting.delete(job.job_name);
        needAuth();
        return;
      }
      message = { kind: 'error', text: runErrorText(job, error) };
      announce(message.text);
    }
    state.starting.delete(job.job_name);
    state.messages.set(job.job_name, { ...message, at: new Date() });
    await refresh();
  }

  function runErrorText(job, error) {
    const name = job.display_name || job.job_name;
    if (!(error instanceof ApiError)) return `Could not start ${name}.`;
    switch (error.code) {
      case 'already_running':
        return `${name} is already running (started by its schedule, another server or another person). This page follows that run; start it again once it has finished.`;
      case 'job_disabled':
        return `${name} cannot run because it is disabled: ${error.message}.`;
      case 'shutting_down':
        return 'The server is shutting down and starts no new runs. Try again once it is back.';
      case 'unknown_job':
        return `The server does not know ${name} any more (${error.message}). Reload the page.`;
      case 'unreachable':
        return `Could not start ${name}: ${error.message}`;
      default:
        return `Could not start ${name}: ${error.message} (HTTP ${error.status}).`;
    }
  }

  // ---- history ---------------------------------------------------------------------

  function openHistory(jobName) {
    if (state.route.kind !== 'dashboard') location.hash = '#/';
    $('history-job').value = jobName;
    state.history.job = jobName;
    writeFiltersToUrl();
    loadHistory(true);
    const section = $('history');
    section.scrollIntoView({ block: 'start', behavior: 'auto' });
    $('history-title').focus({ preventScroll: true });
  }

  // Keeps the job list of the history view in step with the jobs; reloads it when a
  // run of the shown job started or finished.
  function syncHistory() {
    const select = $('history-job');
    const jobs = state.jobs || [];
    if (jobs.length === 0) {
      show($('history'), false);
      return;
    }
    const names = [''].concat(jobs.map((j) => j.job_name));
    const current = Array.from(select.options).map((o) => o.value);
    if (names.join('\n') !== current.join('\n')) {
      select.replaceChildren(h('option', { value: '' }, 'All jobs'),
        ...jobs.map((j) => h('option', { value: j.job_name }, j.display_name || j.job_name)));
    }
    if (!names.includes(state.history.job)) state.history.job = '';
    select.value = state.history.job;
    show($('history'), state.route.kind === 'dashboard');
    const shown = jobs.filter((j) => !state.history.job || j.job_name === state.history.job);
    const signature = shown.map((j) => (j.latest_execution ? `${j.latest_execution.id}:${j.latest_execution.status}` : 'none')).join(',');
    if (signature !== state.history.signature) {
      state.history.signature = signature;
      loadHistory(true);
    }
  }

  function historyQuery(extra) {
    const params = new URLSearchParams();
    if (state.history.job) params.set('job_name', state.history.job);
    if (state.history.trigger) params.set('trigger', state.history.trigger);
    const since = dayStart(state.history.from, 0);
    const until = dayStart(state.history.to, 1);
    if (since) params.set('since', since.toISOString());
    if (until) params.set('until', until.toISOString());
    for (const [key, value] of Object.entries(extra)) if (value) params.set(key, value);
    return '/jobs/executions?' + params.toString();
  }

  async function loadHistory(reset) {
    const seq = ++state.history.seq;
    const tbody = $('history-rows');
    const more = $('load-more');
    $('history-error').hidden = true;
    more.disabled = true;
    try {
      if (reset) {
        const [page, chart] = await Promise.all([
          api(historyQuery({ status: state.history.status, limit: String(HISTORY_PAGE) })),
          api(historyQuery({ limit: String(CHART_LIMIT) })),
        ]);
        if (seq !== state.history.seq) return;
        tbody.replaceChildren();
        state.history.rows = 0;
        appendRows(page);
        renderChart(Array.isArray(chart.data) ? chart.data : []);
      } else {
        const page = await api(historyQuery({ status: state.history.status, limit: String(HISTORY_PAGE), cursor: state.history.cursor }));
        if (seq !== state.history.seq) return;
        appendRows(page);
      }
    } catch (error) {
      if (seq !== state.history.seq) return;
      if (error instanceof ApiError && error.status === 401) {
        needAuth();
        return;
      }
      const el = $('history-error');
      el.textContent = `Could not load the history: ${error instanceof ApiError ? error.message : 'unexpected error'}`;
      el.hidden = false;
    } finally {
      if (seq === state.history.seq) more.disabled = false;
    }
  }

  function appendRows(page) {
    const now = new Date();
    const rows = Array.isArray(page.data) ? page.data : [];
    const tbody = $('history-rows');
    for (const run of rows) tbody.append(historyRow(run, now));
    state.history.rows += rows.length;
    state.history.cursor = typeof page.next_cursor === 'string' ? page.next_cursor : null;
    show($('load-more'), Boolean(state.history.cursor));

    const job = (state.jobs || []).find((j) => j.job_name === state.history.job);
    const name = !state.history.job ? 'any job' : job ? job.display_name : state.history.job;
    const status = state.history.status;
    const filter = status ? ` ${FILTER_WORD[status] || status}` : '';
    const range = windowText();
    $('history-window').textContent = `${range.charAt(0).toUpperCase()}${range.slice(1)}, newest first`;
    $('history-caption').textContent = `Runs of ${name} ${range}${filter ? ', only' + filter + ' ones' : ''}`;
    const empty = $('history-empty');
    if (state.history.rows === 0) {
      if (status === 'running') empty.textContent = `No run of ${name} is in progress.`;
      else if (filter || state.history.trigger) empty.textContent = `No${filter} runs of ${name} ${range} match the filters.`;
      else empty.textContent = state.history.job ? `${name} has not run ${range}.` : `No job has run ${range}.`;
      show(empty, true);
      $('history-count').textContent = '';
    } else {
      show(empty, false);
      const count = state.history.rows;
      $('history-count').textContent = `Showing ${count}${filter} ${count === 1 ? 'run' : 'runs'}${state.history.cursor ? ' · more available' : ''}`;
    }
  }

  function historyRow(run, now) {
    const trigger = [TRIGGER_LABEL[run.trigger] || run.trigger];
    if (run.attempt > 1) trigger.push(`attempt ${run.attempt}`);
    if (run.dry_run) trigger.push('dry run');
    let details;
    if (run.status === 'failed') {
      details = h('bdi', { class: 'details-error' }, run.error_message || 'Failed without a message.');
    } else if (run.status === 'skipped') {
      details = h('bdi', { class: 'details-skipped' }, run.error_message || 'This slot was not run.');
    } else {
      const items = flattenStats(run.stats, run.dry_run).filter(([, , zero]) => !zero).slice(0, 3);
      details = h('span', { class: 'details-stats' }, items.length
        ? items.flatMap(([label, value], i) => [i ? ' · ' : null, iso(label), ': ', iso(value)])
        : (run.status === 'running' ? 'In progress' : 'Nothing to do'));
    }
    const job = (state.jobs || []).find((j) => j.job_name === run.job_name);
    return h('tr', { 'data-id': run.id, 'data-status': run.status, 'data-trigger': run.trigger, 'data-job': run.job_name },
      h('td', { class: 'nowrap' }, h('a', { href: `#/executions/${run.id}`, 'data-role': 'open-run', title: 'Open the details of this run' }, `#${run.id}`)),
      h('td', {}, job ? job.display_name : run.job_name),
      h('td', { class: 'nowrap' }, timeBlock(run.started_at, now)),
      h('td', {}, runBadge(run)),
      h('td', { class: 'nowrap' }, run.status === 'running' ? `${duration(elapsedMs(run, now))} so far` : duration(run.duration_ms)),
      h('td', { class: 'nowrap' }, trigger.join(' · ')),
      h('td', {}, details));
  }

  function renderChart(runs) {
    const chart = $('chart');
    const now = new Date();
    const counts = { success: 0, failed: 0, running: 0, dry: 0 };
    // Runs only: a skipped slot is not a run (it has no duration and is no success). A
    // finished dry run changed nothing: it is drawn apart, neither success nor failure.
    const kind = (run) => (run.dry_run && run.status !== 'running' ? 'dry' : run.status);
    const ordered = runs.filter((run) => run.status !== 'skipped' && kind(run) in counts).reverse(); // oldest first
    for (const run of ordered) counts[kind(run)] += 1;

    const legend = $('chart-legend');
    const label = { ...STATUS_LABEL, dry: 'Dry run' };
    legend.replaceChildren(...['success', 'failed', 'running', 'dry'].filter((s) => s !== 'dry' || counts.dry).map((s) =>
      h('li', { 'data-status': s }, h('span', { class: `swatch swatch-${s}`, 'aria-hidden': 'true' }), `${label[s]} ${counts[s]}`)));

    const durations = ordered.map((run) => elapsedMs(run, now) || 0);
    const max = Math.max(1, ...durations);
    const W = 600;
    const H = 120;
    const slots = Math.max(CHART_MIN_SLOTS, ordered.length);
    const slot = W / slots;
    const barWidth = Math.max(1, slot * 0.7);
    const offset = W - ordered.length * slot; // newest run at the right edge

    const desc = svg('desc', { id: 'chart-desc' });
    desc.textContent = ordered.length
      ? `${ordered.length} runs in the last 30 days: ${counts.success} succeeded, ${counts.failed} failed, ${counts.running} running${counts.dry ? `, ${counts.dry} dry ${counts.dry === 1 ? 'run' : 'runs'}` : ''}. Longest ${duration(max)}.`
      : 'No runs in the last 30 days.';
    const defs = svg('defs');
    const pattern = svg('pattern', { id: 'hatch-failed', width: 6, height: 6, patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(45)' });
    pattern.append(svg('rect', { width: 6, height: 6, class: 'hatch-bg' }), svg('line', { x1: 0, y1: 0, x2: 0, y2: 6, class: 'hatch-line' }));
    defs.append(pattern);
    const nodes = [desc, defs, svg('line', { x1: 0, y1: 1, x2: W, y2: 1, class: 'grid-line' }), svg('line', { x1: 0, y1: H / 2, x2: W, y2: H / 2, class: 'grid-line' })];
    ordered.forEach((run, i) => {
      const height = Math.max(3, (durations[i] / max) * (H - 4));
      const status = kind(run);
      const rect = svg('rect', {
        x: (offset + i * slot + (slot - barWidth) / 2).toFixed(2),
        y: (H - height).toFixed(2),
        width: barWidth.toFixed(2),
        height: height.toFixed(2),
        rx: Math.min(2, barWidth / 3).toFixed(2),
        class: `bar bar-${status}`,
        'data-status': status,
      });
      const title = svg('title');
      const started = parseTime(run.started_at);
      title.textContent = `${label[status]} · ${duration(durations[i])}${status === 'running' ? ' so far' : ''} · ${started ? shortFormat.format(started) : ''}`;
      rect.append(title);
      nodes.push(rect);
    });
    chart.replaceChildren(...nodes);
    show($('chart-empty'), ordered.length === 0);
    $('chart-max').textContent = ordered.length ? `Longest: ${duration(max)}` : '';
    const first = ordered.length ? parseTime(ordered[0].started_at) : null;
    $('chart-from').textContent = first ? shortFormat.format(first) : '';
    $('chart-to').textContent = ordered.length ? 'now' : '';
  }

  // ---- operator controls on a card -------------------------------------------------

  function pausedNote(job, now) {
    const at = parseTime(job.paused_at);
    const when = at ? relative(at, now) : '';
    const runs = state.canWrite ? ' Run now still works.' : ' An admin can still run it now.';
    const after = job.enabled ? runs : ' The job is also disabled by configuration; resuming lifts the pause only.';
    return h('div', { class: 'note note-paused', 'data-role': 'paused' },
      icon('paused'),
      h('div', { class: 'note-body' },
        h('p', { class: 'note-title' }, 'Paused'),
        h('p', {}, 'Scheduled runs are paused', job.paused_by ? [' by ', iso(job.paused_by)] : null, when && ` ${when}`, `.${after}`),
        job.pause_reason ? h('p', { class: 'pause-reason', 'data-role': 'pause-reason-text' }, 'Reason: ', iso(job.pause_reason)) : null));
  }

  function controlButtons(job, latest) {
    const name = job.job_name;
    // A viewer's token may not write: every control below is shown, disabled, saying why.
    const busy = state.busy.has(name) || !state.canWrite;
    const readOnly = state.canWrite ? null : READ_ONLY_TITLE;
    const described = state.canWrite ? null : READ_ONLY_NOTE;
    const running = Boolean(latest && latest.status === 'running');
    const buttons = [];
    if (job.enabled && job.supports_dry_run) {
      buttons.push(h('button', {
        type: 'button', class: 'btn', 'data-action': 'dry-run', disabled: busy || running,
        title: readOnly || 'Runs the job without changing anything and shows what it would do',
        'aria-describedby': described,
      }, 'Dry run'));
    }
    // A pause can be lifted even on a job DISABLED_JOBS (or a missing credential) switched
    // off; a new pause is only offered on an enabled job, where it has something to stop.
    if (job.paused) {
      buttons.push(h('button', { type: 'button', class: 'btn', 'data-action': 'resume', disabled: busy, title: readOnly, 'aria-describedby': described }, icon('play'), 'Resume'));
    } else if (job.enabled && !state.pauseDrafts.has(name)) {
      buttons.push(h('button', { type: 'button', class: 'btn', 'data-action': 'pause', disabled: busy, title: readOnly, 'aria-describedby': described }, icon('paused'), 'Pause'));
    }
    if (running && state.cancelDrafts.get(name) !== latest.id) {
      buttons.push(h('button', { type: 'button', class: 'btn', 'data-action': 'cancel', disabled: busy, title: readOnly, 'aria-describedby': described }, 'Cancel run'));
    }
    buttons.push(h('a', { class: 'btn btn-quiet', 'data-action': 'trends', href: `#/jobs/${encodeURIComponent(name)}/trends` }, 'Trends'));
    return buttons;
  }

  function pauseForm(job) {
    const name = job.job_name;
    const inputId = 'pause-reason-' + String(name).replace(/[^A-Za-z0-9_-]/g, '_');
    const input = h('input', {
      id: inputId, type: 'text', maxlength: '500', 'data-action': 'pause-reason', dir: 'auto',
      placeholder: 'e.g. storage migration tonight',
    });
    input.value = state.pauseDrafts.get(name) || '';
    return h('div', { class: 'pause-form', 'data-role': 'pause-form' },
      h('label', { for: inputId }, 'Why pause its schedule? (optional)'),
      h('div', { class: 'auth-row' }, input,
        h('button', { type: 'button', class: 'btn btn-primary', 'data-action': 'pause-confirm' }, 'Pause schedule'),
        h('button', { type: 'button', class: 'btn btn-quiet', 'data-action': 'pause-cancel' }, 'Keep running')));
  }

  // The step between "Cancel run" and the request, as for a pause.
  function cancelConfirm(id) {
    return h('div', { class: 'pause-form', 'data-role': 'cancel-form', role: 'group', 'aria-label': `Cancel run #${id}` },
      h('p', {}, `Stop run #${id}? It stops at its next checkpoint and ends as failed, with the stats it reached.`),
      h('div', { class: 'auth-row' },
        h('button', { type: 'button', class: 'btn btn-primary', 'data-action': 'cancel-confirm' }, 'Cancel the run'),
        h('button', { type: 'button', class: 'btn btn-quiet', 'data-action': 'cancel-keep' }, 'Keep it running')));
  }

  // Runs a control request for a job, then reports on its card and refreshes.
  async function control(job, request, okText) {
    const name = job.job_name;
    if (state.busy.has(name)) return;
    state.busy.add(name);
    renderJobs();
    let message;
    try {
      await request();
      message = { kind: 'ok', text: okText };
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) {
        state.busy.delete(name);
        needAuth();
        return;
      }
      message = { kind: 'error', text: `${job.display_name || name}: ${error instanceof ApiError ? error.message : 'the request failed'}` };
    }
    state.busy.delete(name);
    state.messages.set(name, { ...message, at: new Date() });
    announce(message.text);
    await refresh();
  }

  function pauseJob(job, reason) {
    const trimmed = String(reason || '').trim();
    state.pauseDrafts.delete(job.job_name);
    return control(job,
      () => api(`/jobs/${encodeURIComponent(job.job_name)}/pause`, { method: 'POST', json: trimmed ? { reason: trimmed } : {} }),
      `${job.display_name} is paused: its scheduled runs stop on every server.`);
  }

  function resumeJob(job) {
    return control(job,
      () => api(`/jobs/${encodeURIComponent(job.job_name)}/resume`, { method: 'POST' }),
      job.enabled
        ? `${job.display_name} is resumed: it runs again from its next scheduled time.`
        : `${job.display_name} is no longer paused; it stays disabled by configuration.`);
  }

  // A dry run changes nothing; its details page shows what it would do.
  async function dryRun(job) {
    const name = job.job_name;
    try {
      const body = await api(`/jobs/${encodeURIComponent(name)}/run?dry_run=true`, { method: 'POST' });
      const started = body.data || {};
      location.hash = `#/executions/${started.execution_id}`;
      refresh();
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) {
        needAuth();
        return;
      }
      state.messages.set(name, { kind: 'error', text: `Dry run: ${runErrorText(job, error)}`, at: new Date() });
      renderJobs();
    }
  }

  // Asks the server that runs an execution to stop it; `report(text, kind, final)` tells the
  // user (`final`: the text already says how the run ended).
  async function cancelRun(id, report) {
    try {
      const answer = await api(`/jobs/executions/${encodeURIComponent(id)}/cancel`, { method: 'POST' });
      // No live server held it: the request itself closed it.
      if (answer.data && answer.data.status === 'failed') report(`Run #${id} was not held by any server; it is now closed as failed.`, 'ok', true);
      else report(`Cancellation of run #${id} requested; it stops at its next checkpoint.`, 'ok');
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) {
        needAuth();
        return;
      }
      if (error instanceof ApiError && error.status === 409) report(`Run #${id} is not running any more.`, 'error');
      else if (error instanceof ApiError && error.status === 404) report(`There is no run #${id}.`, 'error');
      else report(`Could not cancel run #${id}: ${error instanceof ApiError ? error.message : 'the request failed'}`, 'error');
    }
    refresh();
    if (state.route.kind === 'detail' && state.route.id !== null) loadDetail(state.route.id, false);
  }

  // ---- history filters in the URL ------------------------------------------------

  const FILTER_PARAMS = { job: 'job', status: 'status', trigger: 'trigger', from: 'from', to: 'to' };
  const DATE_RE = /^\d{4}-\d{2}-\d{2}$/;

  function readFiltersFromUrl() {
    const params = new URLSearchParams(location.search);
    for (const [key, param] of Object.entries(FILTER_PARAMS)) {
      let value = params.get(param) || '';
      if ((key === 'from' || key === 'to') && !DATE_RE.test(value)) value = '';
      if (key === 'status' && !STATUS_LABEL[value]) value = '';
      if (key === 'trigger' && !TRIGGER_LABEL[value]) value = '';
      state.history[key] = value;
    }
    showFilters();
  }

  function showFilters() {
    $('history-status').value = state.history.status;
    $('history-trigger').value = state.history.trigger;
    $('history-from').value = state.history.from;
    $('history-to').value = state.history.to;
    if (Array.from($('history-job').options).some((o) => o.value === state.history.job)) $('history-job').value = state.history.job;
  }

  function writeFiltersToUrl() {
    const params = new URLSearchParams();
    for (const [key, param] of Object.entries(FILTER_PARAMS)) if (state.history[key]) params.set(param, state.history[key]);
    const query = params.toString();
    history.replaceState(null, '', `${location.pathname}${query ? '?' + query : ''}${location.hash}`);
  }

  // Local midnight of a `YYYY-MM-DD` day, plus `add` days.
  function dayStart(day, add) {
    if (!DATE_RE.test(day || '')) return null;
    const [y, m, d] = day.split('-').map(Number);
    const date = new Date(y, m - 1, d + add);
    return Number.isNaN(date.getTime()) ? null : date;
  }

  function windowText() {
    const { from, to } = state.history;
    if (from && to) return `from ${from} to ${to}`;
    if (from) return `since ${from}`;
    if (to) return `in the 30 days up to ${to}`;
    return 'in the last 30 days';
  }

  // ---- routes: dashboard, run details, trends ------------------------------------

  function applyRoute(focus) {
    const hash = location.hash || '';
    let match;
    if ((match = hash.match(/^#\/executions\/([^/]*)$/))) {
      // Kept as text: an id of up to 64 bits does not always fit a JavaScript number.
      state.route = { kind: 'detail', id: runId(match[1]) };
    } else if ((match = hash.match(/^#\/jobs\/([^/]+)\/trends$/))) {
      let job = match[1];
      try {
        job = decodeURIComponent(job);
      } catch (_) {
        /* keep it as written */
      }
      state.route = { kind: 'trends', job };
    } else {
      state.route = { kind: 'dashboard' };
    }
    clearTimeout(state.detail.timer);
    if (state.needsAuth) return;
    const dashboard = state.route.kind === 'dashboard';
    show($('jobs-section'), dashboard);
    show($('workers'), dashboard && state.workers.length > 0);
    show($('history'), dashboard && Array.isArray(state.jobs) && state.jobs.length > 0);
    show($('run-detail'), state.route.kind === 'detail');
    show($('trends'), state.route.kind === 'trends');
    if (state.route.kind === 'detail' && state.route.id === null) noSuchRun(hash.slice('#/executions/'.length), focus);
    else if (state.route.kind === 'detail') loadDetail(state.route.id, focus);
    else if (state.route.kind === 'trends') loadTrends(state.route.job, focus);
  }

  // ---- run details ---------------------------------------------------------------

  const MAX_RUN_ID = 9223372036854775807n;

  // The execution id in an address, as the server's int64 holds it; null when it is not one.
  function runId(text) {
    if (!/^\d{1,19}$/.test(text)) return null;
    const value = BigInt(text);
    return value <= MAX_RUN_ID ? value.toString() : null;
  }

  // Stats with the jobs' main keys first, then the rest in their own order.
  function orderedStats(stats) {
    if (!stats || typeof stats !== 'object' || Array.isArray(stats)) return {};
    const out = {};
    for (const key of STATS_FIRST) if (key in stats) out[key] = stats[key];
    for (const [key, value] of Object.entries(stats)) if (!(key in out)) out[key] = value;
    return out;
  }

  function detailMessage(text, kind) {
    const el = $('run-msg');
    el.textContent = text;
    el.className = `run-msg ${kind === 'ok' ? 'msg-ok' : 'msg-error'}`;
  }

  function clearDetail(id) {
    state.detail.id = id;
    state.detail.run = null;
    state.detail.last = null;
    state.detail.cancelFor = null;
    state.detail.cancelNote = null;
    $('run-msg').textContent = '';
    $('run-title').textContent = id === null ? 'No such run' : `Run #${id}`;
    $('run-facts').replaceChildren();
    $('run-stats').replaceChildren();
    $('run-events').replaceChildren();
    $('run-badges').replaceChildren();
    show($('run-events-empty'), false);
    show($('run-cancel-confirm'), false);
    show($('run-again'), false);
    show($('run-cancel'), false);
    show($('run-dry'), false);
    show($('run-error'), false);
    show($('run-skipped'), false);
  }

  // An address whose id no execution can have: said at once, nothing asked of the server.
  function noSuchRun(text, focus) {
    ++state.detail.seq;
    clearDetail(null);
    const el = $('run-error-load');
    el.textContent = `No such run: “${text}” is not a run number.`;
    show(el, true);
    if (focus) $('run-title').focus({ preventScroll: true });
  }

  async function loadDetail(id, focus) {
    const seq = ++state.detail.seq;
    clearTimeout(state.detail.timer);
    if (state.detail.id !== id) clearDetail(id);
    if (focus) $('run-title').focus({ preventScroll: true });
    try {
      // The run first, then its lines: a run keeps its log lines before it is marked
      // finished, so lines read after a finished run are all of them (read together, the
      // last poll could pair the finished run with lines read before they were kept).
      const run = await api(`/jobs/executions/${id}`);
      const events = await api(`/jobs/executions/${id}/events`);
      if (seq !== state.detail.seq) return;
      const data = run.data || {};
      const chain = await attemptChain(data);
      if (seq !== state.detail.seq) return;
      show($('run-error-load'), false);
      state.detail.run = data;
      state.detail.last = [data, Array.isArray(events.data) ? events.data : [], chain];
      renderDetail(...state.detail.last);
      if (data.status === 'running' && state.route.kind === 'detail' && state.route.id === id) {
        state.detail.timer = setTimeout(() => loadDetail(id, false), FAST_POLL_MS);
      }
    } catch (error) {
      if (seq !== state.detail.seq) return;
      if (error instanceof ApiError && error.status === 401) {
        needAuth();
        return;
      }
      // A 4xx will not change by asking again.
      const refused = error instanceof ApiError && error.status >= 400 && error.status < 500;
      const el = $('run-error-load');
      if (error instanceof ApiError && error.status === 404) el.textContent = `No such run: there is no run #${id}; it never existed or was pruned with the old history.`;
      else if (refused) el.textContent = `No such run: the server refused #${id} (${error.message}).`;
      else el.textContent = `Could not load run #${id}: ${error instanceof ApiError ? error.message : 'unexpected error'}. Trying again…`;
      show(el, true);
      // The server may be restarting: a run shown as running (or not shown yet) is asked
      // for again, so the page does not keep a state the server has left.
      const wasRunning = !state.detail.run || state.detail.run.status === 'running';
      if (!refused && wasRunning && state.route.kind === 'detail' && state.route.id === id) {
        state.detail.timer = setTimeout(() => loadDetail(id, false), DETAIL_RETRY_MS);
      }
    }
  }

  // The other attempts of the same cron slot, oldest first (a manual run has none).
  async function attemptChain(run) {
    const slot = parseTime(run.scheduled_for);
    if (!slot) return [run];
    const params = new URLSearchParams({
      job_name: run.job_name,
      trigger: run.trigger,
      since: slot.toISOString(),
      until: new Date(slot.getTime() + 2 * 86400000).toISOString(),
      limit: '50',
    });
    try {
      const page = await api('/jobs/executions?' + params.toString());
      const rows = (Array.isArray(page.data) ? page.data : []).filter((r) => r.scheduled_for === run.scheduled_for);
      if (!rows.some((r) => r.id === run.id)) rows.push(run);
      return rows.sort((a, b) => a.attempt - b.attempt || a.id - b.id);
    } catch (_) {
      return [run];
    }
  }

  function renderDetail(run, events, chain) {
    const now = new Date();
    const job = (state.jobs || []).find((j) => j.job_name === run.job_name);
    const jobName = job ? job.display_name : run.job_name;
    $('run-title').textContent = `Run #${run.id} · ${jobName}`;
    const badges = [runBadge(run)];
    if (run.dry_run && run.status === 'running') badges.push(badge('dry', 'Dry run'));
    $('run-badges').replaceChildren(...badges);
    show($('run-dry'), Boolean(run.dry_run));

    const trigger = TRIGGER_LABEL[run.trigger] || run.trigger;
    const chainEl = h('span', { 'data-role': 'attempts' });
    chain.forEach((r, i) => {
      if (i) chainEl.append(' → ');
      const label = `#${r.id} attempt ${r.attempt} (${STATUS_LABEL[r.status] || r.status})`;
      chainEl.append(r.id === run.id ? h('strong', {}, label) : h('a', { href: `#/executions/${r.id}` }, label));
    });
    const facts = [
      fact('Job', jobName),
      fact('Status', (STATUS_LABEL[run.status] || String(run.status)) + (run.dry_run ? ' (dry run: nothing was changed)' : '')),
      fact('Started', timeBlock(run.started_at, now)),
      fact('Completed', run.completed_at ? timeBlock(run.completed_at, now) : 'Still running'),
      fact('Duration', run.status === 'running' ? `${duration(elapsedMs(run, now))} so far` : duration(run.duration_ms)),
      fact('Trigger', trigger + (run.dry_run ? ' · dry run' : '')),
      fact('Scheduled for', run.scheduled_for ? timeBlock(run.scheduled_for, now) : 'Not a scheduled run'),
      fact('Worker', run.worker_id ? iso(run.worker_id) : '—'),
      fact('Attempts', chainEl, true),
    ];
    $('run-facts').replaceChildren(...facts);

    const error = run.status === 'failed' ? (run.error_message || 'Failed without a message.') : '';
    $('run-error-text').textContent = error;
    show($('run-error'), Boolean(error));
    // A skipped slot is no failure, but why it was not run is what there is to know.
    const skipped = run.status === 'skipped' ? (run.error_message || 'This slot was not run.') : '';
    $('run-skipped-text').textContent = skipped;
    show($('run-skipped'), Boolean(skipped));

    const rows = flattenStats(orderedStats(run.stats), run.dry_run);
    $('run-stats').replaceChildren(...(rows.length
      ? rows.map(([label, value, zero]) => h('div', { class: zero ? 'stat stat-zero' : 'stat' }, h('dt', {}, iso(label)), h('dd', {}, iso(value))))
      : [h('p', { class: 'no-stats' }, run.status === 'running' ? 'No progress reported yet.' : 'No stats were recorded.')]));

    $('run-events').replaceChildren(...events.map((e) => {
      const at = parseTime(e.at);
      const level = LEVEL_LABEL[e.level] ? e.level : 'info';
      return h('li', { class: `event event-${level}`, 'data-level': level },
        h('time', { datetime: e.at, title: at ? 'UTC: ' + utcText(at) : null, class: 'event-time' }, at ? clockFormat.format(at) : '—'),
        h('span', { class: 'event-level' }, LEVEL_LABEL[level]),
        h('bdi', { class: 'event-message' }, String(e.message)));
    }));
    // A run's own lines are stored when it ends: while it runs there are at most the
    // server's notes.
    const empty = $('run-events-empty');
    if (run.status === 'running') empty.textContent = events.length ? 'The job\'s own log lines appear here when the run ends.' : 'Log lines appear when the run ends.';
    else empty.textContent = 'This run logged nothing.';
    show(empty, run.status === 'running' || events.length === 0);

    const running = run.status === 'running';
    // A control about to be hidden (the run ended while "Stop run #N?" was asked) hands
    // keyboard focus to the title, and the change is said.
    const active = document.activeElement;
    const losesFocus = !running && active && ['run-cancel', 'run-cancel-go', 'run-cancel-keep'].includes(active.id);
    if (!running) state.detail.cancelFor = null;
    // "Cancellation requested" is over once the run has ended.
    if (!running && state.detail.cancelNote === run.id) {
      state.detail.cancelNote = null;
      $('run-msg').textContent = '';
    }
    const confirming = running && state.detail.cancelFor === run.id;
    // Again as it ran: a dry run's page offers another dry run, never a real one.
    show($('run-again'), run.status === 'failed' && Boolean(job && job.enabled));
    $('run-again').textContent = run.dry_run ? 'Dry run again' : 'Run again';
    show($('run-cancel'), running && !confirming);
    show($('run-cancel-confirm'), confirming);
    if (confirming) $('run-cancel-question').textContent = `Stop run #${run.id}? It stops at its next checkpoint and ends as failed, with the stats it reached.`;
    for (const id of ['run-again', 'run-cancel']) {
      const button = $(id);
      button.disabled = !state.canWrite;
      if (state.canWrite) {
        button.removeAttribute('title');
        button.removeAttribute('aria-describedby');
      } else {
        button.title = READ_ONLY_TITLE;
        button.setAttribute('aria-describedby', READ_ONLY_NOTE);
      }
    }
    if (losesFocus) {
      $('run-title').focus({ preventScroll: true });
      announce(`Run #${run.id} has ended (${STATUS_LABEL[run.status] || run.status}): there is nothing left to cancel.`);
    }
  }

  async function runAgain() {
    const run = state.detail.run;
    if (!run) return;
    const button = $('run-again');
    button.disabled = true;
    try {
      const body = await api(`/jobs/${encodeURIComponent(run.job_name)}/run${run.dry_run ? '?dry_run=true' : ''}`, { method: 'POST' });
      const started = body.data || {};
      location.hash = `#/executions/${started.execution_id}`;
      refresh();
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) {
        needAuth();
        return;
      }
      const job = (state.jobs || []).find((j) => j.job_name === run.job_name) || { job_name: run.job_name, display_name: run.job_name };
      detailMessage(`${run.dry_run ? 'Dry run: ' : ''}${runErrorText(job, error)}`, 'error');
    } finally {
      button.disabled = false;
    }
  }

  // ---- trends --------------------------------------------------------------------

  async function loadTrends(jobName, focus) {
    const seq = ++state.trends.seq;
    const job = (state.jobs || []).find((j) => j.job_name === jobName);
    $('trends-title').textContent = `Trends · ${job ? job.display_name : jobName}`;
    if (focus) $('trends-title').focus({ preventScroll: true });
    const days = $('trends-days').value || '30';
    try {
      const body = await api(`/jobs/${encodeURIComponent(jobName)}/trends?days=${encodeURIComponent(days)}`);
      if (seq !== state.trends.seq) return;
      show($('trends-error'), false);
      renderTrends(Array.isArray(body.data) ? body.data : []);
    } catch (error) {
      if (seq !== state.trends.seq) return;
      if (error instanceof ApiError && error.status === 401) {
        needAuth();
        return;
      }
      $('trends-error').textContent = `Could not load the trends: ${error instanceof ApiError ? error.message : 'unexpected error'}`;
      show($('trends-error'), true);
      $('trends-charts').replaceChildren();
    }
  }

  function chartFigure(key, title, legend, svgEl, days) {
    const legendEl = h('ul', { class: 'legend' }, legend.map(([cls, text]) =>
      h('li', {}, h('span', { class: `swatch ${cls}`, 'aria-hidden': 'true' }), text)));
    return h('figure', { class: 'chart trend-chart', 'data-chart': key },
      h('figcaption', { class: 'chart-head' }, h('span', { class: 'chart-title' }, title), legendEl),
      h('div', { class: 'chart-frame' }, svgEl),
      h('div', { class: 'chart-axis', 'aria-hidden': 'true' }, h('span', {}, days.length ? days[0].day : ''), h('span', {}, days.length ? days[days.length - 1].day : '')));
  }

  function trendSvg(description) {
    const el = svg('svg', { class: 'chart-svg', viewBox: '0 0 600 120', preserveAspectRatio: 'none', role: 'img' });
    const desc = svg('desc');
    desc.textContent = description;
    el.append(desc, svg('line', { x1: 0, y1: 1, x2: 600, y2: 1, class: 'grid-line' }), svg('line', { x1: 0, y1: 60, x2: 600, y2: 60, class: 'grid-line' }));
    return el;
  }

  function titled(el, text) {
    const title = svg('title');
    title.textContent = text;
    el.append(title);
    return el;
  }

  // One polyline per series over the days; gaps where a day has no value.
  function drawLines(el, days, series, max) {
    const W = 600;
    const H = 120;
    const step = days.length > 1 ? W / (days.length - 1) : 0;
    series.forEach(([cls, pick, label]) => {
      let points = [];
      const flush = () => {
        if (points.length > 1) el.append(svg('polyline', { points: points.join(' '), class: `trend-line ${cls}` }));
        points = [];
      };
      days.forEach((day, i) => {
        const value = pick(day);
        if (typeof value !== 'number') {
          flush();
          return;
        }
        const x = days.length > 1 ? i * step : W / 2;
        const y = H - 2 - (value / max) * (H - 6);
        points.push(`${x.toFixed(1)},${y.toFixed(1)}`);
        el.append(titled(svg('circle', { cx: x.toFixed(1), cy: y.toFixed(1), r: 2.5, class: `trend-dot ${cls}`, 'data-day': day.day }), `${day.day} · ${label}: ${formatValue(value)}`));
      });
      flush();
    });
  }

  function renderTrends(days) {
    const W = 600;
    const H = 120;
    const runs = days.reduce((n, d) => n + d.runs, 0);
    const ok = days.reduce((n, d) => n + d.succeeded, 0);

    // Success rate: per day, the share that succeeded (solid) over the share that failed.
    const rate = trendSvg(runs ? `${runs} runs over ${days.length} days, ${Math.round((ok / runs) * 100)}% succeeded.` : `No runs in ${days.length} days.`);
    const slot = W / Math.max(1, days.length);
    const width = Math.max(1, slot * 0.7);
    days.forEach((day, i) => {
      if (!day.runs) return;
      const x = (i * slot + (slot - width) / 2).toFixed(2);
      const okHeight = (day.succeeded / day.runs) * (H - 4);
      const pct = Math.round((day.succeeded / day.runs) * 100);
      const text = `${day.day} · ${pct}% of ${day.runs} run${day.runs === 1 ? '' : 's'} succeeded`;
      rate.append(titled(svg('rect', { x, y: (H - okHeight).toFixed(2), width: width.toFixed(2), height: okHeight.toFixed(2), class: 'bar bar-success', 'data-day': day.day, 'data-rate': pct }), text));
      if (day.failed) {
        const failHeight = (H - 4) - okHeight;
        rate.append(titled(svg('rect', { x, y: 4, width: width.toFixed(2), height: failHeight.toFixed(2), class: 'bar trend-failed', 'data-day': day.day }), text));
      }
    });

    // Duration: median and 95th percentile.
    const maxDuration = Math.max(1, ...days.map((d) => d.p95_ms || d.p50_ms || 0));
    const dur = trendSvg(`Median and 95th percentile duration per day; longest ${duration(maxDuration)}.`);
    drawLines(dur, days, [['series-0', (d) => d.p50_ms, 'median'], ['series-1', (d) => d.p95_ms, '95th percentile']], maxDuration);

    // Main counters: the jobs' own keys first, at most four.
    const totals = new Map();
    for (const day of days) {
      for (const [key, value] of Object.entries(day.stats || {})) {
        if (typeof value === 'number') totals.set(key, (totals.get(key) || 0) + value);
      }
    }
    const keys = Object.keys(orderedStats(Object.fromEntries(totals))).filter((k) => totals.get(k) > 0 || STATS_FIRST.includes(k)).slice(0, 4);
    const maxCount = Math.max(1, ...days.flatMap((d) => keys.map((k) => (d.stats && typeof d.stats[k] === 'number' ? d.stats[k] : 0))));
    const counters = trendSvg(keys.length ? `Daily totals of ${keys.map(humanize).join(', ')}.` : 'No counters were reported.');
    drawLines(counters, days, keys.map((k, i) => [`series-${i}`, (d) => (d.runs ? (d.stats && typeof d.stats[k] === 'number' ? d.stats[k] : 0) : null), humanize(k)]), maxCount);

    $('trends-charts').replaceChildren(
      chartFigure('success', 'Success rate per day', [['swatch-success', `Succeeded ${ok}`], ['swatch-failed', `Failed ${runs - ok}`]], rate, days),
      chartFigure('duration', `Duration per day (up to ${duration(maxDuration)})`, [['swatch-series-0', 'Median'], ['swatch-series-1', '95th percentile']], dur, days),
      chartFigure('counters', `Counters per day (up to ${formatValue(maxCount)})`, keys.map((k, i) => [`swatch-series-${i}`, `${humanize(k)} ${formatValue(totals.get(k))}`]), counters, days));
  }

  // ---- servers -------------------------------------------------------------------

  async function loadWorkers() {
    try {
      const body = await api('/workers');
      state.workers = Array.isArray(body.data) ? body.data : [];
    } catch (_) {
      // The list is secondary: the jobs' own error display covers an unreachable API.
      return;
    }
    renderWorkers();
  }

  function renderWorkers() {
    const now = new Date();
    const rows = state.workers.map((w) => h('tr', { 'data-worker': w.worker_id },
      h('td', {}, h('code', {}, w.worker_id)),
      h('td', {}, w.version),
      h('td', { class: 'nowrap' }, timeBlock(w.started_at, now)),
      h('td', { class: 'nowrap' }, timeBlock(w.last_seen_at, now, { exact: false })),
      h('td', {}, Array.isArray(w.running) && w.running.length
        ? w.running.flatMap((id, i) => [i ? ', ' : null, h('a', { href: `#/executions/${id}` }, `#${id}`)])
        : 'Idle')));
    $('workers-rows').replaceChildren(...rows);
    const busy = state.workers.filter((w) => Array.isArray(w.running) && w.running.length).length;
    $('workers-summary').textContent = `${state.workers.length} live ${state.workers.length === 1 ? 'server' : 'servers'} · ${busy} running a job`;
    show($('workers'), state.route.kind === 'dashboard' && state.workers.length > 0 && !state.needsAuth);
  }

  // ---- start -----------------------------------------------------------------------

  function start() {
    try {
      $('tz-name').textContent = Intl.DateTimeFormat().resolvedOptions().timeZone || 'local time';
    } catch (_) {
      $('tz-name').textContent = 'local time';
    }
    $('refresh').addEventListener('click', () => refresh());
    $('jobs').addEventListener('click', onCardClick);
    $('jobs').addEventListener('input', onCardInput);
    $('jobs').addEventListener('keydown', onCardKey);
    $('retry').addEventListener('click', () => refresh());
    $('auth-form').addEventListener('submit', onAuthSubmit);
    $('sign-out').addEventListener('click', () => {
      setToken('');
      state.authAttempted = false;
      needAuth();
    });
    readFiltersFromUrl();
    for (const [id, key] of [['history-job', 'job'], ['history-status', 'status'], ['history-trigger', 'trigger'], ['history-from', 'from'], ['history-to', 'to']]) {
      $(id).addEventListener('change', (event) => {
        state.history[key] = event.target.value;
        writeFiltersToUrl();
        loadHistory(true);
      });
    }
    $('history-clear').addEventListener('click', () => {
      Object.assign(state.history, { job: '', status: '', trigger: '', from: '', to: '' });
      showFilters();
      writeFiltersToUrl();
      loadHistory(true);
    });
    $('run-again').addEventListener('click', () => runAgain());
    $('run-cancel').addEventListener('click', () => {
      if (!state.detail.run || state.detail.run.status !== 'running') return;
      state.detail.cancelFor = state.detail.run.id;
      if (state.detail.last) renderDetail(...state.detail.last);
      $('run-cancel-go').focus();
    });
    $('run-cancel-keep').addEventListener('click', () => {
      state.detail.cancelFor = null;
      if (state.detail.last) renderDetail(...state.detail.last);
      $('run-cancel').focus();
    });
    $('run-cancel-go').addEventListener('click', () => {
      const id = state.detail.cancelFor;
      state.detail.cancelFor = null;
      if (id === null || id === undefined) return;
      if (state.detail.last) renderDetail(...state.detail.last);
      $('run-cancel').focus();
      cancelRun(id, (text, kind, final) => {
        detailMessage(text, kind);
        state.detail.cancelNote = kind === 'ok' && !final ? id : null;
      });
    });
    $('trends-days').addEventListener('change', () => {
      if (state.route.kind === 'trends') loadTrends(state.route.job);
    });
    window.addEventListener('hashchange', () => applyRoute(true));
    applyRoute(false);
    $('load-more').addEventListener('click', () => {
      if (state.history.cursor) loadHistory(false);
    });
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible' && !state.needsAuth && !state.loading) {
        const age = state.lastUpdated ? Date.now() - state.lastUpdated.getTime() : Infinity;
        if (age > FAST_POLL_MS) refresh();
      }
    });
    checkReady();
    // Relative times ("3 minutes ago") move on between refreshes.
    setInterval(() => {
      if (state.jobs && !state.needsAuth && !state.loading) renderJobs();
    }, 15000);
    refresh();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();

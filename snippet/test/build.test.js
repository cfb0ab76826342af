// The built runtime: the config token, the size budget, and runs of the minified bundle in
// a node:vm context with a fake browser (test/fakedom.js). Real browser tests are in
// Chromium, on the Python side.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import vm from 'node:vm';
import { bundleRuntime, CONFIG_TOKEN, GZIP_BUDGET, OUTPUT, sizes } from '../build.mjs';
import { assign } from '../src/assign.js';
import { FLUSH_MS, MAX_BATCH, PREVIEW_WAIT_MS } from '../src/runtime.js';
import { WATCH_MS } from '../src/changes.js';
import { FakeElement, FakeEventTarget, fakeDocument, fakeMutationObservers, fakeTimers } from './fakedom.js';

const code = await bundleRuntime();

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const DESKTOP_UA = 'Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0';
// The fields of BrowserEvent (src/edge/ingest/schema.py); the server rejects any other.
const EVENT_FIELDS = [
  'event_id',
  'type',
  'visitor_id',
  'ts',
  'session_id',
  'experiment_id',
  'variant_id',
  'goal_id',
  'name',
  'value',
  'pathname',
  'device',
];

// Web Storage stores strings.
function fakeStorage(entries = {}) {
  return new Proxy(
    { ...entries },
    {
      set(target, key, value) {
        target[key] = String(value);
        return true;
      },
    },
  );
}

// The page of most tests: a headline, a buy link, a note.
function page() {
  return [
    new FakeElement('h1', { id: 'headline' }, ['Old title']),
    new FakeElement('a', { id: 'buy', class: 'cta old', href: '/a', style: 'color: red' }, [
      'Buy ',
      new FakeElement('em', {}, ['now']),
    ]),
    new FakeElement('p', { class: 'note' }, ['n']),
  ];
}

/**
 * A fake browser on `url`. `boot(config)` runs the built snippet in it; `events()` runs
 * the flush timer and returns every event sent so far, in order.
 */
function browser(options = {}) {
  const timers = fakeTimers();
  const observers = fakeMutationObservers();
  const document = fakeDocument(options.body ? options.body() : page(), options);
  const requests = [];
  const fetched = []; // the preview configs fetched (GET)
  const replaced = [];
  const location = { replace: (to) => replaced.push(to), toString: () => location.href };
  const go = (href) => {
    const url = new URL(href, location.href);
    Object.assign(location, {
      href: url.href,
      origin: url.origin,
      pathname: url.pathname,
      search: url.search,
      hash: url.hash,
    });
  };
  go(options.url || 'https://shop.example/pricing');
  const win = new FakeEventTarget();
  const context = {
    navigator: {
      userAgent: options.userAgent || DESKTOP_UA,
      maxTouchPoints: 0,
      sendBeacon:
        options.beacon === false
          ? undefined
          : (url, body) => {
              if (options.beaconRefuses) return false;
              requests.push({ via: 'beacon', url: String(url), body: JSON.parse(body) });
              return true;
            },
    },
    // A POST is an event batch; a GET a preview config, answered from options.previews
    // (URL → the JSON; none: a 404's JSON; a function: what it returns).
    fetch: (url, init) => {
      if (!init) {
        fetched.push(String(url));
        const answer = options.previews?.[url];
        if (typeof answer === 'function') return answer();
        return Promise.resolve({ ok: !!answer, json: async () => answer || { error: { code: 'not_found' } } });
      }
      requests.push({ via: 'fetch', url: String(url), init, body: JSON.parse(init.body) });
      return Promise.resolve();
    },
    screen: { width: 1920 },
    location,
    history: {
      pushState: (state, title, url) => (go(url), 'pushed'),
      replaceState: (state, title, url) => url != null && go(url),
    },
    sessionStorage: fakeStorage(options.sessionStorage),
    document,
    URL,
    URLSearchParams,
    TextEncoder,
    crypto: globalThis.crypto,
    MutationObserver: observers.MutationObserver,
    setTimeout: timers.setTimeout,
    clearTimeout: timers.clearTimeout,
    addEventListener: win.addEventListener.bind(win),
  };
  if (options.storageThrows) {
    Object.defineProperty(context, 'localStorage', {
      get() {
        throw new Error('SecurityError: storage is disabled');
      },
    });
  } else {
    context.localStorage = fakeStorage(options.localStorage);
  }
  context.window = context;
  vm.createContext(context);
  return {
    context,
    document,
    timers,
    observers,
    requests,
    fetched,
    replaced,
    win,
    go,
    boot(config) {
      vm.runInContext(code.replace(CONFIG_TOKEN, () => JSON.stringify(config)), context);
      return context.window.__sk;
    },
    events() {
      timers.run(FLUSH_MS);
      return requests.flatMap((request) => request.body.events);
    },
    get sk() {
      return context.window.__sk;
    },
    // sk.a as plain data
    get a() {
      return JSON.parse(JSON.stringify(context.window.__sk.a));
    },
    byId: (id) => document.querySelectorAll('#' + id)[0],
  };
}

const EXP = 'b1c7a8a4-5a1e-4c52-9d49-3f0d2f5d8e01';
const CONTROL = { id: 'v-control', name: 'Control', control: true, weight: 5000, changes: [], redirect_url: null };
const VARIANT_B = { id: 'v-b', name: 'B', control: false, weight: 5000, changes: [], redirect_url: null };
const GOALS = [{ id: 'g1', name: 'Buy', type: 'click', selector: '.cta' }];

function experiment(overrides = {}) {
  return { id: EXP, url_pattern: '/pricing', coverage: 10000, variants: [CONTROL, VARIANT_B], goals: GOALS, ...overrides };
}

// An experiment in which everybody sees B, with these changes (and overrides).
function allB(changes, overrides = {}) {
  return experiment({ variants: [{ ...CONTROL, weight: 0 }, { ...VARIANT_B, weight: 10000, changes }], ...overrides });
}

function site(...experiments) {
  return { sk: 'pk_test', anti_flicker_ms: 250, experiments };
}

const CHANGES = [
  { selector: '#headline', action: 'set_content', payload: 'New title' },
  { selector: '#buy', action: 'set_style', payload: 'font-weight: bold' },
  { selector: '#buy', action: 'set_attribute', attribute_name: 'href', payload: '/b' },
  { selector: '#buy', action: 'add_class', payload: ' big  green cta ' },
  { selector: '#buy', action: 'remove_class', payload: 'old' },
  { selector: '.note', action: 'insert_before', payload: '<span class="note">before</span>' },
  { selector: '.note', action: 'insert_after', payload: 'after' },
];

// What a page looks like, to compare before, during and after changes.
function snapshot(b) {
  const buy = b.byId('buy');
  return {
    headline: b.byId('headline').textContent,
    buy: [buy.textContent, buy.style.cssText, buy.getAttribute('href'), buy.getAttribute('class')],
    body: b.document.body.textContent,
    bodyNodes: b.document.body.childNodes.length,
  };
}

test('the built runtime contains the config token exactly once', () => {
  assert.equal(code.split(CONFIG_TOKEN).length, 2);
});

test(`the built runtime is within its gzip budget (${GZIP_BUDGET} bytes)`, () => {
  const { raw, gzip } = sizes(code);
  assert.ok(gzip <= GZIP_BUDGET, `${gzip} bytes gzipped (${raw} raw)`);
});

test('the committed runtime is a fresh build of the source', async () => {
  const committed = await readFile(OUTPUT, 'utf8');
  assert.equal(committed, code, 'src/edge/static/runtime.js is stale: run `make snippet`');
});

test('window.__sk has the reference shape and the spec assignment', () => {
  const b = browser();
  const sk = b.boot(site(experiment()));
  assert.deepEqual(Object.keys(sk).sort(), ['a', 'dt', 'getVariant', 'optOut', 'preview', 's', 'sk', 'track', 'v']);
  assert.match(sk.v, UUID);
  assert.match(sk.s, UUID);
  assert.equal(b.context.localStorage.sk_v, sk.v);
  assert.equal(b.context.sessionStorage.sk_s, sk.s);
  assert.equal(sk.dt, 'desktop');
  assert.equal(sk.sk, 'pk_test');
  assert.equal(sk.preview, false);
  const variant = [CONTROL, VARIANT_B][assign(EXP, sk.v, [5000, 5000], 10000)];
  assert.deepEqual(b.a, [{ eid: EXP, vid: variant.id, ic: variant.control, gs: GOALS, ch: [] }]);
  assert.deepEqual({ ...sk.getVariant(EXP) }, { variantId: variant.id, isControl: variant.control });
  assert.equal(sk.getVariant('another-experiment'), null);
});

test('stored ids are reused, and the visitor id decides the variant', () => {
  for (const visitor of ['visitor-1', 'visitor-2', 'visitor-3', 'visitor-4']) {
    const b = browser({ localStorage: { sk_v: visitor }, sessionStorage: { sk_s: 'session-1' } });
    const sk = b.boot(site(experiment()));
    assert.equal(sk.v, visitor);
    assert.equal(sk.s, 'session-1');
    assert.equal(sk.getVariant(EXP).variantId, [CONTROL, VARIANT_B][assign(EXP, visitor, [5000, 5000], 10000)].id);
  }
});

test('experiments of other pages and visitors outside the coverage get no entry', () => {
  assert.equal(browser().boot(site(experiment({ url_pattern: '/checkout' }))).a.length, 0);
  const uncovered = browser().boot(site(experiment({ coverage: 0 })));
  assert.equal(uncovered.a.length, 0);
  assert.equal(uncovered.getVariant(EXP), null);
  const everywhere = browser({ url: 'https://shop.example/x/y' }).boot(site(experiment({ url_pattern: null })));
  assert.equal(everywhere.a.length, 1);
});

test('storage that throws falls back to a first-party cookie', () => {
  const fresh = browser({ storageThrows: true });
  fresh.boot(site());
  assert.match(fresh.sk.v, UUID);
  assert.equal(fresh.document.cookie, `sk_v=${fresh.sk.v};path=/;max-age=31536000`);
  const returning = browser({ storageThrows: true, cookie: 'a=1; sk_v=visitor-9; b=2' });
  assert.equal(returning.boot(site()).v, 'visitor-9');
});

test('a broken config leaves window.__sk with no assignments, and the page alone', () => {
  for (const config of [null, { sk: 'pk', experiments: 7 }]) {
    const b = browser();
    const sk = b.boot(config);
    assert.deepEqual(b.a, []);
    assert.equal(sk.getVariant(EXP), null);
    assert.deepEqual(b.events(), []);
  }
  const b = browser();
  b.boot(site({ id: 'broken' }, experiment()));
  assert.equal(b.a.length, 1); // one broken experiment never stops the others
});

test('changes apply once each, and the snippet on the page twice changes nothing more', () => {
  const b = browser();
  const before = snapshot(b);
  b.boot(site(allB(CHANGES)));
  const after = snapshot(b);
  assert.deepEqual(after, {
    headline: 'New title',
    buy: ['Buy now', 'color: red;font-weight: bold', '/b', 'cta big green'],
    body: 'New titleBuy nowbeforenafter',
    bodyNodes: before.bodyNodes + 2,
  });
  b.observers.notify(); // our own mutations: nothing is applied twice
  b.boot(site(allB(CHANGES)));
  assert.deepEqual(snapshot(b), after);
  // The inserted span has class "note" too: it is never a target (no chain of inserts).
  assert.equal(b.document.querySelectorAll('.note').length, 2);
});

test('while the page is parsed, changes apply to elements as they come, set_content once complete', () => {
  const b = browser({ readyState: 'loading', body: () => [] });
  b.boot(site(allB(CHANGES.slice(0, 2))));
  const root = b.document.documentElement;
  assert.equal(root.style.opacity, '0', 'hidden while a change is pending');
  const headline = new FakeElement('h1', { id: 'headline' }, ['Old']);
  b.document.body.append(headline);
  b.observers.notify();
  assert.equal(headline.textContent, 'Old', 'not complete yet: nothing follows it');
  const buy = new FakeElement('a', { id: 'buy' }, ['Buy']);
  b.document.body.append(buy);
  b.observers.notify();
  assert.equal(headline.textContent, 'New title');
  assert.equal(buy.style.cssText, ';font-weight: bold');
  assert.equal(root.style.opacity, '', 'shown once every change is applied');
  b.document.readyState = 'interactive';
  b.document.fire('DOMContentLoaded');
  assert.equal(b.observers.live, 0, 'the observer stops at DOMContentLoaded');
});

test('anti-flicker: never for the control, at most anti_flicker_ms, and after the final pass', () => {
  const control = browser({ readyState: 'loading', body: () => [] });
  const opacities = [];
  Object.defineProperty(control.document.documentElement.style, 'opacity', { set: (value) => opacities.push(value) });
  control.boot(site(experiment({ variants: [{ ...CONTROL, weight: 10000 }, { ...VARIANT_B, weight: 0 }] })));
  assert.deepEqual(opacities, [], 'the html element is never touched');

  const slow = browser({ readyState: 'loading', body: () => [] });
  slow.boot({ ...site(allB(CHANGES.slice(0, 1))), anti_flicker_ms: 400 });
  const root = slow.document.documentElement;
  assert.equal(root.style.opacity, '0');
  slow.timers.run(399);
  assert.equal(root.style.opacity, '0');
  slow.timers.run(1);
  assert.equal(root.style.opacity, '', 'shown after anti_flicker_ms whatever is pending');

  const missing = browser({ readyState: 'loading', body: () => [] });
  missing.boot(site(allB(CHANGES.slice(0, 1))));
  missing.document.fire('DOMContentLoaded');
  assert.equal(missing.document.documentElement.style.opacity, '', 'shown after the pass at DOMContentLoaded');
});

test('a failing change is skipped, the page shown, and one error event sent', () => {
  const b = browser({ readyState: 'loading' });
  const changes = [
    { selector: '!!bad', action: 'set_content', payload: 'never' },
    { selector: '#buy', action: 'set_attribute', payload: 'x' }, // no attribute_name
    { selector: '#headline', action: 'set_content', payload: 'New title' },
    { selector: '.note', action: 'add_class', payload: 'shown' },
  ];
  b.boot(site(allB(changes)));
  assert.equal(b.byId('headline').textContent, 'New title');
  assert.ok(b.document.querySelectorAll('.shown').length);
  assert.equal(b.document.documentElement.style.opacity, '');
  b.observers.notify();
  const errors = b.events().filter((event) => event.type === 'error');
  assert.equal(errors.length, 1);
  assert.equal(errors[0].experiment_id, EXP);
  assert.equal(errors[0].variant_id, 'v-b');
  assert.match(errors[0].name, /not a valid selector/);
});

test('events: one exposure per experiment and session, in batches to the edge that served the snippet', () => {
  const b = browser();
  const sk = b.boot(site(allB([]), experiment({ id: 'e2', url_pattern: null })));
  assert.deepEqual(b.requests, [], 'nothing is sent before the flush timer');
  b.timers.run(FLUSH_MS - 1);
  assert.deepEqual(b.requests, []);
  const events = b.events();
  assert.equal(b.requests.length, 1);
  assert.equal(b.requests[0].url, 'https://edge.example/v1/collect');
  assert.equal(b.requests[0].body.public_key, 'pk_test');
  assert.deepEqual(
    events.map((event) => [event.type, event.experiment_id, event.variant_id]),
    [
      ['exposure', EXP, 'v-b'],
      ['exposure', 'e2', sk.getVariant('e2').variantId],
    ],
  );
  for (const event of events) {
    assert.deepEqual(Object.keys(event).filter((key) => !EVENT_FIELDS.includes(key)), []);
    assert.match(event.event_id, UUID);
    assert.equal(event.visitor_id, sk.v);
    assert.equal(event.session_id, sk.s);
    assert.equal(event.pathname, '/pricing');
    assert.equal(event.device, 'desktop');
    assert.ok(Math.abs(event.ts - Date.now()) < 60000);
  }
  assert.equal(new Set(events.map((event) => event.event_id)).size, 2);
  assert.equal(b.context.sessionStorage.sk_x, ` ${EXP} e2`);

  // The same session: no exposure again. A new session: exposures again.
  const again = browser({ localStorage: { ...b.context.localStorage }, sessionStorage: { ...b.context.sessionStorage } });
  again.boot(site(allB([])));
  assert.deepEqual(again.events(), []);
  const next = browser({ localStorage: { ...b.context.localStorage } });
  next.boot(site(allB([])));
  assert.deepEqual(next.events().map((event) => event.type), ['exposure']);
});

test('a deployed winner (served without goals) changes the page and sends no exposure', () => {
  const b = browser();
  const winner = { ...VARIANT_B, weight: 10000, changes: [{ selector: '#headline', action: 'set_content', payload: 'Winner' }] };
  const sk = b.boot(site(experiment({ variants: [winner], goals: [] })));
  assert.equal(b.byId('headline').textContent, 'Winner');
  assert.equal(sk.getVariant(EXP).variantId, winner.id);
  b.timers.run(FLUSH_MS);
  assert.deepEqual(b.events(), []);
});

test(`batches hold at most ${MAX_BATCH} events; pagehide and a hidden page flush at once`, () => {
  const b = browser();
  const sk = b.boot(site());
  for (let i = 0; i < 1200; i++) sk.track('tick');
  b.win.fire('pagehide');
  assert.deepEqual(
    b.requests.map((request) => request.body.events.length),
    [500, 500, 200],
  );
  sk.track('tock');
  b.document.hidden = true;
  b.document.fire('visibilitychange');
  assert.equal(b.requests.length, 4);
  b.document.hidden = false;
  sk.track('later');
  assert.equal(b.requests.length, 4);
  b.timers.run(FLUSH_MS);
  assert.equal(b.requests.length, 5, 'the flush timer starts again after a flush');
});

test('a refused beacon, or none, falls back to fetch with keepalive', () => {
  for (const options of [{ beaconRefuses: true }, { beacon: false }]) {
    const b = browser(options);
    b.boot(site(allB([])));
    b.events();
    assert.deepEqual(
      b.requests.map((request) => [request.via, request.url, request.init.method, request.init.keepalive]),
      [['fetch', 'https://edge.example/v1/collect', 'POST', true]],
    );
    assert.equal(typeof b.requests[0].init.body, 'string', 'text/plain: no CORS preflight');
  }
});

test('without currentScript (an inlined snippet) events go to the page origin', () => {
  const b = browser({ currentScript: null });
  b.boot(site(allB([])));
  b.events();
  assert.equal(b.requests[0].url, 'https://shop.example/v1/collect');
});

test('click goals: one delegated capture listener, element.closest(selector)', () => {
  const b = browser();
  const goals = [
    { id: 'g-click', name: 'Buy', type: 'click', selector: '.cta' },
    { id: 'g-bad', name: 'Bad', type: 'click', selector: '!!bad' },
    { id: 'g-none', name: 'No selector', type: 'click' },
  ];
  b.boot(site(allB([], { goals })));
  const clicks = b.document.listeners.filter((entry) => entry.type === 'click');
  assert.deepEqual(clicks.map((entry) => entry.capture), [true]);
  const em = b.byId('buy').elements[0];
  b.document.fire('click', { target: em });
  b.document.fire('click', { target: b.byId('headline') });
  b.document.fire('click', { target: b.document }); // not an element: ignored
  const goalEvents = b.events().filter((event) => event.type === 'goal');
  assert.deepEqual(
    goalEvents.map((event) => [event.goal_id, event.experiment_id, event.variant_id]),
    [['g-click', EXP, 'v-b']],
  );
});

test('pageview goals on their url_pattern (none: every page), on load and on SPA routes', () => {
  const b = browser();
  const goals = [
    { id: 'g-all', name: 'Any page', type: 'pageview' },
    { id: 'g-thanks', name: 'Thanks', type: 'pageview', url_pattern: '/thanks' },
  ];
  b.boot(site(allB([], { url_pattern: null, goals })));
  b.context.history.pushState(null, '', '/thanks?order=1');
  b.context.history.replaceState(null, '', '/thanks?order=2'); // same pathname: no new page
  const pageviews = b
    .events()
    .filter((event) => event.type === 'goal')
    .map((event) => [event.goal_id, event.pathname]);
  assert.deepEqual(pageviews, [
    ['g-all', '/pricing'],
    ['g-all', '/thanks'],
    ['g-thanks', '/thanks'],
  ]);
});

test('track(): custom goals of the page by name, else one custom event; values are numbers', () => {
  const b = browser();
  const goals = [{ id: 'g-signup', name: 'signup', type: 'custom' }];
  const sk = b.boot(site(allB([], { goals }), experiment({ id: 'e2', url_pattern: null, goals })));
  sk.track('signup', 9.99);
  sk.track('newsletter');
  sk.track('big', 1e16);
  sk.track('text', '5');
  sk.track('nan', NaN);
  sk.track('x'.repeat(300), -3);
  const events = b.events().filter((event) => event.type !== 'exposure');
  assert.deepEqual(
    events.map((event) => [event.type, event.experiment_id, event.goal_id, event.name, event.value]),
    [
      ['goal', EXP, 'g-signup', undefined, 9.99],
      ['goal', 'e2', 'g-signup', undefined, 9.99],
      ['custom', undefined, undefined, 'newsletter', undefined],
      ['custom', undefined, undefined, 'big', undefined],
      ['custom', undefined, undefined, 'text', undefined],
      ['custom', undefined, undefined, 'nan', undefined],
      ['custom', undefined, undefined, 'x'.repeat(256), -3],
    ],
  );
  assert.ok(!('value' in events[2]), 'no value: left out of the JSON');
});

test('optOut() stops all sending, drops the queue, and persists', () => {
  const b = browser();
  const sk = b.boot(site(allB([])));
  sk.track('before');
  sk.optOut();
  sk.track('after');
  b.win.fire('pagehide');
  assert.deepEqual(b.events(), []);
  assert.equal(b.context.localStorage.sk_o, '1');
  const later = browser({ localStorage: { ...b.context.localStorage } });
  later.boot(site(allB(CHANGES.slice(0, 1))));
  later.sk.track('again');
  assert.deepEqual(later.events(), []);
  assert.equal(later.byId('headline').textContent, 'New title', 'the page itself is unchanged by opting out');
  const cookie = browser({ storageThrows: true });
  cookie.boot(site()).optOut();
  assert.equal(cookie.document.cookie, 'sk_o=1;path=/;max-age=31536000');
});

test('?sk_preview=<variantId> forces and applies that variant, and sends nothing at all', () => {
  const b = browser({ url: 'https://shop.example/pricing?sk_preview=v-b' });
  const changes = [...CHANGES.slice(0, 1), { selector: '!!bad', action: 'set_content', payload: 'x' }];
  const variants = [CONTROL, { ...VARIANT_B, changes }];
  const goals = [...GOALS, { id: 'g-pv', name: 'pv', type: 'pageview' }, { id: 'g-c', name: 'c', type: 'custom' }];
  const sk = b.boot(site(experiment({ coverage: 0, variants, goals })));
  assert.equal(sk.preview, true);
  assert.deepEqual(b.a.map((entry) => [entry.vid, entry.ic]), [['v-b', false]]);
  assert.equal(b.byId('headline').textContent, 'New title');
  sk.track('c');
  sk.track('other');
  b.document.fire('click', { target: b.byId('buy') });
  b.win.fire('pagehide');
  assert.deepEqual(b.events(), []);
  assert.equal(b.context.sessionStorage.sk_x, undefined);
});

// Lets the fake fetch's promise chains settle.
const settled = () => new Promise((resolve) => setImmediate(resolve));

test('an empty ?sk_preview= is no preview; an unknown one previews nothing, sends nothing', async () => {
  const empty = browser({ url: 'https://shop.example/pricing?sk_preview=' });
  assert.equal(empty.boot(site(allB([]))).preview, false);
  assert.equal(empty.events().length, 1);
  assert.deepEqual(empty.fetched, []);
  const other = browser({ url: 'https://shop.example/pricing?sk_preview=v-elsewhere' });
  const sk = other.boot(site(allB([])));
  assert.equal(sk.preview, true);
  assert.deepEqual(other.fetched, ['https://edge.example/s/pk_test/preview/v-elsewhere.json']);
  await settled();
  assert.equal(sk.getVariant(EXP).variantId, 'v-b', 'the 404: assigned as usual');
  assert.equal(other.document.documentElement.style.opacity, '', 'shown');
  assert.deepEqual(other.events(), []);
});

// A draft, as GET /s/{public_key}/preview/{token}.json answers it.
const DRAFT = 'd2a7c0de-0000-4000-8000-000000000001';
const TOKEN = 'tok-en_1';
const PREVIEW_URL = `https://edge.example/s/pk_test/preview/${TOKEN}.json`;

test('?sk_preview=<token>: hidden until the fetched experiment is applied, nothing sent', async () => {
  const draft = allB(CHANGES.slice(0, 1), { id: DRAFT, coverage: 0 });
  const b = browser({
    url: `https://shop.example/pricing?sk_preview=${TOKEN}`,
    previews: { [PREVIEW_URL]: { variant: 'v-b', experiment: draft } },
  });
  // A running experiment of the site still runs beside the previewed draft.
  const sk = b.boot(site(experiment({ url_pattern: null })));
  assert.equal(b.document.documentElement.style.opacity, '0', 'hidden while fetching');
  assert.equal(sk.getVariant(DRAFT), null, 'not yet');
  assert.equal(b.byId('headline').textContent, 'Old title');
  await settled();
  assert.deepEqual(b.fetched, [PREVIEW_URL]);
  assert.equal(sk.getVariant(DRAFT).variantId, 'v-b');
  assert.ok(sk.getVariant(EXP), 'the running experiment too');
  assert.equal(b.byId('headline').textContent, 'New title');
  assert.equal(b.document.documentElement.style.opacity, '', 'shown once applied');
  sk.track('x');
  b.document.fire('click', { target: b.byId('buy') });
  b.win.fire('pagehide');
  assert.deepEqual(b.events(), []);
  assert.equal(b.context.sessionStorage.sk_x, undefined);
});

test('a token previewing a running experiment replaces its entry; a redirect draft redirects', async () => {
  const b = browser({
    url: `https://shop.example/pricing?sk_preview=${TOKEN}`,
    previews: { [PREVIEW_URL]: { variant: 'v-b', experiment: experiment({ coverage: 0 }) } },
  });
  const sk = b.boot(site(experiment({ variants: [{ ...CONTROL, weight: 10000 }, { ...VARIANT_B, weight: 0 }] })));
  await settled();
  assert.deepEqual(b.a.map((entry) => [entry.eid, entry.vid]), [[EXP, 'v-b']]);
  assert.equal(sk.preview, true);

  const redirect = { ...VARIANT_B, weight: 0, redirect_url: '/pricing/b' };
  const away = browser({
    url: `https://shop.example/pricing?sk_preview=${TOKEN}`,
    previews: { [PREVIEW_URL]: { variant: 'v-b', experiment: experiment({ id: DRAFT, variants: [CONTROL, redirect] }) } },
  });
  away.boot(site());
  await settled();
  assert.deepEqual(away.replaced, [`https://shop.example/pricing/b?sk_preview=${TOKEN}`]);
  assert.equal(away.document.documentElement.style.opacity, '0', 'hidden until it is gone');
  assert.equal(away.context.sessionStorage.sk_r, '', 'no marker');
});

test('a failed or slow preview fetch shows the page (at the latest after PREVIEW_WAIT_MS)', async () => {
  const failed = browser({
    url: `https://shop.example/pricing?sk_preview=${TOKEN}`,
    previews: { [PREVIEW_URL]: () => Promise.reject(new TypeError('Failed to fetch')) },
  });
  failed.boot(site(allB(CHANGES.slice(0, 1))));
  await settled();
  assert.equal(failed.byId('headline').textContent, 'New title', 'the site config runs');
  assert.equal(failed.document.documentElement.style.opacity, '');
  assert.deepEqual(failed.events(), []);
  const slow = browser({
    url: `https://shop.example/pricing?sk_preview=${TOKEN}`,
    previews: { [PREVIEW_URL]: () => new Promise(() => {}) },
  });
  slow.boot(site());
  slow.timers.run(PREVIEW_WAIT_MS - 1);
  assert.equal(slow.document.documentElement.style.opacity, '0');
  slow.timers.run(1);
  assert.equal(slow.document.documentElement.style.opacity, '');
});

test('a redirect variant replaces the location before anything else, keeping query and hash', () => {
  const redirect = { ...VARIANT_B, weight: 10000, redirect_url: '/pricing-b', changes: CHANGES.slice(0, 1) };
  const config = site(experiment({ variants: [{ ...CONTROL, weight: 0 }, redirect] }));
  const away = browser({ url: 'https://shop.example/pricing?utm=1#plans' });
  away.boot(config);
  assert.deepEqual(away.replaced, ['https://shop.example/pricing-b?utm=1#plans']);
  assert.equal(away.byId('headline').textContent, 'Old title', 'no changes on the page it leaves');
  assert.equal(away.document.documentElement.style.opacity, '0', 'hidden until it is gone');
  away.win.fire('pagehide');
  assert.deepEqual(away.events(), [], 'no exposure on the origin page');
  assert.equal(away.context.sessionStorage.sk_r, ` ${EXP}`);

  // The destination: the experiment runs there (url_pattern aside), exposes, never loops.
  const there = browser({
    url: 'https://shop.example/pricing-b?utm=1#plans',
    localStorage: { ...away.context.localStorage },
    sessionStorage: { ...away.context.sessionStorage },
  });
  const sk = there.boot(config);
  assert.deepEqual(there.replaced, []);
  assert.equal(sk.getVariant(EXP).variantId, 'v-b');
  assert.deepEqual(
    there.events().map((event) => [event.type, event.experiment_id, event.variant_id, event.pathname]),
    [['exposure', EXP, 'v-b', '/pricing-b']],
  );
  assert.equal(there.context.sessionStorage.sk_r, '', 'the marker is used once');

  // A redirect that comes back (say a server redirect to the origin): no second redirect.
  const back = browser({
    url: 'https://shop.example/pricing',
    localStorage: { ...away.context.localStorage },
    sessionStorage: { ...away.context.sessionStorage },
  });
  back.boot(config);
  assert.deepEqual(back.replaced, []);
});

test('a redirect to where the visitor already is does nothing; previews redirect without a marker', () => {
  const redirect = { ...VARIANT_B, weight: 10000, redirect_url: '/pricing/b' };
  const config = site(experiment({ variants: [{ ...CONTROL, weight: 0 }, redirect] }));
  const there = browser({ url: 'https://shop.example/pricing/b?x=1' });
  there.boot(config);
  assert.deepEqual(there.replaced, []);
  assert.equal(there.a.length, 1);
  const preview = browser({ url: 'https://shop.example/pricing?sk_preview=v-b' });
  preview.boot(config);
  assert.deepEqual(preview.replaced, ['https://shop.example/pricing/b?sk_preview=v-b']);
  assert.equal(preview.context.sessionStorage.sk_r, '', 'no marker');
});

test('SPA routes: changes of experiments no longer matching are undone, new ones applied, bounded', () => {
  const b = browser();
  const before = snapshot(b);
  const sk = b.boot(site(allB(CHANGES)));
  const changed = snapshot(b);
  const history = b.context.history;
  history.pushState(null, '', '/about');
  assert.equal(sk.a.length, 0);
  assert.deepEqual(snapshot(b), before, 'every change undone');
  history.pushState(null, '', '/pricing/annual');
  assert.deepEqual(snapshot(b), changed, 'applied again');
  // A framework renders the new route after pushState: caught for WATCH_MS.
  const late = new FakeElement('h1', { id: 'headline' }, ['Late']);
  b.document.body.append(late);
  b.observers.notify();
  assert.equal(late.textContent, 'New title');
  b.timers.run(WATCH_MS);
  assert.equal(b.observers.live, 0, 'the observer stops after WATCH_MS');
  // Back with popstate; replaceState on the same pathname re-evaluates nothing.
  b.go('/about');
  b.win.fire('popstate');
  assert.equal(late.textContent, 'Late');
  history.replaceState({ scroll: 1 }, '');
  assert.equal(sk.a.length, 0);
  const exposures = b.events().filter((event) => event.type === 'exposure');
  assert.equal(exposures.length, 1, 'one exposure per session');
});

test('history methods keep working, and return what they return, when the runtime cannot route', () => {
  const b = browser();
  b.boot(site(allB(CHANGES.slice(0, 1))));
  const location = b.context.location;
  let path = location.pathname;
  Object.defineProperty(location, 'pathname', {
    get() {
      throw new Error('broken');
    },
    set(value) {
      path = value;
    },
  });
  assert.equal(b.context.history.pushState(null, '', '/elsewhere'), 'pushed');
  assert.equal(path, '/elsewhere');
  b.win.fire('popstate');
});

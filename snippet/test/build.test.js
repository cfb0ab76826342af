// The built runtime: the config token, the size budget, and a smoke run of the minified
// bundle in a node:vm context with stub browser globals (real browser tests are in
// Chromium, on the Python side).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import vm from 'node:vm';
import { readFile } from 'node:fs/promises';
import { bundleRuntime, CONFIG_TOKEN, GZIP_BUDGET, OUTPUT, sizes } from '../build.mjs';
import { assign } from '../src/assign.js';

const code = await bundleRuntime();

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const DESKTOP_UA = 'Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0';

function memoryStorage(entries = {}) {
  const map = new Map(Object.entries(entries));
  return {
    getItem: (key) => (map.has(key) ? map.get(key) : null),
    setItem: (key, value) => map.set(key, String(value)),
    map,
  };
}

function fakeElement() {
  const classes = new Set(['keep', 'old']);
  return {
    textContent: 'old text',
    style: { cssText: 'color: red' },
    attributes: {},
    classes,
    setAttribute(name, value) {
      this.attributes[name] = value;
    },
    classList: {
      add: (...names) => names.forEach((name) => classes.add(name)),
      remove: (...names) => names.forEach((name) => classes.delete(name)),
    },
  };
}

// Run the built snippet with `config` in a fresh context; returns what it left behind.
function run(config, options = {}) {
  const url = new URL(options.url || 'https://shop.example/pricing');
  const replaced = [];
  const elements = options.elements || {};
  const context = options.context || {
    navigator: { userAgent: options.userAgent || DESKTOP_UA, maxTouchPoints: 0 },
    screen: { width: 1920 },
    location: { href: url.href, pathname: url.pathname, search: url.search, replace: (to) => replaced.push(to) },
    sessionStorage: memoryStorage(),
    document: {
      readyState: 'complete',
      cookie: options.cookie || '',
      querySelectorAll(selector) {
        if (selector === '!!bad') throw new SyntaxError('bad selector');
        return elements[selector] || [];
      },
    },
    URL,
    URLSearchParams,
    TextEncoder,
    crypto: globalThis.crypto,
  };
  if (!options.context) {
    if (options.storageThrows) {
      Object.defineProperty(context, 'localStorage', {
        get() {
          throw new Error('SecurityError: storage is disabled');
        },
      });
    } else {
      context.localStorage = memoryStorage(options.localStorage);
    }
    context.window = context;
    vm.createContext(context);
  }
  vm.runInContext(code.replace(CONFIG_TOKEN, () => JSON.stringify(config)), context);
  const sk = context.window.__sk;
  return { sk, a: JSON.parse(JSON.stringify(sk.a)), replaced, context };
}

const EXP = 'b1c7a8a4-5a1e-4c52-9d49-3f0d2f5d8e01';
const CONTROL = { id: 'v-control', name: 'Control', control: true, weight: 5000, changes: [], redirect_url: null };
const VARIANT_B = { id: 'v-b', name: 'B', control: false, weight: 5000, changes: [], redirect_url: null };
const GOALS = [{ id: 'g1', name: 'Buy', type: 'click', selector: '#buy' }];

function experiment(overrides = {}) {
  return { id: EXP, url_pattern: '/pricing', coverage: 10000, variants: [CONTROL, VARIANT_B], goals: GOALS, ...overrides };
}

test('the built runtime contains the config token exactly once', () => {
  assert.equal(code.split(CONFIG_TOKEN).length, 2);
});

test(`the built runtime is within its gzip budget (${GZIP_BUDGET} bytes)`, () => {
  const { raw, gzip } = sizes(code);
  assert.ok(gzip <= GZIP_BUDGET, `${gzip} bytes gzipped (${raw} raw)`);
});

test('window.__sk has the reference shape and the spec assignment', () => {
  const { sk, a, context } = run({ sk: 'pk_test', experiments: [experiment()] });
  assert.deepEqual(Object.keys(sk).sort(), ['a', 'dt', 'getVariant', 'preview', 's', 'sk', 'v']);
  assert.match(sk.v, UUID);
  assert.match(sk.s, UUID);
  assert.equal(context.localStorage.getItem('sk_v'), sk.v);
  assert.equal(context.sessionStorage.getItem('sk_s'), sk.s);
  assert.equal(sk.dt, 'desktop');
  assert.equal(sk.sk, 'pk_test');
  assert.equal(sk.preview, false);
  const index = assign(EXP, sk.v, [5000, 5000], 10000);
  const variant = [CONTROL, VARIANT_B][index];
  assert.deepEqual(a, [{ eid: EXP, vid: variant.id, ic: variant.control, gs: GOALS, ch: [] }]);
  assert.deepEqual({ ...sk.getVariant(EXP) }, { variantId: variant.id, isControl: variant.control });
  assert.equal(sk.getVariant('another-experiment'), null);
});

test('a stored visitor id is reused, and decides the variant', () => {
  for (const visitor of ['visitor-1', 'visitor-2', 'visitor-3', 'visitor-4']) {
    const { sk } = run({ sk: 'pk', experiments: [experiment()] }, { localStorage: { sk_v: visitor } });
    assert.equal(sk.v, visitor);
    const index = assign(EXP, visitor, [5000, 5000], 10000);
    assert.equal(sk.getVariant(EXP).variantId, [CONTROL, VARIANT_B][index].id);
  }
});

test('experiments of other pages and visitors outside the coverage get no entry', () => {
  const elsewhere = run({ sk: 'pk', experiments: [experiment({ url_pattern: '/checkout' })] });
  assert.deepEqual(elsewhere.a, []);
  const uncovered = run({ sk: 'pk', experiments: [experiment({ coverage: 0 })] });
  assert.deepEqual(uncovered.a, []);
  assert.equal(uncovered.sk.getVariant(EXP), null);
  const everywhere = run({ sk: 'pk', experiments: [experiment({ url_pattern: null })] }, { url: 'https://shop.example/x/y' });
  assert.equal(everywhere.a.length, 1);
});

test('?sk_preview=<variantId> forces that variant, whatever the coverage', () => {
  const { sk, a } = run({ sk: 'pk', experiments: [experiment({ coverage: 0 })] }, {
    url: 'https://shop.example/pricing?sk_preview=v-b',
  });
  assert.equal(sk.preview, true);
  assert.deepEqual(a.map((entry) => [entry.vid, entry.ic]), [['v-b', false]]);
});

test('storage that throws falls back to a first-party cookie', () => {
  const fresh = run({ sk: 'pk', experiments: [] }, { storageThrows: true });
  assert.match(fresh.sk.v, UUID);
  assert.equal(fresh.context.document.cookie, `sk_v=${fresh.sk.v}; path=/; max-age=31536000; SameSite=Lax`);
  const returning = run({ sk: 'pk', experiments: [] }, { storageThrows: true, cookie: 'a=1; sk_v=visitor-9; b=2' });
  assert.equal(returning.sk.v, 'visitor-9');
});

test('a redirect variant replaces the location, keeping the query', () => {
  const redirect = { ...VARIANT_B, weight: 10000, redirect_url: '/pricing-b', changes: [{ selector: 'h1', action: 'set_content', payload: 'x' }] };
  const h1 = fakeElement();
  const config = { sk: 'pk', experiments: [experiment({ variants: [{ ...CONTROL, weight: 0 }, redirect] })] };
  const away = run(config, { url: 'https://shop.example/pricing?utm=1', elements: { h1: [h1] } });
  assert.deepEqual(away.replaced, ['https://shop.example/pricing-b?utm=1']);
  assert.equal(h1.textContent, 'old text'); // no changes when leaving the page
  const there = run({ ...config, experiments: [experiment({ url_pattern: null, variants: config.experiments[0].variants })] }, {
    url: 'https://shop.example/pricing-b?utm=1',
  });
  assert.deepEqual(there.replaced, []);
});

test('changes apply once each; a bad selector or action breaks nothing', () => {
  const title = fakeElement();
  const button = fakeElement();
  const changes = [
    { selector: '!!bad', action: 'set_content', payload: 'never' },
    { selector: 'h1', action: 'set_content', payload: 'New title' },
    { selector: 'h1', action: 'no_such_action', payload: 'x' },
    { selector: '#buy', action: 'set_style', payload: 'font-weight: bold' },
    { selector: '#buy', action: 'set_attribute', attribute_name: 'href', payload: 'https://buy.example/b' },
    { selector: '#buy', action: 'add_class', payload: ' big  green ' },
    { selector: '#buy', action: 'remove_class', payload: 'old' },
  ];
  const variants = [{ ...CONTROL, weight: 0 }, { ...VARIANT_B, weight: 10000, changes }];
  const config = { sk: 'pk', experiments: [experiment({ variants })] };
  const first = run(config, { elements: { h1: [title], '#buy': [button] } });
  assert.equal(first.a.length, 1);
  assert.equal(title.textContent, 'New title');
  assert.equal(button.style.cssText, 'color: red;font-weight: bold');
  assert.deepEqual(button.attributes, { href: 'https://buy.example/b' });
  assert.deepEqual([...button.classes].sort(), ['big', 'green', 'keep']);
  // The snippet included twice: the second copy leaves the page alone.
  run(config, { context: first.context });
  assert.equal(button.style.cssText, 'color: red;font-weight: bold');
});

test('a broken config leaves window.__sk with no assignments', () => {
  for (const config of [null, { sk: 'pk', experiments: 7 }]) {
    const { sk, a } = run(config);
    assert.deepEqual(a, []);
    assert.equal(sk.getVariant(EXP), null);
  }
  const { a } = run({ sk: 'pk', experiments: [{ id: 'broken' }, experiment()] });
  assert.equal(a.length, 1); // one broken experiment never stops the others
});

test('the committed runtime is a fresh build of the source', async () => {
  const committed = await readFile(OUTPUT, 'utf8');
  assert.equal(committed, code, 'src/edge/static/runtime.js is stale: run `make snippet`');
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cookieValue, deviceType, previewVariantId, redirectTarget, uuidV4 } from '../src/runtime.js';

const UA = {
  windowsChrome:
    'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36',
  macSafari:
    'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15',
  linuxFirefox: 'Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0',
  iPhone:
    'Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1',
  iPad:
    'Mozilla/5.0 (iPad; CPU OS 12_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/12.1 Mobile/15E148 Safari/604.1',
  androidPhone:
    'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36',
  androidTablet:
    'Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36',
  firefoxAndroidPhone: 'Mozilla/5.0 (Android 14; Mobile; rv:125.0) Gecko/125.0 Firefox/125.0',
  firefoxAndroidTablet: 'Mozilla/5.0 (Android 14; Tablet; rv:125.0) Gecko/125.0 Firefox/125.0',
};

test('deviceType from the user agent', () => {
  assert.equal(deviceType(UA.windowsChrome, 1920, 0), 'desktop');
  assert.equal(deviceType(UA.macSafari, 1440, 0), 'desktop');
  assert.equal(deviceType(UA.linuxFirefox, 2560, 0), 'desktop');
  assert.equal(deviceType(UA.iPhone, 390, 5), 'mobile');
  assert.equal(deviceType(UA.androidPhone, 412, 5), 'mobile');
  assert.equal(deviceType(UA.firefoxAndroidPhone, 412, 5), 'mobile');
  assert.equal(deviceType(UA.iPad, 1024, 5), 'tablet');
  assert.equal(deviceType(UA.androidTablet, 1280, 10), 'tablet');
  assert.equal(deviceType(UA.firefoxAndroidTablet, 1280, 10), 'tablet');
});

test('deviceType of iPadOS and of phones asking for desktop sites', () => {
  assert.equal(deviceType(UA.macSafari, 1024, 5), 'tablet'); // iPadOS 13+ default
  assert.equal(deviceType(UA.linuxFirefox, 412, 5), 'mobile'); // Android "desktop site"
  assert.equal(deviceType('', 0, 0), 'desktop');
  assert.equal(deviceType(undefined, undefined, undefined), 'desktop');
});

test('previewVariantId reads ?sk_preview=', () => {
  assert.equal(previewVariantId('?sk_preview=abc-123'), 'abc-123');
  assert.equal(previewVariantId('?utm_source=x&sk_preview=v%2D1&y=2'), 'v-1');
  assert.equal(previewVariantId('?sk_preview='), null);
  assert.equal(previewVariantId('?other=1'), null);
  assert.equal(previewVariantId(''), null);
});

test('redirectTarget keeps the current query unless the redirect has its own', () => {
  const here = 'https://shop.example/pricing?utm_source=ad&x=1#plans';
  assert.equal(redirectTarget('/pricing-b', here), 'https://shop.example/pricing-b?utm_source=ad&x=1');
  assert.equal(redirectTarget('https://shop.example/new', here), 'https://shop.example/new?utm_source=ad&x=1');
  assert.equal(redirectTarget('/pricing-b?plan=pro', here), 'https://shop.example/pricing-b?plan=pro');
  assert.equal(redirectTarget('https://other.example/p', 'https://shop.example/p'), 'https://other.example/p');
});

test('redirectTarget is null when the visitor is already there', () => {
  assert.equal(redirectTarget('/pricing-b', 'https://shop.example/pricing-b'), null);
  assert.equal(redirectTarget('/pricing-b', 'https://shop.example/pricing-b?utm=1#top'), null);
  assert.equal(redirectTarget('https://shop.example/b?v=2', 'https://shop.example/b?v=2'), null);
  assert.equal(redirectTarget('/b?v=2', 'https://shop.example/b?v=1'), 'https://shop.example/b?v=2');
});

test('redirectTarget refuses anything but http(s)', () => {
  assert.equal(redirectTarget('javascript:alert(1)', 'https://shop.example/'), null);
  assert.equal(redirectTarget('data:text/html,x', 'https://shop.example/'), null);
  assert.throws(() => redirectTarget('http://[bad', 'https://shop.example/'));
});

test('uuidV4 has the uuid v4 format', () => {
  const seen = new Set();
  for (let i = 0; i < 1000; i++) {
    const id = uuidV4();
    assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    seen.add(id);
  }
  assert.equal(seen.size, 1000);
});

test('cookieValue finds one cookie by its exact name', () => {
  assert.equal(cookieValue('sk_v=abc', 'sk_v'), 'abc');
  assert.equal(cookieValue('a=1; sk_v=abc; b=2', 'sk_v'), 'abc');
  assert.equal(cookieValue('xsk_v=nope; sk_v=yes', 'sk_v'), 'yes');
  assert.equal(cookieValue('a=1', 'sk_v'), undefined);
  assert.equal(cookieValue('', 'sk_v'), undefined);
});

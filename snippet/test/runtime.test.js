import assert from 'node:assert/strict';
import { test } from 'node:test';
import { deviceType, listed, redirectTarget } from '../src/runtime.js';
import { uuid } from '../src/storage.js';

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

const at = (href) => new URL(href);

test('redirectTarget keeps the current query and hash unless the redirect has its own', () => {
  const here = at('https://shop.example/pricing?utm_source=ad&x=1#plans');
  assert.equal(redirectTarget('/pricing-b', here), 'https://shop.example/pricing-b?utm_source=ad&x=1#plans');
  assert.equal(redirectTarget('https://shop.example/new', here), 'https://shop.example/new?utm_source=ad&x=1#plans');
  assert.equal(redirectTarget('/pricing-b?plan=pro', here), 'https://shop.example/pricing-b?plan=pro#plans');
  assert.equal(redirectTarget('/pricing-b#faq', here), 'https://shop.example/pricing-b?utm_source=ad&x=1#faq');
  assert.equal(redirectTarget('https://other.example/p', at('https://shop.example/p')), 'https://other.example/p');
});

test('redirectTarget is null when the visitor is already there, the hash aside', () => {
  assert.equal(redirectTarget('/pricing-b', at('https://shop.example/pricing-b')), null);
  assert.equal(redirectTarget('/pricing-b', at('https://shop.example/pricing-b?utm=1#top')), null);
  assert.equal(redirectTarget('/pricing-b#other', at('https://shop.example/pricing-b#top')), null);
  assert.equal(redirectTarget('https://shop.example/b?v=2', at('https://shop.example/b?v=2')), null);
  assert.equal(redirectTarget('/b?v=2', at('https://shop.example/b?v=1')), 'https://shop.example/b?v=2');
});

test('redirectTarget refuses anything but http(s)', () => {
  assert.equal(redirectTarget('javascript:alert(1)', at('https://shop.example/')), null);
  assert.equal(redirectTarget('data:text/html,x', at('https://shop.example/')), null);
  assert.throws(() => redirectTarget('http://[bad', at('https://shop.example/')));
});

test('uuid is a random uuid v4', () => {
  const seen = new Set();
  for (let i = 0; i < 1000; i++) {
    const id = uuid();
    assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    seen.add(id);
  }
  assert.equal(seen.size, 1000);
});

test('listed finds one id in a " "-separated list', () => {
  assert.equal(listed(' a b', 'a'), true);
  assert.equal(listed(' a b', 'b'), true);
  assert.equal(listed(' ab', 'a'), false);
  assert.equal(listed('', 'a'), false);
});

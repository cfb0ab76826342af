import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { compilePattern, normalizePath } from '../src/urlglob.js';

// The golden vectors shared with the Python tests.
const { cases } = JSON.parse(readFileSync(new URL('../../tests/vectors/urlglob.json', import.meta.url), 'utf8'));

test('the url pattern vectors are there', () => {
  assert.ok(cases.length >= 50, `only ${cases.length} cases`);
});

test('every case of tests/vectors/urlglob.json', () => {
  const failures = cases
    .filter((c) => compilePattern(c.pattern).test(c.path) !== c.matches)
    .map((c) => `${JSON.stringify(c.pattern)} on ${JSON.stringify(c.path)} should ${c.matches ? '' : 'not '}match (${c.source})`);
  assert.deepEqual(failures, [], `${failures.length} of ${cases.length} cases differ`);
});

test('normalizePath drops empty segments and decodes each segment all or nothing', () => {
  assert.equal(normalizePath('/'), '');
  assert.equal(normalizePath(''), '');
  assert.equal(normalizePath('//a///b/'), '/a/b');
  assert.equal(normalizePath('/caf%C3%A9'), '/café');
  assert.equal(normalizePath('/a%2Fb'), '/a%2Fb');
  assert.equal(normalizePath('/a%zz/%E0%A4%A/ok%20'), '/a%zz/%E0%A4%A/ok ');
  assert.equal(normalizePath('/%2A'), '/*');
  assert.equal(normalizePath('/a/../b'), '/a/../b');
});

test('no pattern, "/" and "/**" match every page', () => {
  for (const pattern of [null, undefined, '', '   ', '\t\u3000', '/', '/**', '//**/']) {
    const matcher = compilePattern(pattern);
    for (const path of ['/', '', '/x', '/a/b/c', '/%zz']) {
      assert.equal(matcher.test(path), true, `${JSON.stringify(pattern)} on ${path}`);
    }
  }
});

test('several "**" do not backtrack exponentially on long paths', () => {
  const matcher = compilePattern('/**/a/**/b/**/c/**/d');
  const path = '/a/b/c'.repeat(400) + '/x';
  const started = performance.now();
  assert.equal(matcher.test(path), false);
  assert.equal(matcher.test(path + '/d'), true);
  assert.ok(performance.now() - started < 500, 'took too long');
});

test('consecutive "**" collapse into one', () => {
  const matcher = compilePattern('/a/**/**/b');
  assert.equal(matcher.test('/a/b'), true);
  assert.equal(matcher.test('/a/x/y/b'), true);
  assert.equal(matcher.test('/a/x/y'), false);
});

test('matching never throws, whatever the pathname', () => {
  const matchers = ['/a', '/a/*', '/**/b', '/caf%C3%A9/**/x/**/y'].map(compilePattern);
  const paths = ['%', '/%', '/%E0%A4%A', '/\ud800', '/a/\u0000/\n', '/' + '%FF'.repeat(100), '/(/[/)/\\/$/^'];
  for (const matcher of matchers) {
    for (const path of paths) assert.equal(typeof matcher.test(path), 'boolean');
  }
});

test('regex metacharacters in a literal segment are literal', () => {
  const matcher = compilePattern('/a.b/(c)/[d]/e+f/$');
  assert.equal(matcher.test('/a.b/(c)/[d]/e+f/$'), true);
  assert.equal(matcher.test('/axb/(c)/[d]/e+f/$'), false);
  assert.equal(matcher.test('/a.b/c/d/eef/$'), false);
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { applyChanges, WATCH_MS } from '../src/changes.js';
import { FakeElement, fakeDocument, fakeMutationObservers } from './fakedom.js';

// A page in globalThis for src/changes.js: returns the observers to notify.
function page(body, readyState = 'complete') {
  const observers = fakeMutationObservers();
  globalThis.document = fakeDocument(body, { readyState });
  globalThis.MutationObserver = observers.MutationObserver;
  return observers;
}

const byId = (id) => document.querySelectorAll('#' + id)[0];

function markup(element) {
  return element.childNodes.map((node) => (node.tagName ? `<${node.tagName}>${markup(node)}` : node.data)).join('|');
}

test('each undo puts back exactly what its change replaced, last change first', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  page([
    new FakeElement('h1', { id: 'title' }, ['Hello ', new FakeElement('em', {}, ['world'])]),
    new FakeElement('a', { id: 'link', class: 'keep old', style: 'color: red' }, ['x']),
  ]);
  const title = byId('title');
  const link = byId('link');
  const emNode = title.childNodes[1];
  const undo = applyChanges(
    [
      { selector: '#title', action: 'set_content', payload: 'Hi' },
      { selector: '#link', action: 'set_style', payload: 'color: blue' },
      { selector: '#link', action: 'set_attribute', attribute_name: 'href', payload: '/new' },
      { selector: '#link', action: 'set_attribute', attribute_name: 'class', payload: 'other old' },
      { selector: '#link', action: 'add_class', payload: 'old big' },
      { selector: '#link', action: 'remove_class', payload: 'old missing' },
      { selector: '#link', action: 'insert_after', payload: '<b>1</b><i>2</i>' },
      { selector: '#link', action: 'insert_before', payload: 'text' },
    ],
    assert.fail,
    () => {},
  );
  assert.equal(title.textContent, 'Hi');
  assert.equal(link.style.cssText, 'color: red;color: blue');
  assert.equal(link.getAttribute('href'), '/new');
  assert.equal(link.getAttribute('class'), 'other big');
  assert.equal(document.body.childNodes.length, 5);
  undo();
  assert.equal(markup(title), 'Hello |<EM>world');
  assert.equal(title.childNodes[1], emNode, 'the same nodes, not a copy');
  assert.equal(link.style.cssText, 'color: red');
  assert.equal(link.getAttribute('href'), null, 'an attribute that was absent is removed');
  assert.equal(link.getAttribute('class'), 'keep old');
  assert.equal(document.body.childNodes.length, 2);
});

test('undone changes stay undone, and the observer stops', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const observers = page([new FakeElement('p', { class: 'x' }, ['a'])]);
  const undo = applyChanges([{ selector: '.x', action: 'set_content', payload: 'b' }], assert.fail, () => {});
  undo();
  document.body.append(new FakeElement('p', { class: 'x' }, ['c']));
  observers.notify();
  assert.equal(document.body.textContent, 'ac');
  assert.equal(observers.live, 0);
});

test('once the page is parsed, new elements are changed for WATCH_MS, each once', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const observers = page([]);
  applyChanges([{ selector: '.x', action: 'add_class', payload: 'y' }], assert.fail, () => {});
  const first = new FakeElement('p', { class: 'x' });
  document.body.append(first);
  observers.notify();
  observers.notify();
  assert.equal(first.getAttribute('class'), 'x y');
  t.mock.timers.tick(WATCH_MS);
  assert.equal(observers.live, 0);
  const late = new FakeElement('p', { class: 'x' });
  document.body.append(late);
  observers.notify();
  assert.equal(late.getAttribute('class'), 'x');
});

test('ready() once every change found (or failed), or at DOMContentLoaded; errors reported', () => {
  const observers = page([], 'loading');
  const errors = [];
  let ready = 0;
  applyChanges(
    [
      { selector: '.a', action: 'add_class', payload: 'y' },
      { selector: '!!bad', action: 'add_class', payload: 'y' },
      { selector: '.a', action: 'no_such_action', payload: 'y' },
    ],
    (error) => errors.push(error.message),
    () => ready++,
  );
  assert.equal(ready, 0);
  document.body.append(new FakeElement('p', { class: 'a' }));
  observers.notify();
  assert.equal(ready, 1);
  assert.equal(errors.length, 3, 'one report per failing pass and element');
  document.fire('DOMContentLoaded');
  assert.equal(ready, 1);
  assert.equal(observers.live, 0);

  page([], 'loading');
  applyChanges([{ selector: '.never', action: 'add_class', payload: 'y' }], assert.fail, () => ready++);
  document.fire('DOMContentLoaded');
  assert.equal(ready, 2);
});

test('set_content waits, while the page is parsed, until the element is complete', () => {
  const observers = page([], 'loading');
  applyChanges([{ selector: '#t', action: 'set_content', payload: 'new' }], assert.fail, () => {});
  const title = new FakeElement('h1', { id: 't' }, ['old']);
  document.body.append(title);
  observers.notify();
  assert.equal(title.textContent, 'old');
  title.append(new FakeElement('span', {}, [' more']));
  document.body.append(new FakeElement('p'));
  observers.notify();
  assert.equal(title.textContent, 'new');
});

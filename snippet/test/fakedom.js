// A small fake DOM for the node tests: just what the runtime uses (elements with
// attributes, classes, inline style, text, siblings; insertAdjacentHTML of simple markup;
// querySelectorAll/closest with simple selectors; listeners; a MutationObserver that the
// test triggers). Not a browser: real-browser behaviour is tested in Chromium.

export class FakeNode {
  constructor() {
    this.parentNode = null;
    this.childNodes = [];
  }
  get nextSibling() {
    const siblings = this.parentNode?.childNodes || [];
    return siblings[siblings.indexOf(this) + 1] || null;
  }
  get previousSibling() {
    const siblings = this.parentNode?.childNodes || [];
    return siblings[siblings.indexOf(this) - 1] || null;
  }
  get textContent() {
    return this.childNodes.map((node) => node.textContent).join('');
  }
  set textContent(text) {
    this.replaceChildren(...(text === '' ? [] : [new FakeText(String(text))]));
  }
  remove() {
    if (this.parentNode) this.parentNode.childNodes.splice(this.parentNode.childNodes.indexOf(this), 1);
    this.parentNode = null;
  }
  append(...nodes) {
    for (const node of nodes) {
      node.remove();
      node.parentNode = this;
      this.childNodes.push(node);
    }
  }
  replaceChildren(...nodes) {
    for (const node of [...this.childNodes]) node.remove();
    this.append(...nodes);
  }
  // Insert `nodes` before `reference` (a child of this node).
  insertNodes(nodes, reference) {
    for (const node of nodes) {
      node.remove();
      node.parentNode = this;
      this.childNodes.splice(reference ? this.childNodes.indexOf(reference) : this.childNodes.length, 0, node);
    }
  }
}

export class FakeText extends FakeNode {
  constructor(data) {
    super();
    this.data = data;
  }
  get textContent() {
    return this.data;
  }
}

const ATTRIBUTE_NAME = /^[A-Za-z_:][-\w:.]*$/;

export class FakeElement extends FakeNode {
  constructor(tag, attributes = {}, children = []) {
    super();
    this.tagName = tag.toUpperCase();
    this.attributes = new Map(Object.entries(attributes));
    // The CSSOM of the style attribute: its cssText is kept in step with the attribute,
    // as in browsers (other properties, such as opacity, are plain fields here).
    const element = this;
    this.style = {
      get cssText() {
        return element.getAttribute('style') || '';
      },
      set cssText(text) {
        element.attributes.set('style', String(text ?? ''));
      },
    };
    this.append(...children.map((child) => (typeof child === 'string' ? new FakeText(child) : child)));
  }
  getAttribute(name) {
    return this.attributes.has(name) ? this.attributes.get(name) : null;
  }
  setAttribute(name, value) {
    if (!ATTRIBUTE_NAME.test(name)) throw new Error(`'${name}' is not a valid attribute name.`);
    this.attributes.set(name, String(value));
  }
  removeAttribute(name) {
    this.attributes.delete(name);
  }
  toggleAttribute(name, force) {
    if (force) this.attributes.set(name, this.getAttribute(name) || '');
    else this.attributes.delete(name);
    return !!force;
  }

  get classList() {
    const names = () => (this.getAttribute('class') || '').split(/\s+/).filter(Boolean);
    const write = (list) => this.setAttribute('class', list.join(' '));
    return {
      contains: (name) => names().includes(name),
      toggle: (name, force) => {
        const list = names().filter((other) => other !== name);
        if (force) list.push(name);
        write(list);
        return force;
      },
    };
  }
  insertAdjacentHTML(position, html) {
    if (!this.parentNode) throw new Error('The element has no parent.');
    const nodes = parseHtml(html);
    if (position === 'beforebegin') this.parentNode.insertNodes(nodes, this);
    else if (position === 'afterend') this.parentNode.insertNodes(nodes, this.nextSibling);
    else throw new Error('unsupported position ' + position);
  }
  matches(selector) {
    return selectorMatches(selector, this);
  }
  closest(selector) {
    for (let node = this; node instanceof FakeElement; node = node.parentNode) {
      if (node.matches(selector)) return node;
    }
    return null;
  }
  get elements() {
    return this.childNodes.filter((node) => node instanceof FakeElement);
  }
}

// `<tag a="b">text</tag>` elements (one level) and text between them.
function parseHtml(html) {
  const nodes = [];
  const pattern = /<(\w+)([^>]*)>([^<]*)<\/\1>|([^<]+)/g;
  for (let match; (match = pattern.exec(html)); ) {
    if (match[4]) {
      nodes.push(new FakeText(match[4]));
      continue;
    }
    const attributes = {};
    for (const [, name, value] of match[2].matchAll(/(\w[-\w]*)="([^"]*)"/g)) attributes[name] = value;
    nodes.push(new FakeElement(match[1], attributes, match[3] ? [match[3]] : []));
  }
  return nodes;
}

// Selectors: a list of compound selectors separated by commas, each `tag`, `#id` and
// `.class` parts. Anything else (e.g. "!!bad") is a syntax error, as in a browser.
function selectorMatches(selector, element) {
  return selector.split(',').some((compound) => {
    const parts = compound.trim().match(/^([a-z][\w-]*)?((?:[#.][\w-]+)*)$/i);
    if (!parts || !compound.trim()) throw new SyntaxError(`'${selector}' is not a valid selector.`);
    if (parts[1] && parts[1].toUpperCase() !== element.tagName) return false;
    return (parts[2].match(/[#.][\w-]+/g) || []).every((part) =>
      part[0] === '#' ? element.getAttribute('id') === part.slice(1) : element.classList.contains(part.slice(1)),
    );
  });
}

/** A listener registry: addEventListener, and `fire(type, event)` for the tests. */
export class FakeEventTarget {
  constructor() {
    this.listeners = [];
  }
  addEventListener(type, listener, capture) {
    this.listeners.push({ type, listener, capture: !!capture });
  }
  fire(type, event = {}) {
    for (const entry of this.listeners.filter((candidate) => candidate.type === type)) entry.listener({ type, ...event });
  }
}

/** A document: <html><head></head><body>…`body`…</body></html>. */
export function fakeDocument(body = [], options = {}) {
  const head = new FakeElement('head');
  const bodyElement = new FakeElement('body', {}, body);
  const documentElement = new FakeElement('html', {}, [head, bodyElement]);
  const document = new FakeEventTarget();
  Object.assign(document, {
    documentElement,
    head,
    body: bodyElement,
    readyState: options.readyState || 'complete',
    cookie: options.cookie || '',
    currentScript: options.currentScript === undefined ? { src: 'https://edge.example/s/pk.js' } : options.currentScript,
    hidden: false,
    querySelectorAll(selector) {
      const found = [];
      const walk = (element) => {
        for (const child of element.elements) {
          if (child.matches(selector)) found.push(child);
          walk(child);
        }
      };
      walk(documentElement);
      return found;
    },
  });
  return document;
}

/** A MutationObserver class whose callbacks run when the test calls `notify()`. */
export function fakeMutationObservers() {
  const live = new Set();
  return {
    MutationObserver: class {
      constructor(callback) {
        this.callback = callback;
      }
      observe() {
        live.add(this);
      }
      disconnect() {
        live.delete(this);
      }
    },
    notify() {
      for (const observer of [...live]) observer.callback([], observer);
    },
    get live() {
      return live.size;
    },
  };
}

/** Timers that run only when the test says: `timers.run(ms)` advances the clock. */
export function fakeTimers() {
  let now = 0;
  let next = 1;
  const pending = new Map();
  return {
    setTimeout: (fn, ms = 0) => {
      pending.set(next, { fn, at: now + (ms || 0) });
      return next++;
    },
    clearTimeout: (id) => pending.delete(id),
    run(ms) {
      now += ms;
      for (const [id, timer] of [...pending].sort((a, b) => a[1].at - b[1].at)) {
        if (timer.at <= now && pending.delete(id)) timer.fn();
      }
    },
    get pending() {
      return pending.size;
    },
  };
}

// Applying a variant's DOM changes, and undoing them. Each (change, element) pair is
// applied at most once: to the elements parsed so far, then, until DOMContentLoaded, to
// elements as the parser adds them; after an SPA route change (or when the runtime starts
// after the page was parsed), to the elements the page adds for WATCH_MS. A bad selector
// or a failing change is reported and skipped; it never breaks the page. Each applied
// change keeps what it takes to undo it.

/** How long elements the page adds are still changed, once it is parsed. */
export const WATCH_MS = 2000;

// Every node this runtime inserted. No change applies to them or inside them (so an
// inserted element that matches its own selector cannot start a chain of inserts), and
// they do not count as "the parser has moved past this element".
const inserted = new WeakSet();

function isInserted(node) {
  for (; node; node = node.parentNode) if (inserted.has(node)) return true;
}

// The parser adds nodes in document order, so an element is complete (all its children
// parsed) once a node of the page follows it or one of its ancestors.
function isComplete(node) {
  for (; node; node = node.parentNode) {
    for (let next = node.nextSibling; next; next = next.nextSibling) if (!inserted.has(next)) return true;
  }
}

// Insert `html` next to `element`, on the side `sibling` ('previousSibling' or
// 'nextSibling') points to; the undo removes the inserted nodes.
function insertHtml(element, position, sibling, html) {
  const stop = element[sibling];
  const nodes = [];
  element.insertAdjacentHTML(position, html);
  for (let node = element[sibling]; node !== stop; node = node[sibling]) inserted.add(nodes[nodes.length] = node);
  return () => nodes.map((node) => node.remove());
}

// Add (`on`) or remove the classes of `payload`; the undo flips back only the classes
// this change did flip.
function toggleClasses(element, payload, on) {
  const list = element.classList;
  const names = payload.split(/\s+/).filter((name) => name && list.contains(name) !== on);
  const flip = (state) => names.map((name) => list.toggle(name, state));
  flip(on);
  return () => flip(!on);
}

// Change attribute `name` of `element` with `change()`; the undo puts the old value back,
// or removes the attribute if there was none. With toggleAttribute: it brings a style
// attribute up to date first (Chromium writes CSSOM changes back to it lazily, and after
// a plain removeAttribute would later write the change back).
function changeAttribute(element, name, change) {
  const old = element.getAttribute(name);
  change();
  return () => (old == null ? element.toggleAttribute(name, false) : element.setAttribute(name, old));
}

// What each action does to one element; each returns its undo.
const ACTIONS = {
  // The old child nodes are kept, so the undo restores markup (and nodes a framework
  // still holds), not only text.
  set_content(element, payload) {
    const old = [...element.childNodes];
    element.textContent = payload;
    return () => element.replaceChildren(...old);
  },
  // Through the CSSOM, which a Content-Security-Policy without 'unsafe-inline' allows
  // (its undo may set the attribute: the old value was under the same policy).
  set_style: (element, payload) =>
    changeAttribute(element, 'style', () => (element.style.cssText += ';' + payload)),
  // An empty name throws (no attribute_name): the change is reported as an error.
  set_attribute(element, payload, change) {
    const name = change.attribute_name || '';
    return changeAttribute(element, name, () => element.setAttribute(name, payload));
  },
  add_class: (element, payload) => toggleClasses(element, payload, true),
  remove_class: (element, payload) => toggleClasses(element, payload, false),
  insert_before: (element, payload) => insertHtml(element, 'beforebegin', 'previousSibling', payload),
  insert_after: (element, payload) => insertHtml(element, 'afterend', 'nextSibling', payload),
};

/**
 * Apply `changes` (VariantMutation objects) now and to elements added later: until
 * DOMContentLoaded while the page is parsed, else (an SPA route change, or a runtime
 * started after the page was parsed) for WATCH_MS.
 *
 * `report(error)` is called for each change that throws (a bad selector, a failing or an
 * unknown action). `ready()` is called once: when every change was applied to at least
 * one element (or failed), or after the pass at DOMContentLoaded.
 *
 * Returns `undo()`, which stops and undoes every change, last first.
 */
export function applyChanges(changes, report, ready) {
  const applied = changes.map(() => new WeakSet());
  const found = [];
  const undos = [];
  let parsed = document.readyState !== 'loading';

  function pass() {
    changes.map((change, index) => {
      try {
        for (const element of document.querySelectorAll(change.selector)) {
          if (
            !applied[index].has(element) &&
            !isInserted(element) &&
            // Text set before the parser reaches the element's children would be
            // followed by the original text: wait until the element is complete.
            (parsed || change.action !== 'set_content' || isComplete(element))
          ) {
            applied[index].add(element);
            found[index] = true;
            undos.push(ACTIONS[change.action](element, change.payload || '', change));
          }
        }
      } catch (error) {
        // A bad selector, or an action that fails (on one element it fails on all, as
        // a rule; the element it failed on is skipped, the next pass does the others).
        found[index] = true;
        report(error);
      }
    });
    // `ready(ready = 0)` calls ready once: the callee is read before the argument.
    if (ready && (parsed || changes.every((_, index) => found[index]))) ready((ready = 0));
  }

  const observer = new MutationObserver(pass);
  const stop = () => observer.disconnect();
  pass();
  observer.observe(document, { childList: true, subtree: true });
  if (parsed) setTimeout(stop, WATCH_MS);
  else {
    document.addEventListener('DOMContentLoaded', () => {
      parsed = true;
      pass();
      stop();
    });
  }
  return () => {
    stop();
    changes = [];
    for (const step of undos.reverse()) {
      try {
        step();
      } catch {
        // cannot be undone: leave it
      }
    }
  };
}

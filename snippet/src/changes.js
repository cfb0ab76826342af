// Applying a variant's DOM changes. Each (change, element) pair is applied at most once:
// to the elements parsed so far, then, until DOMContentLoaded, to elements as the parser
// adds them. A bad selector or a failing change is skipped; it never breaks the page.

// Every node this runtime inserted. insert_before/insert_after never target them (so an
// inserted element that matches its own selector cannot start a chain of inserts), and
// they do not count as "the parser has moved past this element".
const inserted = new WeakSet();

function isInserted(element) {
  for (let node = element; node; node = node.parentNode) {
    if (inserted.has(node)) return true;
  }
  return false;
}

// The parser adds nodes in document order, so an element is complete (all its children
// parsed) once a node of the page follows it or one of its ancestors.
function isComplete(element) {
  for (let node = element; node; node = node.parentNode) {
    for (let next = node.nextSibling; next; next = next.nextSibling) {
      if (!inserted.has(next)) return true;
    }
  }
  return false;
}

// Insert `html` next to `element`, on the side `sibling` ('previousSibling' or
// 'nextSibling') points to, and remember the inserted nodes.
function insertHtml(element, position, sibling, html) {
  const stop = element[sibling];
  element.insertAdjacentHTML(position, html);
  for (let node = element[sibling]; node && node !== stop; node = node[sibling]) {
    inserted.add(node);
  }
}

function classes(payload) {
  return payload.split(/\s+/).filter(Boolean);
}

// What each action does to one element.
const ACTIONS = {
  set_content: (element, payload) => {
    element.textContent = payload;
  },
  set_style: (element, payload) => {
    element.style.cssText += ';' + payload;
  },
  set_attribute: (element, payload, change) => {
    if (change.attribute_name) element.setAttribute(change.attribute_name, payload);
  },
  add_class: (element, payload) => element.classList.add(...classes(payload)),
  remove_class: (element, payload) => element.classList.remove(...classes(payload)),
  insert_before: (element, payload) => insertHtml(element, 'beforebegin', 'previousSibling', payload),
  insert_after: (element, payload) => insertHtml(element, 'afterend', 'nextSibling', payload),
};

/**
 * Apply `changes` (VariantMutation objects) now and to elements parsed later, until
 * DOMContentLoaded.
 */
export function applyChanges(changes) {
  const applied = changes.map(() => new WeakSet());

  // `final`: the document is parsed, so every element is complete.
  function pass(final) {
    changes.forEach((change, index) => {
      try {
        const action = ACTIONS[change.action];
        const payload = change.payload || '';
        const inserts = /^insert_/.test(change.action);
        for (const element of document.querySelectorAll(change.selector)) {
          if (!action || applied[index].has(element) || (inserts && isInserted(element))) continue;
          // Text set before the parser reaches the element's children would be followed
          // by the original text: wait until the element is complete.
          if (!final && change.action === 'set_content' && !isComplete(element)) continue;
          applied[index].add(element);
          try {
            action(element, payload, change);
          } catch (e) {
            // a change that fails on one element is skipped there
          }
        }
      } catch (e) {
        // a bad selector: this change is skipped
      }
    });
  }

  if (document.readyState !== 'loading') {
    pass(true);
    return;
  }
  pass(false);
  const observer = new MutationObserver(() => pass(false));
  observer.observe(document.documentElement, { childList: true, subtree: true });
  document.addEventListener('DOMContentLoaded', () => {
    pass(true);
    observer.disconnect();
  });
}

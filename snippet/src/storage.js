// What the runtime keeps in the browser: random ids, localStorage with a first-party
// cookie as its fallback, and sessionStorage. Nothing here throws.

/** A random uuid v4. Math.random, not crypto: ids only need to be distinct. */
export const uuid = () =>
  '10000000-1000-4000-8000-100000000000'.replace(/[018]/g, (digit) =>
    (digit ^ ((Math.random() * 16) & (15 >> (digit / 4)))).toString(16),
  );

/**
 * Read `key` from localStorage, or from a first-party cookie when localStorage throws
 * (disabled, sandboxed frames); or, with `value`, write it there and return it.
 */
export function local(key, value) {
  try {
    if (!value) return localStorage[key];
    localStorage[key] = value;
  } catch {
    try {
      if (!value) return document.cookie.match('(^|;) *' + key + '=([^;]+)')?.[2];
      document.cookie = `${key}=${value};path=/;max-age=31536000`;
    } catch {
      // cookies blocked too: this page view only
    }
  }
  return value;
}

/** Read `key` from sessionStorage (undefined when unavailable), or write `value` there
 * and return it. */
export function session(key, value) {
  try {
    if (value == null) return sessionStorage[key];
    sessionStorage[key] = value;
  } catch {
    // unavailable: the caller keeps its own copy for this page view
  }
  return value;
}

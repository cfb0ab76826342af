// URL patterns: the spec in docs/url-patterns.md, identical to src/edge/urlglob.py and
// checked against tests/vectors/urlglob.json. The server has already validated every
// pattern, so nothing is validated here; matching never throws.

const ONE_SEGMENT = '/[^/]+';
const ANY_DEPTH = '(?:/[^/]+)*';
const ANY_DEPTH_LAZY = '(?:/[^/]+)*?';

const EVERY_PAGE = { test: () => true };

function splitPath(path) {
  return path.split('/').filter(Boolean);
}

// Percent-decode one segment, all or nothing; `%2F` stays data, never a separator.
function decodeSegment(segment) {
  if (!segment.includes('%')) return segment;
  let decoded;
  try {
    decoded = decodeURIComponent(segment);
  } catch (e) {
    return segment;
  }
  return decoded.includes('/') ? segment : decoded;
}

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The string a pattern is matched against: "/seg1/seg2", "" for the root. */
export function normalizePath(path) {
  return splitPath(path)
    .map((segment) => '/' + decodeSegment(segment))
    .join('');
}

/**
 * Compile a url_pattern once into a matcher whose `test(pathname)` says whether the page
 * is in scope. null, "" or a blank pattern matches every page.
 */
export function compilePattern(pattern) {
  if (pattern == null || !pattern.trim()) return EVERY_PAGE;
  // The regex of the segments between `**` segments (wildcards are seen as written).
  const blocks = [''];
  let previous = '';
  let oneSegment = false;
  for (const segment of splitPath(pattern)) {
    if (segment === '**') {
      if (previous !== '**') blocks.push(''); // consecutive `**` collapse into one
    } else if (segment === '*') {
      blocks[blocks.length - 1] += ONE_SEGMENT;
      oneSegment = true;
    } else {
      blocks[blocks.length - 1] += '/' + escapeRegExp(decodeSegment(segment));
    }
    previous = segment;
  }
  let source;
  if (blocks.length === 1) {
    // No `**`: a plain pattern also matches everything below it, a `*` one is exact.
    source = blocks[0] + (oneSegment ? '' : ANY_DEPTH);
  } else {
    // Every `**` but the last is committed to the earliest place its block matches:
    // (?=(X))\n is an atomic group in JS, so long paths cannot backtrack in O(n^k).
    const first = blocks[0];
    const last = blocks[blocks.length - 1];
    const middle = blocks.slice(1, -1).map((block, i) => `(?=(${ANY_DEPTH_LAZY}${block}))\\${i + 1}`);
    source = first + middle.join('') + ANY_DEPTH + last;
  }
  if (source === ANY_DEPTH) return EVERY_PAGE; // "/" and "/**"
  const regex = new RegExp('^' + source + '$');
  return { test: (pathname) => regex.test(normalizePath(pathname)) };
}

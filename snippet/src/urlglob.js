// URL patterns: the spec in docs/url-patterns.md, identical to src/edge/urlglob.py and
// checked against tests/vectors/urlglob.json. The server has already validated every
// pattern, so nothing is validated here; matching never throws.

const ONE_SEGMENT = '/[^/]+';
const ANY_DEPTH = '(?:/[^/]+)*';

const splitPath = (path) => path.split('/').filter(Boolean);

// Percent-decode one segment, all or nothing; `%2F` stays data, never a separator.
// (A segment without `%` decodes to itself.)
function decodeSegment(segment) {
  try {
    const decoded = decodeURIComponent(segment);
    return decoded.includes('/') ? segment : decoded;
  } catch {
    return segment;
  }
}

/** The string a pattern is matched against: "/seg1/seg2", "" for the root. */
export const normalizePath = (path) => splitPath(path).map((segment) => '/' + decodeSegment(segment)).join('');

/**
 * Compile a url_pattern once into a matcher whose `test(pathname)` says whether the page
 * is in scope. null, "" or a blank pattern matches every page, like "/" and "/**".
 */
export function compilePattern(pattern) {
  // The regex of the segments between `**` segments (wildcards are seen as written). A
  // blank pattern has no segments: its regex is ANY_DEPTH, like "/".
  const blocks = [''];
  let previous;
  let oneSegment;
  for (const segment of splitPath(pattern?.trim() || '')) {
    if (segment === '**') {
      if (previous !== segment) blocks.push(''); // consecutive `**` collapse into one
    } else {
      blocks[blocks.length - 1] +=
        segment === '*'
          ? (oneSegment = ONE_SEGMENT)
          : // Every non-word character escaped: an identity escape outside a class (no
            // `u` flag), so regex syntax in a segment is literal.
            '/' + decodeSegment(segment).replace(/\W/g, '\\$&');
    }
    previous = segment;
  }
  const last = blocks.pop();
  // No `**`: a plain pattern also matches everything below it, a `*` one is exact.
  // Else every `**` but the last is committed to the earliest place its block matches:
  // (?=(X))\n is an atomic group in JS, so long paths cannot backtrack in O(n^k).
  const regex = new RegExp(
    '^' +
      (blocks.length
        ? blocks[0] + blocks.slice(1).map((block, i) => `(?=(${ANY_DEPTH}?${block}))\\${i + 1}`).join('') + ANY_DEPTH + last
        : last + (oneSegment ? '' : ANY_DEPTH)) +
      '$',
  );
  return { test: (pathname) => regex.test(normalizePath(pathname)) };
}

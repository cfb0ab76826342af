// The browser runtime: who the visitor is, which experiments of the site run on this page,
// which variant the visitor sees in each, and window.__sk (the SplitKit contract).

import { assign } from './assign.js';
import { applyChanges } from './changes.js';
import { compilePattern } from './urlglob.js';

const VISITOR_KEY = 'sk_v';
const SESSION_KEY = 'sk_s';
const PREVIEW_PARAM = 'sk_preview';
const ONE_YEAR_SECONDS = 31536000;

/** 'tablet', 'mobile' or 'desktop', from the user agent, then the screen width. */
export function deviceType(userAgent, screenWidth, maxTouchPoints) {
  const ua = userAgent || '';
  if (/iPad/.test(ua) || (/Android/.test(ua) && !/Mobi/.test(ua))) return 'tablet';
  if (/Mobi|iPhone|iPod/.test(ua)) return 'mobile';
  // iPadOS Safari asks for desktop sites with a Mac user agent; a Mac has no touch screen.
  if (/Macintosh/.test(ua) && maxTouchPoints > 1) return 'tablet';
  // A phone asking for desktop sites: desktop user agent, phone-sized screen.
  if (screenWidth > 0 && screenWidth < 768) return 'mobile';
  return 'desktop';
}

/** The variant id of ?sk_preview=<variantId> in a query string, or null. */
export function previewVariantId(search) {
  return new URLSearchParams(search).get(PREVIEW_PARAM) || null;
}

/**
 * Where a redirect variant sends the visitor from `currentHref`, or null when they are
 * already there (or the target is not an http(s) URL). The current query string is kept
 * unless `redirectUrl` has its own.
 */
export function redirectTarget(redirectUrl, currentHref) {
  const current = new URL(currentHref);
  const target = new URL(redirectUrl, current);
  if (!/^https?:$/.test(target.protocol)) return null;
  if (!target.search) target.search = current.search;
  const withoutHash = (url) => url.href.split('#')[0];
  return withoutHash(target) === withoutHash(current) ? null : target.href;
}

/** A random uuid v4 from Math.random, for browsers without crypto.randomUUID. */
export function uuidV4() {
  return '10000000-1000-4000-8000-100000000000'.replace(/[018]/g, (digit) =>
    (digit ^ ((Math.random() * 16) & (15 >> (digit / 4)))).toString(16),
  );
}

function randomId() {
  const crypto = window.crypto;
  // randomUUID exists in secure contexts only (https, localhost).
  return crypto && crypto.randomUUID ? crypto.randomUUID() : uuidV4();
}

/** The value of cookie `name` in a document.cookie string, or undefined. */
export function cookieValue(cookies, name) {
  const match = new RegExp('(?:^|;) *' + name + '=([^;]+)').exec(cookies);
  return match ? match[1] : undefined;
}

// The id under `key` in `storage` (localStorage or sessionStorage), created on first use.
// Throws when the storage is unavailable.
function storedId(storage, key) {
  let id = storage.getItem(key);
  if (!id) {
    id = randomId();
    storage.setItem(key, id);
  }
  return id;
}

// localStorage, or a first-party cookie when storage throws (disabled, some private modes).
function visitorId() {
  try {
    return storedId(localStorage, VISITOR_KEY);
  } catch (e) {
    // fall through to the cookie
  }
  let id = randomId();
  try {
    id = cookieValue(document.cookie, VISITOR_KEY) || id;
    document.cookie = `${VISITOR_KEY}=${id}; path=/; max-age=${ONE_YEAR_SECONDS}; SameSite=Lax`;
  } catch (e) {
    // cookies blocked too (sandboxed iframe): this page view only
  }
  return id;
}

function sessionId() {
  try {
    return storedId(sessionStorage, SESSION_KEY);
  } catch (e) {
    return randomId(); // in memory: this page view only
  }
}

// The variant of `visitor` in `experiment`: the previewed one if it belongs to it, else
// the assigned one; null when the visitor is outside the coverage.
function chooseVariant(experiment, visitor, previewId) {
  const variants = experiment.variants;
  const previewed = previewId && variants.find((variant) => variant.id === previewId);
  if (previewed) return previewed;
  const weights = variants.map((variant) => variant.weight);
  const index = assign(experiment.id, visitor, weights, experiment.coverage);
  return index == null ? null : variants[index];
}

/** Run the site config `cfg` on this page and publish window.__sk. Never throws. */
export function boot(cfg) {
  if (window.__sk && window.__sk.getVariant) return; // the snippet is on the page twice
  const sk = {
    v: '',
    s: '',
    dt: 'desktop',
    sk: '',
    a: [],
    preview: false,
    getVariant(experimentId) {
      const entry = sk.a.find((candidate) => candidate.eid === experimentId);
      return entry ? { variantId: entry.vid, isControl: entry.ic } : null;
    },
  };
  window.__sk = sk;
  try {
    sk.sk = cfg.sk;
    sk.v = visitorId();
    sk.s = sessionId();
    sk.dt = deviceType(navigator.userAgent, screen.width, navigator.maxTouchPoints);
    const previewId = previewVariantId(location.search);
    sk.preview = previewId != null;

    const entries = [];
    const changes = [];
    let redirect = null;
    for (const experiment of cfg.experiments || []) {
      try {
        if (!compilePattern(experiment.url_pattern).test(location.pathname)) continue;
        const variant = chooseVariant(experiment, sk.v, previewId);
        if (!variant) continue;
        const variantChanges = variant.changes || [];
        entries.push({
          eid: experiment.id,
          vid: variant.id,
          ic: !!variant.control,
          gs: experiment.goals || [],
          ch: variantChanges,
        });
        if (variant.redirect_url && !redirect) {
          redirect = redirectTarget(variant.redirect_url, location.href);
        }
        changes.push(...variantChanges);
      } catch (e) {
        // one broken experiment never stops the others
      }
    }
    if (redirect) {
      location.replace(redirect);
    } else if (changes.length) {
      applyChanges(changes);
    }
    sk.a = entries;
  } catch (e) {
    sk.a = [];
  }
}
